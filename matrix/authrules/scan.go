package authrules

import (
	"bytes"
	"encoding/json"
)

// The auth rules read a handful of keys from event contents on every check.
// Decoding whole contents with encoding/json (a power levels event with its
// users map, for every message) dominated the cost of Allowed, so the hot
// reads use this scanner instead: it finds one member of a JSON object
// without allocating. Keys match exactly, and when a key repeats the last
// value wins, as with encoding/json decoding into a map.

// objectMember returns the raw value of key in the JSON object obj. ok is
// false if obj is not an object or has no such key.
func objectMember(obj []byte, key string) (value []byte, ok bool) {
	forEachMember(obj, func(k []byte, escaped bool, v []byte) bool {
		if keyEquals(k, escaped, key) {
			value, ok = v, true
		}
		return true
	})
	return value, ok
}

// isObject reports whether raw is a JSON object.
func isObject(raw []byte) bool {
	i := skipSpace(raw, 0)
	return i < len(raw) && raw[i] == '{'
}

// forEachMember calls f with each member of the JSON object obj: the key's
// raw bytes between the quotes (escaped tells whether they hold escapes)
// and the value's raw bytes. f returns false to stop. It reports false if
// obj is not a well-formed object, having called f for the members before
// the fault.
func forEachMember(obj []byte, f func(key []byte, escaped bool, value []byte) bool) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for i < len(obj) {
		if obj[i] != '"' {
			return false
		}
		end, escaped := scanString(obj, i)
		if end < 0 {
			return false
		}
		key := obj[i+1 : end-1]
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		i = skipSpace(obj, i+1)
		vEnd := skipValue(obj, i)
		if vEnd < 0 {
			return false
		}
		if !f(key, escaped, obj[i:vEnd]) {
			return true
		}
		i = skipSpace(obj, vEnd)
		if i >= len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
	return false
}

// forEachElement calls f with each element of the JSON array arr and
// reports whether arr is a well-formed array.
func forEachElement(arr []byte, f func(value []byte)) bool {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false
	}
	i = skipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return true
	}
	for i < len(arr) {
		end := skipValue(arr, i)
		if end < 0 {
			return false
		}
		f(arr[i:end])
		i = skipSpace(arr, end)
		if i >= len(arr) {
			return false
		}
		switch arr[i] {
		case ',':
			i = skipSpace(arr, i+1)
		case ']':
			return true
		default:
			return false
		}
	}
	return false
}

// keyEquals compares a raw object key with s, unescaping only keys that
// need it.
func keyEquals(raw []byte, escaped bool, s string) bool {
	if !escaped {
		return string(raw) == s
	}
	k, ok := unquote(raw)
	return ok && k == s
}

// unquote decodes the bytes between a JSON string's quotes.
func unquote(inner []byte) (string, bool) {
	quoted := make([]byte, 0, len(inner)+2)
	quoted = append(append(append(quoted, '"'), inner...), '"')
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", false
	}
	return s, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string starting at b[i] (a
// quote), whether it holds escapes, or -1.
func scanString(b []byte, i int) (end int, escaped bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, false
}

// skipValue returns the index just past the JSON value starting at b[i], or
// -1. Nested values are skipped by counting brackets outside strings; the
// input has been parsed as JSON once already, so this only needs to find
// where a value ends.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := scanString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
	scalar:
		for ; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				break scalar
			}
		}
		if j == i {
			return -1
		}
		return j
	}
}

// jsonString returns raw as a string if it is a JSON string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	return unquote(inner)
}

// memberString returns the value of key in obj if it is a JSON string.
func memberString(obj []byte, key string) (string, bool) {
	raw, ok := objectMember(obj, key)
	if !ok {
		return "", false
	}
	return jsonString(raw)
}
