// Package canonicaljson encodes and validates Matrix canonical JSON, the
// byte-exact form that event hashes, event IDs and signatures are computed
// over (spec appendices, "Canonical JSON").
//
// Input is read by a hand-written single-pass parser that emits canonical
// output as it goes and checks every limit before it spends memory on the
// offending part, so hostile input from federation is cheap to reject.
//
// Two levels of strictness exist because the spec has two: room versions 6
// and later require servers to reject JSON that breaks the canonical number
// rules (Options.Strict), while versions 1 to 5 contain historical events
// with floats and out-of-range integers that must still be processed.
package canonicaljson

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// DefaultMaxDepth is the nesting limit used when Options.MaxDepth is zero.
// Matrix events have no legitimate need for deep nesting; bounding it bounds
// the parser's stack use and the cost of re-sorting nested objects.
const DefaultMaxDepth = 100

// maxDepthCeiling caps Options.MaxDepth. The parser recurses once per level,
// so an unbounded depth would let input exhaust the goroutine stack, which is
// a fatal error rather than a recoverable panic. encoding/json uses the same
// ceiling for the same reason.
const maxDepthCeiling = 10000

// DefaultMaxBytes is the input size limit used when Options.MaxBytes is zero.
// It is sized for the largest JSON a homeserver legitimately canonicalises: a
// signed federation request body carrying a full transaction (50 PDUs and 100
// EDUs of up to 64 KiB each). Callers handling single events should set the
// spec's 65536-byte PDU limit instead.
const DefaultMaxBytes = 16 << 20

// Options selects the strictness and resource limits of a canonicalisation.
// The zero value is lenient (room versions 1 to 5) with default limits.
type Options struct {
	// Strict enforces the canonical JSON rules that room versions 6 and later
	// require servers to enforce: every number must be an integer without
	// fraction or exponent in [-(2^53)+1, (2^53)-1], and no object may repeat
	// a key. Without Strict, a number with a fraction or exponent is written
	// as ECMAScript's Number::toString would (1e10 becomes 10000000000, 1.50
	// becomes 1.5), an integer of any size is kept digit for digit, and a
	// repeated key keeps its last value. In both modes -0 becomes 0.
	Strict bool

	// MaxDepth is the maximum nesting of objects and arrays; a top-level
	// object or array has depth 1. Zero or negative means DefaultMaxDepth;
	// values above 10000 are treated as 10000.
	MaxDepth int

	// MaxBytes is the maximum input size in bytes. Zero means
	// DefaultMaxBytes; a negative value disables the check.
	MaxBytes int
}

// Canonicalize parses JSON and returns its canonical encoding, using lenient
// Options with default limits. Use Options{Strict: true}.Canonicalize for
// JSON from rooms of version 6 or later.
func Canonicalize(data []byte) ([]byte, error) {
	return Options{}.Canonicalize(data)
}

// Marshal encodes v with encoding/json and returns the canonical encoding of
// the result, using lenient Options with default limits. Use
// Options{Strict: true}.Marshal when building JSON for rooms of version 6 or
// later, so that a stray float is caught here rather than by remote servers.
func Marshal(v any) ([]byte, error) {
	return Options{}.Marshal(v)
}

// Canonicalize parses data and returns its canonical encoding. The returned
// error is an *Error wrapping one of the Err* sentinels.
func (o Options) Canonicalize(data []byte) ([]byte, error) {
	maxBytes := o.MaxBytes
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxBytes > 0 && len(data) > maxBytes {
		return nil, &Error{
			Err:    ErrTooLarge,
			Offset: maxBytes,
			Detail: fmt.Sprintf("input is %d bytes, limit is %d", len(data), maxBytes),
		}
	}
	maxDepth := o.MaxDepth
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if maxDepth > maxDepthCeiling {
		maxDepth = maxDepthCeiling
	}
	p := parser{
		in:       data,
		out:      make([]byte, 0, len(data)+16),
		strict:   o.Strict,
		maxDepth: maxDepth,
		// Enough for typical events without regrowing.
		members: make([]member, 0, 32),
		keys:    make([]byte, 0, 512),
	}
	if err := p.parseDocument(); err != nil {
		return nil, err
	}
	return p.out, nil
}

// Validate reports whether data is acceptable under o, returning the same
// error Canonicalize would.
func (o Options) Validate(data []byte) error {
	_, err := o.Canonicalize(data)
	return err
}

// Marshal encodes v with encoding/json and returns the canonical encoding of
// the result. HTML escaping is disabled because canonical JSON writes <, >
// and & literally; the \u2028 and \u2029 escapes encoding/json still emits
// are undone by canonicalisation. Encoding failures are returned wrapped;
// canonicalisation failures are *Error as from Canonicalize.
func (o Options) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonicaljson: %w", err)
	}
	return o.Canonicalize(buf.Bytes())
}
