// Package id parses and validates Matrix identifiers: server names, user
// IDs, room IDs, event IDs, room aliases and signing key IDs (spec
// appendices, "Identifier Grammar", and the room version specifications).
//
// Parsing follows the spec's rules for accepting identifiers, which are
// deliberately more tolerant than its rules for creating them: historical
// user IDs with characters no longer allowed still appear in room history
// and must be processed. Functions named ...ForRegistration apply the
// stricter rules for identifiers this server mints.
package id

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Sentinel errors, one per identifier kind; test with errors.Is. Error
// messages add the offending input (truncated) and the reason.
var (
	// ErrInvalidServerName is returned by ParseServerName.
	ErrInvalidServerName = errors.New("invalid server name")
	// ErrInvalidUserID is returned by ParseUserID.
	ErrInvalidUserID = errors.New("invalid user ID")
	// ErrInvalidLocalpart is returned by ValidateLocalpartForRegistration.
	ErrInvalidLocalpart = errors.New("invalid user ID localpart")
	// ErrInvalidRoomID is returned by ParseRoomID and RoomIDForCreateEvent.
	ErrInvalidRoomID = errors.New("invalid room ID")
	// ErrInvalidEventID is returned by ParseEventID and ParseEventIDFormat.
	ErrInvalidEventID = errors.New("invalid event ID")
	// ErrInvalidRoomAlias is returned by ParseRoomAlias.
	ErrInvalidRoomAlias = errors.New("invalid room alias")
	// ErrInvalidKeyID is returned by ParseKeyID.
	ErrInvalidKeyID = errors.New("invalid key ID")
)

// maxIDLength is the limit, in bytes, on user IDs, room IDs, room aliases
// and event IDs, sigil and server name included.
const maxIDLength = 255

// maxServerNameLength bounds a server name. The grammar caps the DNS-name
// form at 255 characters; capping the whole name (port included) at the same
// value loses nothing, since no identifier containing a longer one could
// meet its own 255-byte limit.
const maxServerNameLength = 255

// ServerName is a homeserver's name: a DNS name, an IPv4 literal or a
// bracketed IPv6 literal, with an optional port, such as "matrix.org:8448"
// or "[1234:5678::abcd]". Server names compare case-sensitively, as the spec
// requires, so ServerName is a plain string.
type ServerName string

// ParseServerName validates s against the server name grammar.
func ParseServerName(s string) (ServerName, error) {
	if reason := checkServerName(s); reason != "" {
		return "", fmt.Errorf("%w %s: %s", ErrInvalidServerName, quote(s), reason)
	}
	return ServerName(s), nil
}

// String returns the server name as written.
func (s ServerName) String() string { return string(s) }

// HostPort splits the server name into its host and optional port. The
// host of an IPv6 literal is returned without brackets, ready for
// net.JoinHostPort or netip.ParseAddr. The result is only meaningful for a
// server name that ParseServerName accepted.
func (s ServerName) HostPort() (host string, port int, hasPort bool) {
	host, portStr := splitHostPort(string(s))
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if portStr == "" {
		return host, 0, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return host, 0, false
	}
	return host, port, true
}

// IsIPLiteral reports whether the host is an IP address literal rather than
// a DNS name. Server discovery treats the two differently: an IP literal is
// connected to directly, without .well-known or SRV lookups.
func (s ServerName) IsIPLiteral() bool {
	host, _ := splitHostPort(string(s))
	return strings.HasPrefix(host, "[") || isIPv4Shape(host)
}

// splitHostPort splits at the port separator without validating anything.
// The host keeps any IPv6 brackets. A DNS name or IPv4 literal contains no
// colon, so for those the first colon separates the port.
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return s, ""
		}
		host, rest := s[:end+1], s[end+1:]
		if rest, ok := strings.CutPrefix(rest, ":"); ok {
			return host, rest
		}
		return host, ""
	}
	host, port, _ = strings.Cut(s, ":")
	return host, port
}

// checkServerName returns why s is not a valid server name, or "".
func checkServerName(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > maxServerNameLength {
		return fmt.Sprintf("longer than %d bytes", maxServerNameLength)
	}
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "IPv6 literal has no closing bracket"
		}
		host, port = s[1:end], s[end+1:]
		if reason := checkIPv6(host); reason != "" {
			return reason
		}
		if port != "" {
			p, ok := strings.CutPrefix(port, ":")
			if !ok {
				return "unexpected characters after IPv6 literal"
			}
			port = p
			if port == "" {
				return "empty port"
			}
		}
	} else {
		var hasPort bool
		host, port, hasPort = strings.Cut(s, ":")
		if hasPort && port == "" {
			return "empty port"
		}
		if reason := checkHostname(host); reason != "" {
			return reason
		}
	}
	if port != "" {
		return checkPort(port)
	}
	return ""
}

// checkIPv6 applies the grammar's "IPv6address = 2*45IPv6char" and then
// RFC 3513 section 2.2, which the spec says IPv6 literals must follow.
func checkIPv6(host string) string {
	if len(host) < 2 || len(host) > 45 {
		return "IPv6 literal must be 2 to 45 characters"
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !isDigit(c) && !('a' <= c && c <= 'f') && !('A' <= c && c <= 'F') && c != ':' && c != '.' {
			return fmt.Sprintf("invalid character %q in IPv6 literal", c)
		}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Is6() {
		return "malformed IPv6 address"
	}
	return ""
}

// checkHostname validates a DNS name or IPv4 literal.
func checkHostname(host string) string {
	if host == "" {
		return "empty hostname"
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !isDigit(c) && !isAlpha(c) && c != '-' && c != '.' {
			return fmt.Sprintf("invalid character %q in hostname", c)
		}
	}
	// Digits and dots are also DNS-name characters, so "1.2.3.256" matches
	// the dns-name rule of the grammar. The spec's prose still requires
	// dotted quads to be IPv4 literals with octets up to 255, and such a
	// name could never be resolved, so reject it rather than try DNS.
	if isIPv4Shape(host) {
		for octet := range strings.SplitSeq(host, ".") {
			if n, _ := strconv.Atoi(octet); n > 255 {
				return fmt.Sprintf("IPv4 octet %s out of range", octet)
			}
		}
	}
	return ""
}

// isIPv4Shape reports whether host matches the grammar's IPv4address rule:
// four groups of one to three digits separated by dots.
func isIPv4Shape(host string) bool {
	groups, digits := 1, 0
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case isDigit(c):
			digits++
			if digits > 3 {
				return false
			}
		case c == '.':
			if digits == 0 {
				return false
			}
			groups++
			digits = 0
		default:
			return false
		}
	}
	return groups == 4 && digits > 0
}

// checkPort applies "port = 1*5DIGIT" and requires a usable TCP port.
func checkPort(port string) string {
	if len(port) > 5 {
		return "port longer than 5 digits"
	}
	n := 0
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return fmt.Sprintf("invalid character %q in port", port[i])
		}
		n = n*10 + int(port[i]-'0')
	}
	if n < 1 || n > 65535 {
		return fmt.Sprintf("port %d out of range 1-65535", n)
	}
	return ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// quote quotes untrusted input for an error message, truncated so that a
// hostile identifier cannot flood a log line.
func quote(s string) string {
	const limit = 80
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
