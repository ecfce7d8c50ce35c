package authrules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/matrix/event"
)

// CreatorPowerLevel is the level UserLevel reports for a room creator in room
// versions whose creators have infinite power (v12). It is above every value a
// power levels event of those versions can hold: their values are integers
// within the canonical JSON range ±(2**53-1), anything else is refused.
const CreatorPowerLevel int64 = math.MaxInt64

// maxCanonicalInt bounds the integers canonical JSON allows.
const maxCanonicalInt = 1<<53 - 1

// The named levels of m.room.power_levels content, as indexes into
// plContent.named.
const (
	levelBan = iota
	levelInvite
	levelKick
	levelRedact
	levelEventsDefault
	levelStateDefault
	levelUsersDefault
	numNamedLevels
)

var namedLevelKeys = [numNamedLevels]string{
	levelBan:           "ban",
	levelInvite:        "invite",
	levelKick:          "kick",
	levelRedact:        "redact",
	levelEventsDefault: "events_default",
	levelStateDefault:  "state_default",
	levelUsersDefault:  "users_default",
}

// namedLevelDefaults are the values of absent keys (client-server API,
// m.room.power_levels). state_default is 50 whether or not the room has a
// power levels event.
var namedLevelDefaults = [numNamedLevels]int64{
	levelBan:           50,
	levelInvite:        0,
	levelKick:          50,
	levelRedact:        50,
	levelEventsDefault: 0,
	levelStateDefault:  50,
	levelUsersDefault:  0,
}

// defaultRoomNotificationLevel is the level of notifications.room when absent.
const defaultRoomNotificationLevel = 50

// optLevel is a level that may be absent: the power levels change rules look
// at which keys were added or removed, not only at effective values.
type optLevel struct {
	v   int64
	set bool
}

// plContent is m.room.power_levels content as written, without defaults.
type plContent struct {
	named         [numNamedLevels]optLevel
	events        map[string]int64
	notifications map[string]int64
	users         map[string]int64
}

// plProblems are the values of power levels content that its room version
// does not accept, split the way the auth rules treat them: a bad `users`
// entry is refused in every version, other bad values are refused up front
// only from room version 10 on.
type plProblems struct {
	users error
	other error
}

// first returns the first problem, users first.
func (p plProblems) first() error {
	if p.users != nil {
		return p.users
	}
	return p.other
}

// parsePowerLevelsContent reads power levels content the way room version v
// reads it. Values the version does not accept are left out, so their
// default applies, and reported in problems: authorizing a new power levels
// event refuses them, reading one from state, which was authorised already,
// ignores them.
func parsePowerLevelsContent(content []byte, v event.RoomVersionInfo) (plContent, plProblems) {
	var c plContent
	var probs plProblems
	var named [numNamedLevels][]byte
	var events, notifications, users []byte
	ok := forEachMember(content, func(k []byte, escaped bool, val []byte) bool {
		key := string(k)
		if escaped {
			key, _ = unquote(k)
		}
		// A repeated key keeps its last value, as a map decoding would.
		switch key {
		case "events":
			events = val
		case "notifications":
			notifications = val
		case "users":
			users = val
		default:
			for i, nk := range namedLevelKeys {
				if key == nk {
					named[i] = val
				}
			}
		}
		return true
	})
	if !ok {
		probs.other = fmt.Errorf("content is not an object")
		return c, probs
	}
	fail := func(dst *error, err error) {
		if *dst == nil {
			*dst = err
		}
	}
	for i, raw := range named {
		if raw == nil {
			continue
		}
		n, err := parseLevel(raw, v)
		if err != nil {
			fail(&probs.other, fmt.Errorf("%s: %w", namedLevelKeys[i], err))
			continue
		}
		c.named[i] = optLevel{v: n, set: true}
	}
	readMap := func(name string, raw []byte, dst *error, validKey func(string) bool) map[string]int64 {
		if raw == nil {
			return nil
		}
		out := map[string]int64{}
		ok := isObject(raw) && forEachMember(raw, func(k []byte, escaped bool, val []byte) bool {
			key := string(k)
			if escaped {
				key, _ = unquote(k)
			}
			if validKey != nil && !validKey(key) {
				fail(dst, fmt.Errorf("%s: %q is not a valid user ID", name, key))
				return true
			}
			n, err := parseLevel(val, v)
			if err != nil {
				delete(out, key)
				fail(dst, fmt.Errorf("%s[%q]: %w", name, key, err))
				return true
			}
			out[key] = n
			return true
		})
		if !ok {
			fail(dst, fmt.Errorf("%s is not an object", name))
			return nil
		}
		return out
	}
	c.events = readMap("events", events, &probs.other, nil)
	c.notifications = readMap("notifications", notifications, &probs.other, nil)
	c.users = readMap("users", users, &probs.users, validUserID)
	return c, probs
}

var errNotInteger = errors.New("not an integer")

// parseLevel reads one power level value. Every version accepts a JSON
// integer. Room versions 1-9 also accept a string holding an integer
// ("stringy" power levels) and versions 1-5, which predate canonical JSON,
// accept floats, truncated. Versions with canonical JSON bound integers to
// ±(2**53-1). Before that the spec bounds neither integers nor strings, and
// floats only by the range of a double, so such values saturate at the
// int64 range: the rules only ever compare levels.
func parseLevel(raw json.RawMessage, v event.RoomVersionInfo) (int64, error) {
	if len(raw) == 0 {
		return 0, errNotInteger
	}
	switch c := raw[0]; {
	case c == '"':
		if v.IntegerPowerLevels {
			return 0, fmt.Errorf("%w: strings are not accepted in this room version", errNotInteger)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errNotInteger
		}
		return parseStringyLevel(s)
	case c == '-' || isDigit(c):
		s := string(raw)
		neg := s[0] == '-'
		digits := strings.TrimPrefix(s, "-")
		if isAllDigits(digits) {
			n := saturatingInt(neg, digits)
			if v.StrictCanonicalJSON && (n > maxCanonicalInt || n < -maxCanonicalInt) {
				return 0, fmt.Errorf("%w: %s is outside the canonical JSON range", errNotInteger, s)
			}
			return n, nil
		}
		if v.StrictCanonicalJSON {
			return 0, fmt.Errorf("%w: %s", errNotInteger, s)
		}
		return parseFloatyLevel(s)
	default:
		return 0, fmt.Errorf("%w: %s", errNotInteger, raw)
	}
}

// parseStringyLevel reads the string form of room versions 1-9: a base 10
// integer with optional leading zeroes, one optional sign and optional
// surrounding whitespace.
func parseStringyLevel(s string) (int64, error) {
	t := strings.TrimSpace(s)
	neg := false
	if t != "" && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if !isAllDigits(t) {
		return 0, fmt.Errorf("%w: %q", errNotInteger, s)
	}
	return saturatingInt(neg, t), nil
}

// parseFloatyLevel reads a JSON number with a fraction or exponent (room
// versions 1-5): exponent applied, then truncated at the decimal point. The
// truncation is done on the decimal digits so it is exact; values outside
// the binary64 range are refused as the spec requires.
func parseFloatyLevel(s string) (int64, error) {
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		return 0, fmt.Errorf("%w: %s is outside the range of a double", errNotInteger, s)
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	mantissa, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mantissa = s[:i]
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			// Only an exponent too large for an int gets here, and
			// ParseFloat accepted the number, so the mantissa is zero or the
			// exponent is hugely negative: either way it truncates to zero.
			return 0, nil
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mantissa, ".")
	digits := intPart + frac
	point := len(intPart) + exp // digits before the decimal point
	if point <= 0 {
		return 0, nil
	}
	if point < len(digits) {
		digits = digits[:point]
	} else {
		digits += strings.Repeat("0", point-len(digits))
	}
	return saturatingInt(neg, digits), nil
}

func isAllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// saturatingInt converts decimal digits to an int64, clamping at its bounds.
func saturatingInt(neg bool, digits string) int64 {
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0
	}
	if neg {
		digits = "-" + digits
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		if neg {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return n
}

// PowerLevels is the effective power levels of a room: its
// m.room.power_levels content with the defaults of absent keys applied, the
// levels of a room without such an event, and the creators' privilege.
type PowerLevels struct {
	// The content is either parsed once (NewPowerLevels, for callers that
	// ask many questions) or scanned per question (Allowed, which asks two
	// or three, where parsing every entry of a large users map for each
	// message would dominate the cost). Both read values the same way.
	parsed  bool
	content plContent
	raw     []byte
	version event.RoomVersionInfo

	// hasEvent is false when the room has no m.room.power_levels event: then
	// creator has level 100 and everyone else 0 (room versions 1-11).
	hasEvent bool
	creator  string
	// creators have infinite power when privileged (room version 12).
	creators   []string
	privileged bool
}

// NewPowerLevels returns the power levels of a room from its m.room.create
// event and its m.room.power_levels event, which is nil if the room has none.
// The room version is the create event's. Values of the power levels event
// that the version does not accept are ignored, so their defaults apply;
// authorised power levels events hold none.
func NewPowerLevels(create, powerLevels *event.Event) (*PowerLevels, error) {
	if create == nil {
		return nil, errors.New("authrules: power levels need the room's m.room.create event")
	}
	cc, err := parseCreate(create)
	if err != nil {
		return nil, err
	}
	p := newPowerLevels(cc, powerLevels)
	if p.hasEvent {
		p.content, _ = parsePowerLevelsContent(p.raw, p.version)
		p.parsed, p.raw = true, nil
	}
	return p, nil
}

// newPowerLevels returns power levels that scan the content per question.
func newPowerLevels(cc *createContent, powerLevels *event.Event) *PowerLevels {
	p := &PowerLevels{
		version:    cc.version,
		creator:    cc.creator,
		creators:   cc.creators,
		privileged: cc.privileged,
	}
	if powerLevels != nil {
		p.hasEvent = true
		p.raw = powerLevels.Content()
	}
	return p
}

// named returns one of the named levels, or its default.
func (p *PowerLevels) named(i int) int64 {
	if p.parsed {
		if l := p.content.named[i]; l.set {
			return l.v
		}
		return namedLevelDefaults[i]
	}
	if raw, ok := objectMember(p.raw, namedLevelKeys[i]); ok {
		if l, err := parseLevel(raw, p.version); err == nil {
			return l
		}
	}
	return namedLevelDefaults[i]
}

// entry returns an entry of the events, notifications or users map.
func (p *PowerLevels) entry(mapName, key string) (int64, bool) {
	if p.parsed {
		var m map[string]int64
		switch mapName {
		case "events":
			m = p.content.events
		case "notifications":
			m = p.content.notifications
		case "users":
			m = p.content.users
		}
		l, ok := m[key]
		return l, ok
	}
	if !p.hasEvent {
		return 0, false
	}
	obj, ok := objectMember(p.raw, mapName)
	if !ok || !isObject(obj) {
		return 0, false
	}
	raw, ok := objectMember(obj, key)
	if !ok || (mapName == "users" && !validUserID(key)) {
		return 0, false
	}
	l, err := parseLevel(raw, p.version)
	return l, err == nil
}

// UserLevel is the power level of a user. A privileged creator (room version
// 12) has CreatorPowerLevel. Without a power levels event, the creator of a
// room of version 1-11 has 100 and everyone else 0.
func (p *PowerLevels) UserLevel(userID string) int64 {
	if p.IsPrivilegedCreator(userID) {
		return CreatorPowerLevel
	}
	if !p.hasEvent {
		if !p.privileged && userID == p.creator && p.creator != "" {
			return 100
		}
		return 0
	}
	if l, ok := p.entry("users", userID); ok {
		return l
	}
	return p.named(levelUsersDefault)
}

// IsPrivilegedCreator reports whether the user is a room creator with
// infinite power: the create event's sender or one of its
// additional_creators, in room versions with privileged creators.
func (p *PowerLevels) IsPrivilegedCreator(userID string) bool {
	if !p.privileged {
		return false
	}
	for _, c := range p.creators {
		if c == userID {
			return true
		}
	}
	return false
}

// Creators are the room's privileged creators, nil before room version 12.
func (p *PowerLevels) Creators() []string {
	if !p.privileged {
		return nil
	}
	return append([]string(nil), p.creators...)
}

// EventLevel is the level required to send an event of this type: its
// entry in `events`, else state_default for state events and
// events_default for others. Membership changes and m.room.third_party_invite
// are governed by other levels in the auth rules, whatever this says.
func (p *PowerLevels) EventLevel(eventType string, isState bool) int64 {
	if l, ok := p.entry("events", eventType); ok {
		return l
	}
	if isState {
		return p.named(levelStateDefault)
	}
	return p.named(levelEventsDefault)
}

// NotificationLevel is the level required to trigger the notification of
// this key (e.g. "room" for @room). ok is false for a key with neither an
// entry nor a default; only "room" has a default, 50.
func (p *PowerLevels) NotificationLevel(key string) (level int64, ok bool) {
	if l, found := p.entry("notifications", key); found {
		return l, true
	}
	if key == "room" {
		return defaultRoomNotificationLevel, true
	}
	return 0, false
}

// BanLevel is the level required to ban a user (`ban`, default 50).
func (p *PowerLevels) BanLevel() int64 { return p.named(levelBan) }

// KickLevel is the level required to kick a user (`kick`, default 50).
func (p *PowerLevels) KickLevel() int64 { return p.named(levelKick) }

// InviteLevel is the level required to invite a user (`invite`, default 0).
func (p *PowerLevels) InviteLevel() int64 { return p.named(levelInvite) }

// RedactLevel is the level required to redact another user's event
// (`redact`, default 50).
func (p *PowerLevels) RedactLevel() int64 { return p.named(levelRedact) }

// StateDefault is the level for state events absent from `events` (default 50).
func (p *PowerLevels) StateDefault() int64 { return p.named(levelStateDefault) }

// EventsDefault is the level for other events absent from `events` (default 0).
func (p *PowerLevels) EventsDefault() int64 { return p.named(levelEventsDefault) }

// UsersDefault is the level of users absent from `users` (default 0).
func (p *PowerLevels) UsersDefault() int64 { return p.named(levelUsersDefault) }

// ValidatePowerLevelsContent applies the shape checks that the
// authorization rules make on every m.room.power_levels event, first one
// included: in all versions `users` must be an object of valid user IDs to
// levels; from room version 10 on, every level must also be a JSON integer
// and `events`/`notifications` objects of them. Before v10 a level may be a
// string holding an integer, and before v6 a float. The v12 rule on creators
// needs the create event and is left to Allowed. A failure wraps
// ErrNotAllowed.
//
// Before v10, other malformed values are refused only when a later power
// levels event changes them (see Allowed); a server building its own events
// should hold them to the v10 shape whatever the version, as
// StrictPowerLevelsContent does.
func ValidatePowerLevelsContent(content json.RawMessage, v event.RoomVersionInfo) error {
	_, probs := parsePowerLevelsContent(content, v)
	if probs.users != nil || (v.IntegerPowerLevels && probs.other != nil) {
		return notAllowed("m.room.power_levels: %v", probs.first())
	}
	return nil
}

// StrictPowerLevelsContent checks content the way a server should check the
// power levels it sends itself, in any room version: the v10+ shape, every
// level a JSON integer within the canonical JSON range. The spec asks servers
// to keep users from sending string levels even where the room version
// accepts them.
func StrictPowerLevelsContent(content json.RawMessage, v event.RoomVersionInfo) error {
	v.IntegerPowerLevels, v.StrictCanonicalJSON = true, true
	if _, probs := parsePowerLevelsContent(content, v); probs.first() != nil {
		return notAllowed("m.room.power_levels: %v", probs.first())
	}
	return nil
}
