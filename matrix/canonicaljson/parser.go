package canonicaljson

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// parser reads JSON from in and appends its canonical form to out in one
// pass. Object members are written in input order and, when the object
// closes, rearranged into key order. Because nested objects are already
// canonical by the time their parent closes, each member can be moved as an
// opaque byte range.
type parser struct {
	in       []byte
	pos      int
	out      []byte
	strict   bool
	maxDepth int
	depth    int

	// members is a stack shared by all open objects: an object's members sit
	// above those of its ancestors and are popped when it closes. Sharing one
	// slice avoids an allocation per object.
	members []member
	// keys holds the unescaped keys of open objects' members, also as a
	// stack. Copying every key here, not only escaped ones, keeps member
	// free of pointers and flags; keys are short, so the copy is cheap.
	keys []byte
	// tmp is scratch space for rearranging an object's members.
	tmp []byte
}

// member records where one `"key":value` pair of an open object was
// written, and its key for sorting. It holds no pointers, so the members
// stack costs the garbage collector nothing to scan or write-barrier.
type member struct {
	start, end int // span of the pair in out
	inPos      int // offset of the key in the input: tie-break and errors
	// keyOff and keyLen locate the unescaped key in parser.keys. Keys sort
	// by Unicode code point, and UTF-8 byte order is code point order, so
	// bytes.Compare orders them; the escaped canonical text would not, since
	// escaping turns a control character into a backslash sequence.
	keyOff, keyLen int
	// prefix holds the first 8 bytes of the key, big-endian and
	// zero-padded, so that most comparisons are one integer compare.
	prefix uint64
}

func (m *member) key(keys []byte) []byte { return keys[m.keyOff : m.keyOff+m.keyLen] }

func compareKeys(keys []byte, a, b *member) int {
	if a.prefix != b.prefix {
		return cmp.Compare(a.prefix, b.prefix)
	}
	return bytes.Compare(a.key(keys), b.key(keys))
}

func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

func (p *parser) parseDocument() error {
	p.skipSpace()
	if err := p.parseValue(); err != nil {
		err.finishPath()
		return err
	}
	p.skipSpace()
	if p.pos < len(p.in) {
		return p.unexpected("after top-level value")
	}
	return nil
}

func (p *parser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) parseValue() *Error {
	if p.pos >= len(p.in) {
		return p.unexpected("looking for a value")
	}
	switch c := p.in[p.pos]; c {
	case '{':
		return p.parseObject()
	case '[':
		return p.parseArray()
	case '"':
		_, err := p.parseString()
		return err
	case 't':
		return p.parseLiteral("true")
	case 'f':
		return p.parseLiteral("false")
	case 'n':
		return p.parseLiteral("null")
	default:
		if c == '-' || isDigit(c) {
			return p.parseNumber()
		}
		return p.unexpected("looking for a value")
	}
}

func (p *parser) enter() *Error {
	p.depth++
	if p.depth > p.maxDepth {
		return &Error{Err: ErrTooDeep, Offset: p.pos, Detail: fmt.Sprintf("limit is %d levels", p.maxDepth)}
	}
	return nil
}

func (p *parser) parseObject() *Error {
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++
	p.out = append(p.out, '{')
	objStart := len(p.out)
	base := len(p.members)
	keysBase := len(p.keys)

	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		p.out = append(p.out, '}')
		p.depth--
		return nil
	}
	for {
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return p.unexpected("looking for an object key")
		}
		if len(p.members) > base {
			p.out = append(p.out, ',')
		}
		m := member{start: len(p.out), inPos: p.pos}
		escaped, err := p.parseString()
		if err != nil {
			return err
		}
		m.keyOff = len(p.keys)
		if escaped {
			p.keys = appendUnescaped(p.keys, p.out[m.start+1:len(p.out)-1])
		} else {
			p.keys = append(p.keys, p.out[m.start+1:len(p.out)-1]...)
		}
		m.keyLen = len(p.keys) - m.keyOff
		m.prefix = keyPrefix(m.key(p.keys))

		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return p.unexpected("after object key")
		}
		p.pos++
		p.out = append(p.out, ':')
		p.skipSpace()
		if err := p.parseValue(); err != nil {
			err.rev = append(err.rev, string(m.key(p.keys)))
			return err
		}
		m.end = len(p.out)
		p.members = append(p.members, m)

		p.skipSpace()
		if p.pos < len(p.in) && p.in[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.pos < len(p.in) && p.in[p.pos] == '}' {
			p.pos++
			break
		}
		return p.unexpected("after object member")
	}

	if err := p.sortMembers(objStart, base); err != nil {
		return err
	}
	p.members = p.members[:base]
	p.keys = p.keys[:keysBase]
	p.out = append(p.out, '}')
	p.depth--
	return nil
}

// sortMembers puts the members above base, written from out[objStart:],
// into key order, and resolves duplicate keys.
func (p *parser) sortMembers(objStart, base int) *Error {
	ms := p.members[base:]
	// Input that is already canonical (re-verifying a stored event, say) is
	// common, so check before paying for a sort and a copy.
	inOrder := true
	for i := 1; i < len(ms); i++ {
		if compareKeys(p.keys, &ms[i-1], &ms[i]) >= 0 {
			inOrder = false
			break
		}
	}
	if inOrder {
		return nil
	}
	keys := p.keys
	slices.SortFunc(ms, func(a, b member) int {
		if c := compareKeys(keys, &a, &b); c != 0 {
			return c
		}
		// Equal keys keep input order, so the sort is in effect stable
		// and "last one wins" below matches what encoding/json and
		// Python's json module do. (pdqsort with this tie-break is much
		// faster than a stable sort.)
		return a.inPos - b.inPos
	})
	kept := ms[:0]
	for i := range ms {
		if i+1 < len(ms) && bytes.Equal(ms[i].key(keys), ms[i+1].key(keys)) {
			if p.strict {
				return &Error{
					Err:    ErrDuplicateKey,
					Offset: ms[i+1].inPos,
					Detail: quoteForError(ms[i].key(keys)),
					rev:    []string{string(ms[i].key(keys))},
				}
			}
			continue
		}
		kept = append(kept, ms[i])
	}

	if p.tmp == nil {
		// Every object fits in the output so far, which is about the input
		// size: one allocation serves all objects.
		p.tmp = make([]byte, 0, max(len(p.in), len(p.out))+16)
	}
	p.tmp = append(p.tmp[:0], p.out[objStart:]...)
	p.out = p.out[:objStart]
	for i, m := range kept {
		if i > 0 {
			p.out = append(p.out, ',')
		}
		p.out = append(p.out, p.tmp[m.start-objStart:m.end-objStart]...)
	}
	return nil
}

func (p *parser) parseArray() *Error {
	if err := p.enter(); err != nil {
		return err
	}
	p.pos++
	p.out = append(p.out, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		p.out = append(p.out, ']')
		p.depth--
		return nil
	}
	for i := 0; ; i++ {
		if i > 0 {
			p.out = append(p.out, ',')
		}
		if err := p.parseValue(); err != nil {
			err.rev = append(err.rev, strconv.Itoa(i))
			return err
		}
		p.skipSpace()
		if p.pos < len(p.in) && p.in[p.pos] == ',' {
			p.pos++
			p.skipSpace()
			continue
		}
		if p.pos < len(p.in) && p.in[p.pos] == ']' {
			p.pos++
			break
		}
		return p.unexpected("after array element")
	}
	p.out = append(p.out, ']')
	p.depth--
	return nil
}

func (p *parser) parseLiteral(lit string) *Error {
	if !bytes.HasPrefix(p.in[p.pos:], []byte(lit)) {
		return p.unexpected("looking for a value")
	}
	p.pos += len(lit)
	p.out = append(p.out, lit...)
	return nil
}

// parseString reads the string starting at p.pos and appends its canonical
// form. It reports whether the canonical form contains escape sequences, in
// which case its text differs from the string's value.
func (p *parser) parseString() (escaped bool, _ *Error) {
	in := p.in
	start := p.pos
	i := start + 1
	run := i // start of bytes not yet copied to out
	p.out = append(p.out, '"')
	for {
		// Skip bytes that are copied verbatim, eight at a time while
		// possible, then one at a time up to the next byte that needs
		// attention.
		for i+8 <= len(in) && !needsAttention(binary.LittleEndian.Uint64(in[i:])) {
			i += 8
		}
		for i < len(in) && in[i] >= 0x20 && in[i] < utf8.RuneSelf && in[i] != '"' && in[i] != '\\' {
			i++
		}
		if i >= len(in) {
			return false, &Error{Err: ErrInvalidJSON, Offset: start, Detail: "unterminated string"}
		}
		switch c := in[i]; {
		case c == '"':
			p.out = append(p.out, in[run:i]...)
			p.out = append(p.out, '"')
			p.pos = i + 1
			return escaped, nil
		case c == '\\':
			p.out = append(p.out, in[run:i]...)
			n, esc, err := p.parseEscape(i)
			if err != nil {
				return false, err
			}
			escaped = escaped || esc
			i += n
			run = i
		case c < 0x20:
			return false, &Error{
				Err:    ErrInvalidJSON,
				Offset: i,
				Detail: fmt.Sprintf("unescaped control character U+%04X in string", c),
			}
		default:
			// Non-ASCII: canonical JSON writes it literally, so only
			// validate. DecodeRune also rejects UTF-8-encoded surrogates
			// and overlong forms.
			r, size := utf8.DecodeRune(in[i:])
			if r == utf8.RuneError && size == 1 {
				return false, &Error{Err: ErrInvalidJSON, Offset: i, Detail: "invalid UTF-8 in string"}
			}
			i += size
		}
	}
}

// needsAttention reports whether any of the eight bytes packed in w is a
// quote, a backslash, a control character or non-ASCII, using the classic
// SWAR zero-byte tests: (x-0x01..)&^x has a byte's top bit set where x has a
// zero byte (and possibly above it, which does not matter for "any").
func needsAttention(w uint64) bool {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	quote := w ^ (ones * '"')
	backslash := w ^ (ones * '\\')
	control := (w - ones*0x20) &^ w // top bit set where a byte is < 0x20
	return ((quote-ones)&^quote|(backslash-ones)&^backslash|control|w)&high != 0
}

// parseEscape reads the escape sequence at in[i] (a backslash), appends the
// canonical form of the character it denotes, and returns the number of input
// bytes consumed and whether the canonical form is itself an escape.
func (p *parser) parseEscape(i int) (n int, escaped bool, _ *Error) {
	in := p.in
	if i+1 >= len(in) {
		return 0, false, &Error{Err: ErrInvalidJSON, Offset: i, Detail: "unterminated escape sequence"}
	}
	switch in[i+1] {
	case '"', '\\':
		p.out = append(p.out, '\\', in[i+1])
		return 2, true, nil
	case '/':
		p.out = append(p.out, '/')
		return 2, false, nil
	case 'b', 'f', 'n', 'r', 't':
		p.out = append(p.out, '\\', in[i+1])
		return 2, true, nil
	case 'u':
		r, ok := parseHex4(in[i+2:])
		if !ok {
			return 0, false, &Error{Err: ErrInvalidJSON, Offset: i, Detail: `invalid \u escape`}
		}
		n = 6
		if utf16.IsSurrogate(r) {
			// A high surrogate must be followed by an escaped low surrogate;
			// anything else cannot be encoded as UTF-8, so canonical JSON
			// cannot represent it.
			r2 := utf8.RuneError
			if r < 0xDC00 && i+12 <= len(in) && in[i+6] == '\\' && in[i+7] == 'u' {
				if low, ok := parseHex4(in[i+8:]); ok {
					r2 = utf16.DecodeRune(r, low)
				}
			}
			if r2 == utf8.RuneError {
				return 0, false, &Error{
					Err:    ErrInvalidJSON,
					Offset: i,
					Detail: fmt.Sprintf(`unpaired UTF-16 surrogate \u%04X`, r),
				}
			}
			r = r2
			n = 12
		}
		return n, p.appendRune(r), nil
	default:
		return 0, false, &Error{
			Err:    ErrInvalidJSON,
			Offset: i,
			Detail: "invalid escape sequence " + quoteForError(in[i:i+2]),
		}
	}
}

// appendRune appends the canonical form of r inside a string and reports
// whether that form is an escape sequence.
func (p *parser) appendRune(r rune) bool {
	switch {
	case r == '"' || r == '\\':
		p.out = append(p.out, '\\', byte(r))
		return true
	case r < 0x20:
		p.out = appendControl(p.out, byte(r))
		return true
	default:
		p.out = utf8.AppendRune(p.out, r)
		return false
	}
}

// appendControl appends the escape the canonical JSON grammar prescribes for
// an ASCII control character: a short form where JSON has one, otherwise
// \u00XX with lower-case hex digits.
func appendControl(dst []byte, c byte) []byte {
	switch c {
	case '\b':
		return append(dst, '\\', 'b')
	case '\t':
		return append(dst, '\\', 't')
	case '\n':
		return append(dst, '\\', 'n')
	case '\f':
		return append(dst, '\\', 'f')
	case '\r':
		return append(dst, '\\', 'r')
	default:
		const hex = "0123456789abcdef"
		return append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
	}
}

// appendUnescaped decodes string content already in canonical form, so it
// only needs to handle the escapes appendControl and appendRune produce.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 't':
			dst = append(dst, '\t')
		case 'n':
			dst = append(dst, '\n')
		case 'f':
			dst = append(dst, '\f')
		case 'r':
			dst = append(dst, '\r')
		case 'u':
			dst = append(dst, unhex(s[i+3])<<4|unhex(s[i+4]))
			i += 4
		default: // '"' or '\\'
			dst = append(dst, s[i])
		}
	}
	return dst
}

func parseHex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		if !isHex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// unexpected reports an unexpected byte (or end of input) at p.pos.
func (p *parser) unexpected(context string) *Error {
	var what string
	switch {
	case p.pos >= len(p.in):
		what = "end of input"
	case p.in[p.pos] >= 0x20 && p.in[p.pos] < 0x7F:
		what = strconv.QuoteRune(rune(p.in[p.pos]))
	default:
		what = fmt.Sprintf("byte 0x%02x", p.in[p.pos])
	}
	return &Error{Err: ErrInvalidJSON, Offset: p.pos, Detail: "unexpected " + what + " " + context}
}
