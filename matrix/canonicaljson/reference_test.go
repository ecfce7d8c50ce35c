package canonicaljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// referenceCanonical is a deliberately naive second implementation used as a
// test oracle: decode with encoding/json, then encode by following the spec
// text directly. It only handles input strict mode accepts (integers, no
// duplicate keys, valid UTF-8), where decoding into Go maps loses nothing.
func referenceCanonical(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data")
	}
	var buf bytes.Buffer
	if err := referenceEncode(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func referenceEncode(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		fmt.Fprint(buf, v)
	case json.Number:
		s := v.String()
		if strings.ContainsAny(s, ".eE") {
			return fmt.Errorf("reference: float %s", s)
		}
		if s == "-0" {
			s = "0"
		}
		buf.WriteString(s)
	case string:
		referenceString(buf, v)
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := referenceEncode(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// Go compares strings bytewise; for valid UTF-8 that is code
		// point order.
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			referenceString(buf, k)
			buf.WriteByte(':')
			if err := referenceEncode(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("reference: unexpected %T", v)
	}
	return nil
}

// referenceString writes s following the grammar in the spec appendix
// literally: the seven short escapes, \u00XX for other control characters,
// everything else as is.
func referenceString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\t':
			buf.WriteString(`\t`)
		case '\n':
			buf.WriteString(`\n`)
		case '\f':
			buf.WriteString(`\f`)
		case '\r':
			buf.WriteString(`\r`)
		default:
			if r < 0x20 {
				fmt.Fprintf(buf, `\u%04x`, r)
			} else {
				buf.WriteRune(r)
			}
		}
	}
	buf.WriteByte('"')
}

// checkAgainstReference compares out, the strict canonical form of in,
// with the oracle's.
func checkAgainstReference(in, out []byte) error {
	want, err := referenceCanonical(in)
	if err != nil {
		return fmt.Errorf("reference rejected input strict mode accepted: %v", err)
	}
	if !bytes.Equal(out, want) {
		return fmt.Errorf("output differs from reference:\n got %q\nwant %q", out, want)
	}
	return nil
}

// hasDuplicateKeys reports whether any object in the valid JSON data repeats
// a key, using encoding/json's tokenizer as an independent parser.
func hasDuplicateKeys(data []byte) (bool, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object    bool
		expectKey bool
		seen      map[string]bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := tok.(string)
			if top.seen[k] {
				return true, nil
			}
			top.seen[k] = true
			top.expectKey = false
			continue
		}
		if top != nil && top.object {
			top.expectKey = true // this token is (the start of) a value
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, &frame{object: true, expectKey: true, seen: map[string]bool{}})
			case '[':
				stack = append(stack, &frame{})
			case ']', '}':
				stack = stack[:len(stack)-1]
			}
		}
	}
}

// knownSentinels lists every error class the package may return.
var knownSentinels = []error{
	ErrInvalidJSON, ErrTooDeep, ErrTooLarge, ErrDuplicateKey, ErrFloat, ErrIntegerRange, ErrNumberOverflow,
}

// checkError asserts that err is a well-formed *Error.
func checkError(err error, inputLen int) error {
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Errorf("error %v is %T, not *Error", err, err)
	}
	if !slices.Contains(knownSentinels, e.Err) {
		return fmt.Errorf("error %v has unknown class", err)
	}
	if e.Offset < 0 || e.Offset > inputLen {
		return fmt.Errorf("error %v has offset outside input of %d bytes", err, inputLen)
	}
	if !utf8.ValidString(e.Error()) {
		return fmt.Errorf("error message is not valid UTF-8: %q", e.Error())
	}
	return nil
}
