package policy

import (
	"strings"
	"testing"
	"unicode/utf8"

	"slimgate.dev/slimgate/api/v1alpha1"
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

func TestFailureWords(t *testing.T) {
	f := Failure{Reason: "NotFound", Detail: "manifest   unknown"}
	if got, want := f.String(), "not inspected (NotFound): manifest unknown"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := (Failure{Reason: "Timeout"}).String(), "not inspected (Timeout)"; got != want {
		t.Errorf("String without detail = %q, want %q", got, want)
	}
	long := Failure{Reason: "RegistryUnavailable", Detail: strings.Repeat("é", 200)}
	if got := long.String(); len(got) > len("not inspected (RegistryUnavailable): ")+maxFailureDetail || !strings.HasSuffix(got, cutMark) {
		t.Errorf("long detail not cut to %d bytes: %q (%d bytes)", maxFailureDetail, got, len(got))
	}

	// A finding and a note say the failure in the same words.
	for _, onError := range []v1alpha1.InspectionErrorAction{v1alpha1.InspectionErrorDeny, v1alpha1.InspectionErrorAllow} {
		res := InspectionFailed(&v1alpha1.SlimImagePolicySpec{OnInspectionError: onError}, "ghcr.io/org/app:1", f)
		said := strings.Join(res.Notes, "\n")
		for _, fd := range res.Findings {
			said += "\n" + fd.Message + "\n" + fd.Evidence.Describe(fd.Rule)
		}
		for _, once := range []string{f.String(), "NotFound"} {
			if n := strings.Count(said, once); n != 1 {
				t.Errorf("%s: %q said %d times, want once:\n%s", onError, once, n, said)
			}
		}
		if strings.Contains(said, "ghcr.io/org/app:1") {
			t.Errorf("%s: the reference is in the words; the reporter names it:\n%s", onError, said)
		}
	}
}
