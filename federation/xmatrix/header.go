// Package xmatrix implements the X-Matrix request authentication of the
// server-server API ("Request Authentication"): the Authorization header's
// syntax, signing outbound requests, and an HTTP middleware that verifies
// inbound ones and puts the authenticated origin in the request context.
package xmatrix

import (
	"errors"
	"fmt"
	"strings"
)

// Scheme is the authorisation scheme name.
const Scheme = "X-Matrix"

// ErrMalformed wraps every reason an Authorization header does not parse.
var ErrMalformed = errors.New("malformed X-Matrix authorization header")

// Params are the parameters of one X-Matrix Authorization header.
type Params struct {
	// Origin is the sending server's name.
	Origin string
	// Destination is the receiving server's name; empty when the sender
	// left it out, which old servers do and recipients must tolerate.
	Destination string
	// Key is the ID of the signing key, such as "ed25519:abc".
	Key string
	// Sig is the unpadded base64 signature.
	Sig string
}

// String formats the header value as senders should for the widest
// compatibility: one space after the scheme, lower-case names, every value
// quoted, no whitespace around commas. Server names, key IDs and base64
// never contain a quote or backslash, so quoting needs no escapes.
func (p Params) String() string {
	var b strings.Builder
	b.WriteString(Scheme + ` origin="` + p.Origin + `"`)
	if p.Destination != "" {
		b.WriteString(`,destination="` + p.Destination + `"`)
	}
	b.WriteString(`,key="` + p.Key + `",sig="` + p.Sig + `"`)
	return b.String()
}

// maxHeaderLen bounds the work done on a hostile header; a real one is
// about 200 bytes.
const maxHeaderLen = 4096

// ParseHeader parses an Authorization header value with the X-Matrix
// scheme, following RFC 9110 section 11.4 as the spec asks: the scheme
// (case-insensitive), one or more spaces, then comma-separated name=value
// parameters with optional whitespace around commas and "=". Names are
// case-insensitive; values are tokens or quoted strings with backslash
// escapes. For compatibility with older servers an unquoted value may
// contain characters outside the token set (such as ":" and "/"). Unknown
// parameters are ignored; origin, key and sig are required; a parameter
// given twice is an error, since the two copies could be read differently
// by different servers.
func ParseHeader(h string) (Params, error) {
	if len(h) > maxHeaderLen {
		return Params{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxHeaderLen)
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, Scheme) {
		return Params{}, fmt.Errorf("%w: scheme is not %s", ErrMalformed, Scheme)
	}
	var p Params
	seen := map[string]bool{}
	s := rest
	for {
		s = trimOWS(s)
		if s == "" {
			break
		}
		if s[0] == ',' { // empty list elements are allowed by RFC 9110's #rule
			s = s[1:]
			continue
		}
		name, after, err := parseToken(s)
		if err != nil {
			return Params{}, err
		}
		after = trimOWS(after)
		if after == "" || after[0] != '=' {
			return Params{}, fmt.Errorf("%w: parameter %q has no value", ErrMalformed, name)
		}
		after = trimOWS(after[1:])
		var value string
		if after != "" && after[0] == '"' {
			value, after, err = parseQuoted(after)
		} else {
			value, after, err = parseBare(after)
		}
		if err != nil {
			return Params{}, fmt.Errorf("%w (parameter %q)", err, name)
		}
		after = trimOWS(after)
		if after != "" && after[0] != ',' {
			return Params{}, fmt.Errorf("%w: expected a comma after parameter %q", ErrMalformed, name)
		}
		s = after

		name = strings.ToLower(name)
		var dst *string
		switch name {
		case "origin":
			dst = &p.Origin
		case "destination":
			dst = &p.Destination
		case "key":
			dst = &p.Key
		case "sig":
			dst = &p.Sig
		default:
			continue
		}
		if seen[name] {
			return Params{}, fmt.Errorf("%w: parameter %q given twice", ErrMalformed, name)
		}
		seen[name] = true
		*dst = value
	}
	for _, req := range []struct{ name, v string }{{"origin", p.Origin}, {"key", p.Key}, {"sig", p.Sig}} {
		if req.v == "" {
			return Params{}, fmt.Errorf("%w: missing or empty %s", ErrMalformed, req.name)
		}
	}
	if seen["destination"] && p.Destination == "" {
		return Params{}, fmt.Errorf("%w: empty destination", ErrMalformed)
	}
	return p, nil
}

func trimOWS(s string) string { return strings.TrimLeft(s, " \t") }

// isTchar reports whether c may appear in an RFC 9110 token.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func parseToken(s string) (tok, rest string, err error) {
	i := 0
	for i < len(s) && isTchar(s[i]) {
		i++
	}
	if i == 0 {
		return "", "", fmt.Errorf("%w: expected a parameter name at %q", ErrMalformed, clip(s))
	}
	return s[:i], s[i:], nil
}

// parseBare reads an unquoted value: a token, loosened to any visible
// character but the delimiters, for older servers that write colons and
// base64 slashes unquoted.
func parseBare(s string) (value, rest string, err error) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == '"' || c == '\\' {
			break
		}
		i++
	}
	if i == 0 {
		return "", "", fmt.Errorf("%w: empty or invalid value at %q", ErrMalformed, clip(s))
	}
	return s[:i], s[i:], nil
}

// parseQuoted reads an RFC 9110 quoted-string starting at s[0] == '"'.
func parseQuoted(s string) (value, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), s[i+1:], nil
		case c == '\\':
			i++
			if i == len(s) {
				return "", "", fmt.Errorf("%w: backslash at the end of a quoted value", ErrMalformed)
			}
			c = s[i]
			if c != '\t' && (c < ' ' || c == 0x7f) {
				return "", "", fmt.Errorf("%w: control character escaped in a quoted value", ErrMalformed)
			}
			b.WriteByte(c)
		case c == '\t' || (c >= ' ' && c != 0x7f):
			b.WriteByte(c)
		default:
			return "", "", fmt.Errorf("%w: control character in a quoted value", ErrMalformed)
		}
	}
	return "", "", fmt.Errorf("%w: unterminated quoted value", ErrMalformed)
}

func clip(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}
