package id

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// UserID identifies a user: "@localpart:server".
type UserID struct {
	Localpart string
	Server    ServerName
}

// ParseUserID parses a user ID, accepting historical localparts: the spec
// requires servers to accept any non-surrogate code points except ':' and
// NUL, including control characters and the empty string, because rooms
// contain events from such users. Use ValidateLocalpartForRegistration for
// IDs this server creates, and IsCompliant before exposing an ID to clients
// outside the context of an event.
func ParseUserID(s string) (UserID, error) {
	local, server, reason := parseServerScoped(s, '@')
	if reason != "" {
		return UserID{}, fmt.Errorf("%w %s: %s", ErrInvalidUserID, quote(s), reason)
	}
	return UserID{Localpart: local, Server: server}, nil
}

// String returns the user ID in its "@localpart:server" form.
func (u UserID) String() string { return "@" + u.Localpart + ":" + string(u.Server) }

// IsCompliant reports whether the localpart is non-empty and consists only
// of U+0021 to U+007E. The spec calls other user IDs non-compliant: servers
// must accept them in events but should not forward them to clients
// elsewhere (device list updates, for example).
func (u UserID) IsCompliant() bool {
	if u.Localpart == "" {
		return false
	}
	for i := 0; i < len(u.Localpart); i++ {
		if c := u.Localpart[i]; c < 0x21 || c > 0x7E {
			return false
		}
	}
	return true
}

// ValidateLocalpartForRegistration checks a localpart against the grammar
// new user IDs must follow: non-empty and only a-z, 0-9, '.', '_', '=', '-',
// '/' and '+'. Upper case is rejected rather than folded because callers
// must decide whether to downcase (registration) or refuse (explicit
// requests). The complete user ID must also fit in 255 bytes, which depends
// on the server name; check it with ParseUserID.
func ValidateLocalpartForRegistration(localpart string) error {
	if localpart == "" {
		return fmt.Errorf("%w: empty", ErrInvalidLocalpart)
	}
	for i := 0; i < len(localpart); i++ {
		if !isUserIDChar(localpart[i]) {
			return fmt.Errorf("%w %s: character %s not allowed (only a-z, 0-9 and ._=-/+)",
				ErrInvalidLocalpart, quote(localpart), quoteChar(localpart[i:]))
		}
	}
	return nil
}

func isUserIDChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', isDigit(c):
		return true
	}
	switch c {
	case '-', '.', '=', '_', '/', '+':
		return true
	}
	return false
}

// RoomAlias is a human-readable room address: "#localpart:server".
type RoomAlias struct {
	Localpart string
	Server    ServerName
}

// ParseRoomAlias parses a room alias. The localpart may contain any
// non-surrogate code points except ':' and NUL.
func ParseRoomAlias(s string) (RoomAlias, error) {
	local, server, reason := parseServerScoped(s, '#')
	if reason != "" {
		return RoomAlias{}, fmt.Errorf("%w %s: %s", ErrInvalidRoomAlias, quote(s), reason)
	}
	return RoomAlias{Localpart: local, Server: server}, nil
}

// String returns the alias in its "#localpart:server" form.
func (a RoomAlias) String() string { return "#" + a.Localpart + ":" + string(a.Server) }

// RoomID identifies a room. Rooms of versions 1 to 11 have IDs of the form
// "!opaque:server"; version 12 rooms have no server part, and Opaque is the
// URL-safe unpadded base64 reference hash of the room's m.room.create event
// (Server is empty).
type RoomID struct {
	Opaque string
	Server ServerName
}

// ParseRoomID parses a room ID of either form. The form is told apart by
// the colon, which the base64 alphabet of the domainless form never
// contains.
func ParseRoomID(s string) (RoomID, error) {
	if !strings.HasPrefix(s, "!") {
		return RoomID{}, fmt.Errorf("%w %s: must start with '!'", ErrInvalidRoomID, quote(s))
	}
	if !strings.Contains(s, ":") {
		if reason := checkReferenceHash(s[1:], EventIDFormatV4); reason != "" {
			return RoomID{}, fmt.Errorf("%w %s: no server part, and not a reference hash: %s",
				ErrInvalidRoomID, quote(s), reason)
		}
		return RoomID{Opaque: s[1:]}, nil
	}
	local, server, reason := parseServerScoped(s, '!')
	if reason != "" {
		return RoomID{}, fmt.Errorf("%w %s: %s", ErrInvalidRoomID, quote(s), reason)
	}
	return RoomID{Opaque: local, Server: server}, nil
}

// String returns the room ID in its "!opaque:server" or "!opaque" form.
func (r RoomID) String() string {
	if r.Server == "" {
		return "!" + r.Opaque
	}
	return "!" + r.Opaque + ":" + string(r.Server)
}

// CreateEventID returns the ID of the room's m.room.create event for a
// room ID without a server part (room version 12): the same opaque string
// with the '$' sigil. It reports false for room IDs with a server part,
// which say nothing about the create event.
func (r RoomID) CreateEventID() (EventID, bool) {
	if r.Server != "" {
		return EventID{}, false
	}
	return EventID{Opaque: r.Opaque}, true
}

// RoomIDForCreateEvent returns the room ID a room version 12 room takes
// from the ID of its m.room.create event.
func RoomIDForCreateEvent(createEventID EventID) (RoomID, error) {
	if createEventID.Server != "" {
		return RoomID{}, fmt.Errorf("%w: create event ID %s has a server part",
			ErrInvalidRoomID, quote(createEventID.String()))
	}
	if reason := checkReferenceHash(createEventID.Opaque, EventIDFormatV4); reason != "" {
		return RoomID{}, fmt.Errorf("%w: create event ID %s: %s",
			ErrInvalidRoomID, quote(createEventID.String()), reason)
	}
	return RoomID{Opaque: createEventID.Opaque}, nil
}

// EventIDFormat is the event ID grammar of a group of room versions.
type EventIDFormat int

const (
	// EventIDFormatV1 is "$opaque:server", used by room versions 1 and 2.
	EventIDFormatV1 EventIDFormat = 1
	// EventIDFormatV3 is '$' followed by the event's reference hash in
	// unpadded base64 (standard alphabet), used by room version 3.
	EventIDFormatV3 EventIDFormat = 3
	// EventIDFormatV4 is '$' followed by the event's reference hash in
	// URL-safe unpadded base64, used by room versions 4 and later.
	EventIDFormatV4 EventIDFormat = 4
)

// EventID identifies an event. For EventIDFormatV1 IDs Opaque is the part
// before the colon and Server the part after; for the hash formats Opaque
// is the base64 reference hash and Server is empty.
type EventID struct {
	Opaque string
	Server ServerName
}

// ParseEventID parses an event ID in any of the formats, for contexts where
// the room version is unknown (a client's request path, for instance).
// Prefer ParseEventIDFormat where the room version is known.
func ParseEventID(s string) (EventID, error) {
	if strings.Contains(s, ":") {
		return ParseEventIDFormat(s, EventIDFormatV1)
	}
	if strings.ContainsAny(s, "-_") {
		return ParseEventIDFormat(s, EventIDFormatV4)
	}
	return ParseEventIDFormat(s, EventIDFormatV3)
}

// ParseEventIDFormat parses an event ID that must be in format f.
func ParseEventIDFormat(s string, f EventIDFormat) (EventID, error) {
	switch f {
	case EventIDFormatV1:
		local, server, reason := parseServerScoped(s, '$')
		if reason != "" {
			return EventID{}, fmt.Errorf("%w %s: %s", ErrInvalidEventID, quote(s), reason)
		}
		return EventID{Opaque: local, Server: server}, nil
	case EventIDFormatV3, EventIDFormatV4:
		if !strings.HasPrefix(s, "$") {
			return EventID{}, fmt.Errorf("%w %s: must start with '$'", ErrInvalidEventID, quote(s))
		}
		if reason := checkReferenceHash(s[1:], f); reason != "" {
			return EventID{}, fmt.Errorf("%w %s: %s", ErrInvalidEventID, quote(s), reason)
		}
		return EventID{Opaque: s[1:]}, nil
	default:
		return EventID{}, fmt.Errorf("%w %s: unknown event ID format %d", ErrInvalidEventID, quote(s), f)
	}
}

// String returns the event ID with its '$' sigil.
func (e EventID) String() string {
	if e.Server == "" {
		return "$" + e.Opaque
	}
	return "$" + e.Opaque + ":" + string(e.Server)
}

// referenceHashLength is the length of a SHA-256 hash in unpadded base64.
const referenceHashLength = 43

// checkReferenceHash checks that s is a 32-byte hash in unpadded base64 of
// the alphabet format f uses (standard for V3, URL-safe for V4).
func checkReferenceHash(s string, f EventIDFormat) string {
	if len(s) != referenceHashLength {
		return fmt.Sprintf("reference hash must be %d base64 characters, got %d", referenceHashLength, len(s))
	}
	val := 0
	for i := 0; i < len(s); i++ {
		v := base64Value(s[i], f)
		if v < 0 {
			alphabet := "URL-safe base64"
			if f == EventIDFormatV3 {
				alphabet = "standard base64"
			}
			return fmt.Sprintf("character %q is not %s", s[i], alphabet)
		}
		val = v
	}
	// 43 characters carry 258 bits for a 256-bit hash; an encoder always
	// leaves the last two zero. Requiring that keeps the mapping between
	// hashes and IDs one-to-one.
	if val&3 != 0 {
		return "reference hash has non-zero trailing bits"
	}
	return ""
}

// base64Value returns the 6-bit value of c in the alphabet of f, or -1.
func base64Value(c byte, f EventIDFormat) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 26
	case isDigit(c):
		return int(c-'0') + 52
	}
	if f == EventIDFormatV3 {
		switch c {
		case '+':
			return 62
		case '/':
			return 63
		}
	} else {
		switch c {
		case '-':
			return 62
		case '_':
			return 63
		}
	}
	return -1
}

// parseServerScoped splits "<sigil>localpart:server" and checks the parts
// shared by user IDs, room aliases, and room and event IDs with a server:
// the 255-byte limit, a localpart of non-surrogate code points without NUL
// (the colon cannot occur, since the first colon ends it), and a valid
// server name. It returns a reason on failure.
func parseServerScoped(s string, sigil byte) (local string, server ServerName, reason string) {
	if len(s) == 0 || s[0] != sigil {
		return "", "", fmt.Sprintf("must start with %q", sigil)
	}
	if len(s) > maxIDLength {
		return "", "", fmt.Sprintf("longer than %d bytes", maxIDLength)
	}
	local, serverStr, ok := strings.Cut(s[1:], ":")
	if !ok {
		return "", "", "missing ':' before the server name"
	}
	if !utf8.ValidString(local) {
		return "", "", "localpart is not valid UTF-8"
	}
	if strings.IndexByte(local, 0) >= 0 {
		return "", "", "localpart contains NUL"
	}
	if r := checkServerName(serverStr); r != "" {
		return "", "", "server name " + quote(serverStr) + ": " + r
	}
	return local, ServerName(serverStr), ""
}

// quoteChar quotes the first character of s for an error message.
func quoteChar(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	return fmt.Sprintf("%q", r)
}

// KeyID identifies a server signing key: "algorithm:version", such as
// "ed25519:abc_1". These appear in signatures and in
// /_matrix/key/v2/server responses. (Device and cross-signing key IDs in the
// end-to-end encryption APIs use the same shape with a looser grammar and
// are not covered here.)
type KeyID struct {
	Algorithm string
	Version   string
}

// ParseKeyID parses a signing key ID. The spec requires the version to match
// [a-zA-Z0-9_]; it gives no grammar for the algorithm, so the same
// characters are required there, which covers "ed25519", the only algorithm
// defined. Recognising the algorithm is left to the caller, since signature
// checks must skip unknown algorithms rather than fail.
func ParseKeyID(s string) (KeyID, error) {
	alg, version, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return KeyID{}, fmt.Errorf("%w %s: missing ':' between algorithm and version", ErrInvalidKeyID, quote(s))
	case alg == "":
		return KeyID{}, fmt.Errorf("%w %s: empty algorithm", ErrInvalidKeyID, quote(s))
	case version == "":
		return KeyID{}, fmt.Errorf("%w %s: empty version", ErrInvalidKeyID, quote(s))
	}
	for _, part := range []string{alg, version} {
		for i := 0; i < len(part); i++ {
			if c := part[i]; !isAlpha(c) && !isDigit(c) && c != '_' {
				return KeyID{}, fmt.Errorf("%w %s: character %s not allowed (only a-z, A-Z, 0-9 and _)",
					ErrInvalidKeyID, quote(s), quoteChar(part[i:]))
			}
		}
	}
	return KeyID{Algorithm: alg, Version: version}, nil
}

// String returns the key ID in its "algorithm:version" form.
func (k KeyID) String() string { return k.Algorithm + ":" + k.Version }

// ServerOf is the server part of a user (or room, or event) ID, "" when it
// has none. It does not validate: use ParseUserID for untrusted input.
func ServerOf(userID string) string {
	if _, s, ok := strings.Cut(userID, ":"); ok {
		return s
	}
	return ""
}

// ServersOf lists, once each and sorted, the servers of userIDs other
// than exclude: where an update about those users must be sent.
func ServersOf(userIDs []string, exclude string) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range userIDs {
		if s := ServerOf(u); s != "" && s != exclude && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
