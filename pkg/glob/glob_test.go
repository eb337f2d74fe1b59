package glob

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		// Images, as exclude.images writes them.
		{"registry.k8s.io/*", "registry.k8s.io/pause:3.9", true},
		{"registry.k8s.io/*", "registry.k8s.io/a/b:1", true},
		{"registry.k8s.io/*", "ghcr.io/registry.k8s.io", false},
		{"registry.k8s.io/*", "registry.k8s.io", false},
		{"*/golang:1.2?", "docker.io/library/golang:1.22", true},
		{"*/golang:1.2?", "docker.io/library/golang:1.2", false},
		{"*/golang:1.2?", "docker.io/library/golang:1.222", false},
		{"ghcr.io/org/*@sha256:*", "ghcr.io/org/app@sha256:abc", true},
		{"ghcr.io/org/*@sha256:*", "ghcr.io/org/app:1", false},
		{"exact:1", "exact:1", true},
		{"exact:1", "exact:10", false},
		{"exact:1", "xexact:1", false},
		// Rule ids.
		{"toolchain.*", "toolchain.go", true},
		{"toolchain.*", "build.go", false},
		{"*.go", "build.go", true},
		{"build.?o", "build.go", true},
		{"toolchain.*", "toolchain.", true},
		// Stars and question marks.
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"**", "x", true},
		{"", "", true},
		{"", "x", false},
		{"?", "", false},
		{"?", "é", true},
		{"??", "é", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYcZ", false},
		{"a*a*a*b", "aaaaaaaaab", true},
		{"a*a*a*b", "aaaaaaaaaa", false},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"*?*?", "a", false},
		{"*?*?", "ab", true},
	}
	for _, c := range cases {
		p, err := Compile(c.pattern)
		if err != nil {
			t.Fatalf("Compile(%q): %v", c.pattern, err)
		}
		if got := p.Match(c.s); got != c.want {
			t.Errorf("Compile(%q).Match(%q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
		if p.String() != c.pattern {
			t.Errorf("String() = %q, want %q", p.String(), c.pattern)
		}
	}
}

func TestLiteralPrefix(t *testing.T) {
	for pattern, want := range map[string]string{
		"registry.k8s.io/*": "registry.k8s.io/", "*/golang": "", "build.?o": "build.", "exact:1": "exact:1", "": "",
	} {
		p, err := Compile(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.LiteralPrefix(); got != want {
			t.Errorf("Compile(%q).LiteralPrefix() = %q, want %q", pattern, got, want)
		}
	}
}

// Compile refuses exactly what Match does not implement: the syntax of
// other dialects, and what no reference, host or rule id contains.
func TestCompileErrors(t *testing.T) {
	cases := []struct{ pattern, want string }{
		{"[gr]hcr.io/*", `"[" at offset 0 is not supported`},
		{"toolchain.[", `"[" at offset 10`},
		{"ghcr.io/{a,b}/*", `"{" at offset 8`},
		{`registry\*`, `"\\" at offset 8`},
		{"a]", `"]" at offset 1`},
		{"ghcr.io/a b", "byte 0x20 at offset 9"},
		{"ghcr.io/\tx", "byte 0x09 at offset 8"},
		{"ghcr.io/é", "byte 0xc3 at offset 8"},
		{"x\x7f", "byte 0x7f at offset 1"},
	}
	for _, c := range cases {
		_, err := Compile(c.pattern)
		if err == nil {
			t.Errorf("Compile(%q) accepted it", c.pattern)
			continue
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compile(%q) = %v, want ErrSyntax mentioning %s", c.pattern, err, c.want)
		}
	}
}

// Thirty stars against 4 KiB: a backtracking matcher tries every way to
// share the input among the stars; this one takes at most about
// (len(s)+1)*(len(pattern)+1) steps. The step count is the measure, not
// the clock.
func TestPathologicalPatternIsLinear(t *testing.T) {
	s := strings.Repeat("a", 4096)
	for _, pattern := range []string{
		strings.Repeat("*a", 30) + "*b",
		strings.Repeat("*?", 30) + "b",
		strings.Repeat("a*", 30) + "b*c",
		"*" + strings.Repeat("a", 30) + "b",
	} {
		if _, err := Compile(pattern); err != nil {
			t.Fatal(err)
		}
		steps := 0
		if match(pattern, s, &steps) {
			t.Fatalf("%q matched %d a's", pattern, len(s))
		}
		if bound := (len(s) + 1) * (len(pattern) + 1); steps > bound {
			t.Errorf("%q: %d steps over 4 KiB, more than the %d bound", pattern, steps, bound)
		}
		t.Logf("%q: %d steps for %d bytes", pattern, steps, len(s))
	}
	// The bound is not slack: a literal pattern stops at the first
	// difference, and a lone trailing star at the first step.
	steps := 0
	if match("b*", s, &steps) || steps != 1 {
		t.Errorf("b* against a's: %d steps, want 1", steps)
	}
}

func BenchmarkPathological(b *testing.B) {
	p, err := Compile(strings.Repeat("*a", 30) + "*b")
	if err != nil {
		b.Fatal(err)
	}
	s := strings.Repeat("a", 4096)
	for b.Loop() {
		if p.Match(s) {
			b.Fatal("matched")
		}
	}
}

func BenchmarkImage(b *testing.B) {
	p, err := Compile("registry.k8s.io/*")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p.Match("index.docker.io/library/golang:1.22")
	}
}

// reference is the specification written a second way: the pattern as an
// anchored regular expression, '*' as ".*" and '?' as "." (any character,
// newlines included).
func reference(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`)$`)
	return regexp.MustCompile(b.String())
}

func FuzzGlob(f *testing.F) {
	f.Add("registry.k8s.io/*", "registry.k8s.io/pause:3.9")
	f.Add("*/golang:1.2?", "docker.io/library/golang:1.22")
	f.Add("a*b?c*", "aXXbYcZZ")
	f.Add("*?*?", "é\xff")
	f.Add("[gr]hcr.io/*", "ghcr.io/x")
	f.Add(strings.Repeat("*a", 12)+"*b", strings.Repeat("a", 200))
	f.Fuzz(func(t *testing.T, pattern, s string) {
		p, err := Compile(pattern)
		if err != nil {
			// Only what other dialects mean, or what no reference holds.
			if !strings.ContainsFunc(pattern, func(r rune) bool {
				return r <= ' ' || r > '~' || strings.ContainsRune(reserved, r)
			}) {
				t.Fatalf("Compile(%q) refused a pattern of the dialect: %v", pattern, err)
			}
			return
		}
		steps := 0
		got := match(pattern, s, &steps)
		if got != p.Match(s) {
			t.Fatalf("match and Match disagree on %q, %q", pattern, s)
		}
		if want := reference(pattern).MatchString(s); got != want {
			t.Fatalf("Compile(%q).Match(%q) = %v, the regexp says %v", pattern, s, got, want)
		}
		if bound := (len(s) + 1) * (len(pattern) + 1); steps > bound {
			t.Fatalf("%q against %d bytes took %d steps, over %d", pattern, len(s), steps, bound)
		}
	})
}
