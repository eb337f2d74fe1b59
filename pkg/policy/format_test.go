package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	cases := []struct {
		s    string
		n    int
		want string
	}{
		{"héllo wörld", 8, "héll…"},
		{"héllo", 5, "h…"}, // the cut falls inside é
		{"short", 8, "short"},
		{"abcdef", 2, "ab"}, // no room for the mark
		{"", 0, ""},
	}
	for _, c := range cases {
		if got := Truncate(c.s, c.n); got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}

// Every cut, around any needle, is valid UTF-8, fits the limit and is
// marked where text was taken away.
func TestWindowProperties(t *testing.T) {
	s := strings.Repeat("ünïcödé words ", 20) + "go build" + strings.Repeat(" täil", 20)
	for n := 0; n <= len(s)+1; n++ {
		for _, at := range []int{0, 1, len(s) / 2, strings.Index(s, "go build"), len(s) - 2} {
			got := window(s, at, n)
			if !utf8.ValidString(got) || len(got) > max(n, 0) {
				t.Fatalf("window(at %d, n %d) = %q (%d bytes)", at, n, got, len(got))
			}
			if n > len(cutMark) && len(s) > n && !strings.Contains(got, cutMark) {
				t.Fatalf("window(at %d, n %d) = %q: cut but not marked", at, n, got)
			}
		}
	}
}

func TestDescribe(t *testing.T) {
	i := 3
	cases := []struct {
		rule string
		e    Evidence
		want string
	}{
		{RuleSizeCompressed, Evidence{Measured: 2 << 20, Limit: 1 << 20}, "measured 2097152 bytes, budget 1048576 bytes"},
		{RuleSizeLayers, Evidence{Measured: 60, Limit: 50}, ""}, // the message says both counts
		{"toolchain.go", Evidence{Env: "GOLANG_VERSION=1.22.5"}, "env GOLANG_VERSION=1.22.5"},
		{"toolchain.go", Evidence{Env: "GOLANG_VERSION=1.22.5", HistoryIndex: &i, Line: "RUN a; b", LayerBytes: 78981811},
			"env GOLANG_VERSION=1.22.5; history #3: RUN a; b"},
		{"toolchain.go", Evidence{Label: "k=v", HistoryIndex: &i}, "label k=v; history #3"},
		{"build.go", Evidence{Line: "bazel build"}, "bazel build"},
		{RuleInspectionFailed, Evidence{Reason: "Timeout"}, ""}, // the message says the reason
	}
	for _, c := range cases {
		if got := c.e.Describe(c.rule); got != c.want {
			t.Errorf("Describe(%s, %+v) = %q, want %q", c.rule, c.e, got, c.want)
		}
	}
}
