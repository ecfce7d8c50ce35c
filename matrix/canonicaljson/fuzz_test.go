package canonicaljson

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"unicode/utf8"
)

// FuzzCanonicalize checks invariants that must hold for any input:
//   - no panic, and every error is a classified *Error;
//   - accepted input is JSON per encoding/json, and the output is too;
//   - canonicalising the output again yields the same bytes, and the
//     output decodes to the same value as the input;
//   - input accepted in strict mode has no duplicate keys, canonicalises to
//     what lenient mode and a naive reference encoder produce;
//   - valid UTF-8 JSON without \u escapes is only ever rejected for the
//     limits (depth, float overflow), never as malformed.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"one":1,"two":"Two"}`,
		`{"b":"2","a":"1"}`,
		`{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}`,
		`{"a":"日本語"}`,
		`{"本":2,"日":1}`,
		`{"a":"\u65E5"}`,
		`{"a":null}`,
		`{"a":-0,"b":1e10}`,
		`{"a":1,"a":2,"\u0061":3}`,
		`["\ud83d\ude80","\u0000\b\u001f",1.5e300,-9007199254740991]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Canonicalize(data)
		outStrict, errStrict := strict.Canonicalize(data)

		for _, e := range []error{err, errStrict} {
			if e != nil {
				if cerr := checkError(e, len(data)); cerr != nil {
					t.Fatal(cerr)
				}
			}
		}

		if err == nil {
			if !json.Valid(data) {
				t.Fatalf("accepted input encoding/json rejects: %q", data)
			}
			if !json.Valid(out) || !utf8.Valid(out) {
				t.Fatalf("invalid output %q for %q", out, data)
			}
			again, err := Canonicalize(out)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("not idempotent: %q -> %q -> %q, %v", data, out, again, err)
			}
			// Canonicalisation must not change meaning: both decode to
			// the same value (last duplicate key winning, as here).
			before, err1 := decodeNumbers(data)
			after, err2 := decodeNumbers(out)
			if err1 != nil || err2 != nil || !sameValue(before, after) {
				t.Fatalf("meaning changed: %q -> %q (%v, %v)", data, out, err1, err2)
			}
		}

		if errStrict == nil {
			if err != nil || !bytes.Equal(out, outStrict) {
				t.Fatalf("strict accepted %q as %q but lenient gave %q, %v", data, outStrict, out, err)
			}
			dup, derr := hasDuplicateKeys(data)
			if derr != nil || dup {
				t.Fatalf("strict accepted %q with duplicate keys (%v)", data, derr)
			}
			if cerr := checkAgainstReference(data, outStrict); cerr != nil {
				t.Fatalf("input %q: %v", data, cerr)
			}
			again, err := strict.Canonicalize(outStrict)
			if err != nil || !bytes.Equal(again, outStrict) {
				t.Fatalf("strict not idempotent: %q -> %q -> %q, %v", data, outStrict, again, err)
			}
		}

		// encoding/json's validator tolerates invalid UTF-8 and lone
		// surrogate escapes, which this package rightly rejects; outside
		// those, it is the oracle for syntax.
		if err != nil && json.Valid(data) && utf8.Valid(data) && !bytes.Contains(data, []byte(`\u`)) &&
			!errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrNumberOverflow) {
			t.Fatalf("rejected valid JSON %q: %v", data, err)
		}
	})
}

func decodeNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// sameValue compares decoded JSON values. Numbers are equal if they are
// the same float64 or, where they overflow it (big integers, which lenient
// mode keeps verbatim), the same text.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		fa, errA := strconv.ParseFloat(string(a), 64)
		fb, errB := strconv.ParseFloat(string(b), 64)
		if errA == nil && errB == nil {
			return fa == fb
		}
		return a == b || (a == "-0" && b == "0")
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			if vb, ok := b[k]; !ok || !sameValue(va, vb) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}
