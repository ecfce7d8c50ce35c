package canonicaljson

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors classify why input was rejected; test with errors.Is. A
// Matrix API maps all of them to M_BAD_JSON (or M_TOO_LARGE for
// ErrTooLarge), but federation code needs to tell them apart for logging and
// for deciding whether an event is malformed or merely unsupported.
var (
	// ErrInvalidJSON means the input is not JSON (RFC 8259): a syntax error,
	// trailing data, a raw control character or invalid UTF-8 in a string,
	// or a lone UTF-16 surrogate escape, which has no UTF-8 encoding.
	ErrInvalidJSON = errors.New("invalid JSON")

	// ErrTooDeep means objects and arrays nest deeper than Options.MaxDepth.
	ErrTooDeep = errors.New("JSON nested too deeply")

	// ErrTooLarge means the input is longer than Options.MaxBytes.
	ErrTooLarge = errors.New("JSON too large")

	// ErrDuplicateKey means an object repeats a key (strict mode only).
	// Keys are compared after unescaping, so "a" and "\u0061" collide.
	ErrDuplicateKey = errors.New("duplicate object key")

	// ErrFloat means a number has a fraction or an exponent (strict mode
	// only). Canonical JSON has no floats.
	ErrFloat = errors.New("float not permitted")

	// ErrIntegerRange means an integer lies outside
	// [-(2^53)+1, (2^53)-1] (strict mode only).
	ErrIntegerRange = errors.New("integer out of range")

	// ErrNumberOverflow means a number with a fraction or exponent is too
	// large for an IEEE 754 double and so has no canonical form (lenient
	// mode; strict mode reports ErrFloat first).
	ErrNumberOverflow = errors.New("number overflows float64")
)

// Error describes where and why input was rejected.
type Error struct {
	// Err is one of the Err* sentinels.
	Err error
	// Offset is the byte offset in the input at which the problem was
	// detected.
	Offset int
	// Path is a JSON Pointer (RFC 6901) to the value containing the problem,
	// such as "/content/body" or "/prev_events/2"; empty for the top level.
	Path string
	// Detail says what exactly was wrong.
	Detail string

	// rev collects path segments innermost first while the parser unwinds;
	// they are joined into Path once the error reaches the top.
	rev []string
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("canonicaljson: ")
	b.WriteString(e.Err.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	b.WriteString(" at offset ")
	b.WriteString(strconv.Itoa(e.Offset))
	if e.Path != "" {
		b.WriteString(" (in ")
		b.WriteString(e.Path)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the sentinel so that errors.Is works.
func (e *Error) Unwrap() error { return e.Err }

// finishPath turns the collected segments into a JSON Pointer.
func (e *Error) finishPath() {
	if len(e.rev) == 0 {
		return
	}
	var b strings.Builder
	for i := len(e.rev) - 1; i >= 0; i-- {
		b.WriteByte('/')
		// RFC 6901 escaping: ~ first so that the ~1 we add is not re-escaped.
		seg := strings.ReplaceAll(e.rev[i], "~", "~0")
		b.WriteString(strings.ReplaceAll(seg, "/", "~1"))
	}
	e.Path = b.String()
	e.rev = nil
}

// quoteForError quotes untrusted input for an error message, truncated so
// that a hostile megabyte-long key cannot blow up log lines.
func quoteForError(s []byte) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(string(s[:limit])) + "..."
	}
	return strconv.Quote(string(s))
}
