package glob

import (
	"errors"
	"testing"
)

func TestHost(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		// The host matching semantics of the egress guard (pkg/egress
		// matches with MatchHost): any port unless the pattern names one,
		// case ignored, brackets only around IPv6.
		{"quay.io", "quay.io:8443", true},
		{"QUAY.IO", "quay.io", true},
		{"quay.io", "notquay.io", false},
		{"*.corp.internal", "a.b.corp.internal:5000", true},
		{"*.corp.internal", "corp.internal", false},
		{"mirror.corp:8443", "mirror.corp", false},
		{"fd00::1", "[fd00::1]:5000", true},
		{"[fd00::1]:5000", "[fd00::1]:5001", false},
		{"*", "anything.io", true},
		{"ghcr.io", "ghcr.io", true},
		{"GHCR.io", "ghcr.io", true},
		{"ghcr.io", "ghcr.io:443", true},
		{"ghcr.io", "evilghcr.io", false},
		{"ghcr.io", "ghcr.io.evil.com", false},
		{"*.example.com", "reg.example.com", true},
		{"*.example.com", "a.b.example.com:5000", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{"reg.local:5000", "reg.local:5000", true},
		{"reg.local:5000", "reg.local:5001", false},
		{"reg.local:5000", "reg.local", false},
		{"::1", "[::1]:5000", true},
		{"[::1]:5000", "[::1]:5000", true},
		{"", "ghcr.io", false},
		// Patterns of the egress tests and policies.
		{"127.0.0.1", "127.0.0.1:5000", true},
		{"localhost", "localhost:5000", true},
		{"169.254.169.254", "169.254.169.254", true},
		{" ghcr.io ", "GHCR.IO", true},
		{"*", "[::1]:5000", true},
		// Stars and ports the one dialect now gives every host pattern.
		{"ghcr.*", "ghcr.io", true},
		{"*.example.com:5000", "a.example.com:5000", true},
		{"*.example.com:5000", "a.example.com:5001", false},
		{"reg-?.example.com", "reg-2.example.com", true},
		{"reg.local:*", "reg.local:5000", true},
		{"reg.local:*", "reg.local", false},
		{"reg?.local", "reg1.local:80", true},
		// A malformed pattern matches nothing.
		{"[gr]hcr.io", "ghcr.io", false},
		{"[gr]hcr.io", "[gr]hcr.io", false},
	} {
		if got := MatchHost(tc.pattern, tc.host); got != tc.want {
			t.Errorf("MatchHost(%q, %q) = %t, want %t", tc.pattern, tc.host, got, tc.want)
		}
	}
}

func TestCompileHostErrors(t *testing.T) {
	for _, p := range []string{"", "  ", "[gr]hcr.io", "ghcr.io:{443,5000}", "reg.local:5\\000", "ghcr.io\x00"} {
		if _, err := CompileHost(p); !errors.Is(err, ErrSyntax) {
			t.Errorf("CompileHost(%q) = %v, want ErrSyntax", p, err)
		}
	}
	for _, p := range []string{"*", "ghcr.io", "[fd00::1]:5000", "fd00::1", "reg.local:5000", "*.example.com"} {
		if _, err := CompileHost(p); err != nil {
			t.Errorf("CompileHost(%q): %v", p, err)
		}
	}
}
