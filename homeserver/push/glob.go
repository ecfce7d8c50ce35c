package push

import (
	"regexp"
	"strings"
)

// glob is a compiled glob-style pattern (the spec's appendix: `*` matches
// zero or more characters, `?` exactly one), matched case-insensitively.
//
// Most patterns in practice have no wildcard (event types, msgtypes,
// keywords); they are compared directly. Patterns with wildcards become
// regular expressions, whose matching time is linear in the input, so that
// no pattern can make a long message body expensive.
type glob struct {
	// literal is the lower-cased pattern when it has no wildcard.
	literal   string
	isLiteral bool
	// whole matches the entire value; words matches any substring that
	// starts and ends at a word boundary (the content.body rule).
	whole, words *regexp.Regexp
}

// compileGlob compiles a pattern for both kinds of matching.
func compileGlob(pattern string) *glob {
	// The empty pattern goes the regular expression way: as a word it
	// matches only between two boundary characters.
	if pattern != "" && !strings.ContainsAny(pattern, "*?") {
		return &glob{literal: strings.ToLower(pattern), isLiteral: true}
	}
	var b strings.Builder
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	body := b.String()
	// (?s): wildcards match newlines too. \W is RE2's ASCII non-word
	// class [^0-9A-Za-z_], exactly the spec's word-boundary characters.
	return &glob{
		whole: regexp.MustCompile(`(?is)\A(?:` + body + `)\z`),
		words: regexp.MustCompile(`(?is)(?:\A|\W)(?:` + body + `)(?:\W|\z)`),
	}
}

// matchWhole reports whether the pattern matches all of s.
func (g *glob) matchWhole(s string) bool {
	if g.isLiteral {
		return strings.EqualFold(s, g.literal)
	}
	return g.whole.MatchString(s)
}

// matchWords reports whether the pattern matches a substring of s that
// starts and ends at a word boundary. lower is s lower-cased (computed
// once per event and shared by every rule that looks at the body).
func (g *glob) matchWords(s, lower string) bool {
	if g.isLiteral {
		return containsWord(lower, g.literal)
	}
	return g.words.MatchString(s)
}

// isWordByte reports whether c is in [A-Za-z0-9_]; every other character,
// including every non-ASCII one, is a word boundary.
func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// containsWord reports whether word occurs in s bounded on both sides by
// the start or end of s or by a non-word character. Both are lower-case.
func containsWord(s, word string) bool {
	for from := 0; from <= len(s)-len(word); {
		i := strings.Index(s[from:], word)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(word)
		if (start == 0 || !isWordByte(s[start-1])) && (end == len(s) || !isWordByte(s[end])) {
			return true
		}
		from = start + 1
	}
	return false
}
