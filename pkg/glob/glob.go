package glob

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every error Compile and CompileHost return.
var ErrSyntax = errors.New("malformed glob")

// reserved are the characters other glob dialects use for character
// classes, alternatives and escapes. They are refused rather than read
// literally: "[gr]hcr.io/*" would otherwise compile and never match.
const reserved = `[]{}\`

// Pattern is a compiled glob. The zero Pattern matches only "".
type Pattern struct {
	src string
	// literal is set when src has no wildcard: Match is a comparison.
	literal bool
}

// Compile checks a pattern and prepares it for matching. It accepts
// exactly the patterns Match implements: printable ASCII without spaces
// and without the reserved characters [ ] { } \.
func Compile(pattern string) (Pattern, error) {
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c <= ' ' || c > '~':
			return Pattern{}, fmt.Errorf("%w: byte %#02x at offset %d: only printable ASCII without spaces is allowed", ErrSyntax, c, i)
		case strings.IndexByte(reserved, c) >= 0:
			return Pattern{}, fmt.Errorf("%w: %q at offset %d is not supported: only * and ? are wildcards", ErrSyntax, string(c), i)
		}
	}
	return Pattern{src: pattern, literal: !strings.ContainsAny(pattern, "*?")}, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// LiteralPrefix returns the text every match starts with: the pattern up
// to its first wildcard.
func (p Pattern) LiteralPrefix() string {
	if i := strings.IndexAny(p.src, "*?"); i >= 0 {
		return p.src[:i]
	}
	return p.src
}

// Match reports whether the whole of s matches the pattern.
func (p Pattern) Match(s string) bool {
	if p.literal {
		return s == p.src
	}
	return match(p.src, s, nil)
}

// match is a two-pointer matcher: when a literal fails after a star, only
// the last star takes one more character and matching resumes behind it.
// Earlier stars never need to grow (a later star can absorb whatever they
// would have taken), so the work is at most about (len(s)+1) times
// (len(pat)+1) steps. steps, when not nil, counts them for the tests.
// '?' and a star's growth step over one UTF-8 sequence (an invalid byte
// counts as one character), as Go's regexp package does.
func match(pat, s string, steps *int) bool {
	pi, si := 0, 0
	star, resume := -1, 0 // the pattern index after the last star, and where in s its run ends
	for si < len(s) {
		if steps != nil {
			*steps++
		}
		if pi < len(pat) {
			switch c := pat[pi]; c {
			case '*':
				pi++
				star, resume = pi, si
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(s[si:])
				pi, si = pi+1, si+w
				continue
			case s[si]:
				pi, si = pi+1, si+1
				continue
			}
		}
		if star < 0 {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[resume:])
		resume += w
		pi, si = star, resume
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}
