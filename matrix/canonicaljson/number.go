package canonicaljson

import (
	"bytes"
	"math"
	"strconv"
)

// maxSafeInteger is (2^53)-1, the largest magnitude canonical JSON allows:
// every integer up to it survives a round trip through an IEEE 754 double,
// which is how many JSON libraries hold numbers.
const maxSafeInteger = "9007199254740991"

func (p *parser) parseNumber() *Error {
	in := p.in
	start := p.pos
	i := start
	if in[i] == '-' {
		i++
	}
	digits := i
	if i >= len(in) || !isDigit(in[i]) {
		p.pos = i
		return p.unexpected("in number, looking for a digit")
	}
	if in[i] == '0' {
		i++ // JSON forbids leading zeros; a following digit fails in the caller
	} else {
		for i < len(in) && isDigit(in[i]) {
			i++
		}
	}
	intEnd := i
	isFloat := false
	if i < len(in) && in[i] == '.' {
		i++
		if i >= len(in) || !isDigit(in[i]) {
			p.pos = i
			return p.unexpected("after decimal point, looking for a digit")
		}
		for i < len(in) && isDigit(in[i]) {
			i++
		}
		isFloat = true
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if i >= len(in) || !isDigit(in[i]) {
			p.pos = i
			return p.unexpected("in exponent, looking for a digit")
		}
		for i < len(in) && isDigit(in[i]) {
			i++
		}
		isFloat = true
	}
	p.pos = i

	if !isFloat {
		mag := in[digits:intEnd]
		if len(mag) == 1 && mag[0] == '0' {
			// The spec forbids -0 in canonical output and its examples map
			// it to 0; as an integer literal it is accepted in strict mode
			// too (it is an integer, and in range).
			p.out = append(p.out, '0')
			return nil
		}
		if p.strict && !inSafeRange(mag) {
			return &Error{
				Err:    ErrIntegerRange,
				Offset: start,
				Detail: quoteForError(in[start:intEnd]) + " is outside [-(2^53)+1, (2^53)-1]",
			}
		}
		// Lenient mode keeps big integers digit for digit rather than
		// rounding them through a double: historical events carrying them
		// were signed over their exact text.
		p.out = append(p.out, in[start:intEnd]...)
		return nil
	}

	if p.strict {
		return &Error{Err: ErrFloat, Offset: start, Detail: quoteForError(in[start:i])}
	}
	f, err := strconv.ParseFloat(string(in[start:i]), 64)
	if err != nil && math.IsInf(f, 0) {
		return &Error{Err: ErrNumberOverflow, Offset: start, Detail: quoteForError(in[start:i])}
	}
	// Underflow to zero or a subnormal is not an error: the value is
	// representable, just rounded, like any other float.
	p.out = appendECMAScriptNumber(p.out, f)
	return nil
}

// inSafeRange reports whether the decimal digits mag (no sign, no leading
// zeros) denote a magnitude of at most (2^53)-1.
func inSafeRange(mag []byte) bool {
	switch {
	case len(mag) < len(maxSafeInteger):
		return true
	case len(mag) > len(maxSafeInteger):
		return false
	default:
		return bytes.Compare(mag, []byte(maxSafeInteger)) <= 0
	}
}

// appendECMAScriptNumber formats f the way ECMAScript's Number::toString
// does (ECMA-262, section 6.1.6.1.20): the shortest digits that round-trip,
// in plain decimal notation for magnitudes in [1e-6, 1e21) and exponent
// notation otherwise, with -0 written as 0.
//
// The spec gives no canonical form for floats, which only appear in room
// versions 1 to 5, but its canonical JSON examples map 1e10 to 10000000000
// and -0 to 0, which is exactly this algorithm. It is deterministic and
// idempotent: formatting the parsed output again yields the same bytes.
func appendECMAScriptNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// Shortest round-trip digits in the form d[.ddd]e±xx.
	var buf [32]byte
	s := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	e := bytes.IndexByte(s, 'e')
	exp, _ := strconv.Atoi(string(s[e+1:]))
	var digitBuf [24]byte
	digits := append(digitBuf[:0], s[0])
	if e > 1 {
		digits = append(digits, s[2:e]...)
	}
	k := len(digits) // number of significant digits
	n := exp + 1     // position of the decimal point relative to the digits

	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}
