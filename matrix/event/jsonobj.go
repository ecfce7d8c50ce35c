package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash"
	"strconv"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// The helpers in this file work on canonical JSON as produced by the
// canonicaljson package. Canonical JSON has no insignificant white space,
// sorted and unique object keys and one spelling per string, so an object can
// be split into its members by a simple scan, a subset of its members taken
// in order is again canonical, and a key equals a plain ASCII name exactly
// when its encoding is that name in quotes. Redaction, hashing and signing
// therefore never decode and re-encode values they do not look at, which
// keeps them fast and keeps numbers in historical events byte for byte.

// member is one key/value pair of a canonical JSON object, both as slices
// of the encoding: key includes its quotes.
type member struct {
	key   []byte
	value []byte
}

// is reports whether the member's key is name. name must be a plain ASCII
// string without characters canonical JSON escapes, as all PDU keys are.
func (m member) is(name string) bool {
	return len(m.key) == len(name)+2 && string(m.key[1:len(m.key)-1]) == name
}

var errNotCanonical = errors.New("not canonical JSON")

// splitObject returns the members of the canonical JSON object obj in order.
func splitObject(obj []byte) ([]member, error) {
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return nil, errors.New("not a JSON object")
	}
	members := make([]member, 0, 16)
	i := 1
	if obj[i] == '}' {
		if i+1 != len(obj) {
			return nil, errNotCanonical
		}
		return members, nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, errNotCanonical
		}
		keyEnd, err := skipValue(obj, i)
		if err != nil {
			return nil, err
		}
		if keyEnd >= len(obj) || obj[keyEnd] != ':' {
			return nil, errNotCanonical
		}
		valEnd, err := skipValue(obj, keyEnd+1)
		if err != nil {
			return nil, err
		}
		members = append(members, member{key: obj[i:keyEnd], value: obj[keyEnd+1 : valEnd]})
		if valEnd >= len(obj) {
			return nil, errNotCanonical
		}
		switch obj[valEnd] {
		case ',':
			i = valEnd + 1
		case '}':
			if valEnd+1 != len(obj) {
				return nil, errNotCanonical
			}
			return members, nil
		default:
			return nil, errNotCanonical
		}
	}
}

// skipValue returns the index just past the canonical JSON value starting
// at b[i]. It relies on the input being valid JSON and only checks enough to
// never run past the end of b.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errNotCanonical
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errNotCanonical
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipValue(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errNotCanonical
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		if j == i {
			return 0, errNotCanonical
		}
		return j, nil
	}
}

// find returns the value of the member called name, or nil.
func find(members []member, name string) []byte {
	for _, m := range members {
		if m.is(name) {
			return m.value
		}
	}
	return nil
}

// joinObject encodes members as a JSON object. If the members are in
// canonical order the result is canonical.
func joinObject(members []member) []byte {
	n := 2
	for _, m := range members {
		n += len(m.key) + len(m.value) + 2
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, m.key...)
		out = append(out, ':')
		out = append(out, m.value...)
	}
	return append(out, '}')
}

// hashObject writes the encoding joinObject would produce for the members
// that skip does not reject into h, without building it in memory.
func hashObject(h hash.Hash, members []member, skip func(member) bool) {
	var buf [1]byte
	buf[0] = '{'
	h.Write(buf[:])
	first := true
	for _, m := range members {
		if skip != nil && skip(m) {
			continue
		}
		if !first {
			buf[0] = ','
			h.Write(buf[:])
		}
		first = false
		h.Write(m.key)
		buf[0] = ':'
		h.Write(buf[:])
		h.Write(m.value)
	}
	buf[0] = '}'
	h.Write(buf[:])
}

// without returns the members whose keys are not among names.
func without(members []member, names ...string) []member {
	out := make([]member, 0, len(members))
next:
	for _, m := range members {
		for _, n := range names {
			if m.is(n) {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// withMember returns members with the member called name set to value,
// replacing an existing one or inserting it where canonical order puts it.
// name must be plain ASCII (see member.is); value must be canonical JSON.
func withMember(members []member, name string, value []byte) []member {
	out := make([]member, 0, len(members)+1)
	key := []byte(strconv.Quote(name))
	inserted := false
	for _, m := range members {
		if !inserted {
			if m.is(name) {
				out = append(out, member{key: key, value: value})
				inserted = true
				continue
			}
			if bytes.Compare([]byte(name), unquoteKey(m.key)) < 0 {
				out = append(out, member{key: key, value: value})
				inserted = true
			}
		}
		out = append(out, m)
	}
	if !inserted {
		out = append(out, member{key: key, value: value})
	}
	return out
}

// unquoteKey returns the UTF-8 bytes of an encoded key, whose byte order is
// the code point order canonical JSON sorts keys by.
func unquoteKey(key []byte) []byte {
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	var s string
	if err := json.Unmarshal(key, &s); err != nil {
		return inner
	}
	return []byte(s)
}

// jsonString decodes a JSON value that must be a string.
func jsonString(value []byte) (string, bool) {
	if len(value) < 2 || value[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(value, '\\') < 0 {
		return string(value[1 : len(value)-1]), true
	}
	var s string
	if err := json.Unmarshal(value, &s); err != nil {
		return "", false
	}
	return s, true
}

// quoteJSON encodes s as a canonical JSON string.
func quoteJSON(s string) ([]byte, error) {
	// The strings we quote (IDs, hashes, signatures, server names) almost
	// never need escaping, so skip the encoder for them.
	simple := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			simple = false
			break
		}
	}
	if simple {
		out := make([]byte, 0, len(s)+2)
		out = append(out, '"')
		out = append(out, s...)
		return append(out, '"'), nil
	}
	return canonicaljson.Marshal(s)
}
