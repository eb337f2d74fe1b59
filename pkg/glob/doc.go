// Package glob is the one pattern dialect of slimgate policies: image
// exclusions (spec.exclude.images), registry hosts (spec.registries) and
// rule ids (spec.toolchains). A pattern is printable ASCII; '*' matches any
// run of characters, slashes included, '?' matches exactly one character,
// and every other character matches itself. The characters other dialects
// give a meaning to ('[', ']', '{', '}', '\') are refused, so that a
// pattern that compiles never means less than its author expected.
//
// Patterns are compiled once and matched in time proportional to the
// length of the input times the length of the pattern, however many stars
// it has: there is no backtracking beyond the last star.
package glob
