package event

import "fmt"

// RoomVersion is the identifier of a room version, e.g. "10".
type RoomVersion string

// EventIDFormat says how a room version names its events.
type EventIDFormat int

const (
	// EventIDFormatV1 is `$opaque:origin`, carried inside the event (room versions 1 and 2).
	EventIDFormatV1 EventIDFormat = iota + 1
	// EventIDFormatV3 is `$` + standard unpadded base64 of the reference hash (room version 3).
	EventIDFormatV3
	// EventIDFormatV4 is `$` + URL-safe unpadded base64 of the reference hash (room versions 4+).
	EventIDFormatV4
)

// StateResAlgorithm names a state resolution algorithm.
type StateResAlgorithm int

const (
	// StateResV1 is the original algorithm of room version 1.
	StateResV1 StateResAlgorithm = iota + 1
	// StateResV2 is used by room versions 2 to 11.
	StateResV2
	// StateResV2_1 is used by room version 12: iterative auth checks start from an
	// empty state and the conflicted set includes the conflicted state subgraph.
	StateResV2_1
)

// RedactionAlgorithm names a variant of the redaction algorithm.
type RedactionAlgorithm int

const (
	// RedactionV1 is the algorithm of room versions 1 to 5.
	RedactionV1 RedactionAlgorithm = iota + 1
	// RedactionV6 drops m.room.aliases content (room versions 6 and 7).
	RedactionV6
	// RedactionV8 keeps `allow` in m.room.join_rules (room version 8).
	RedactionV8
	// RedactionV9 keeps `join_authorised_via_users_server` in m.room.member (room versions 9 and 10).
	RedactionV9
	// RedactionV11 is the reworked algorithm of room versions 11 and 12.
	RedactionV11
)

// RoomVersionInfo describes everything that differs between room versions.
// The protocol packages branch on these properties, never on the version string.
type RoomVersionInfo struct {
	ID     RoomVersion
	Stable bool

	EventIDFormat            EventIDFormat
	StateRes                 StateResAlgorithm
	Redaction                RedactionAlgorithm
	EnforceKeyValidity       bool // v5+: signing keys must be valid at origin_server_ts
	SpecialAliasesAuth       bool // v1-v5: m.room.aliases has its own auth rule
	StrictCanonicalJSON      bool // v6+: integers only, within range, no duplicate keys
	NotificationsPowerLevels bool // v6+: the power levels auth rule also checks `notifications`
	Knocking                 bool // v7+: knock membership and join rule
	RestrictedJoins          bool // v8+: `restricted` join rule
	KnockRestricted          bool // v10+: `knock_restricted` join rule
	IntegerPowerLevels       bool // v10+: power level values must be JSON integers
	CreatorFromSender        bool // v11+: the creator is the create event's sender, not content.creator
	RedactsInContent         bool // v11+: m.room.redaction carries `redacts` in content
	CreateEventIsRoomID      bool // v12: room ID is derived from the create event's reference hash
	PrivilegedCreators       bool // v12: creators (sender + additional_creators) have infinite power
}

var roomVersions = map[RoomVersion]RoomVersionInfo{}

func init() {
	base := RoomVersionInfo{
		Stable:             true,
		EventIDFormat:      EventIDFormatV1,
		StateRes:           StateResV1,
		Redaction:          RedactionV1,
		SpecialAliasesAuth: true,
	}
	add := func(id RoomVersion, change func(*RoomVersionInfo)) {
		change(&base)
		base.ID = id
		roomVersions[id] = base
	}
	add("1", func(*RoomVersionInfo) {})
	add("2", func(v *RoomVersionInfo) { v.StateRes = StateResV2 })
	add("3", func(v *RoomVersionInfo) { v.EventIDFormat = EventIDFormatV3 })
	add("4", func(v *RoomVersionInfo) { v.EventIDFormat = EventIDFormatV4 })
	add("5", func(v *RoomVersionInfo) { v.EnforceKeyValidity = true })
	add("6", func(v *RoomVersionInfo) {
		v.SpecialAliasesAuth = false
		v.StrictCanonicalJSON = true
		v.Redaction = RedactionV6
		v.NotificationsPowerLevels = true
	})
	add("7", func(v *RoomVersionInfo) { v.Knocking = true })
	add("8", func(v *RoomVersionInfo) { v.RestrictedJoins = true; v.Redaction = RedactionV8 })
	add("9", func(v *RoomVersionInfo) { v.Redaction = RedactionV9 })
	add("10", func(v *RoomVersionInfo) { v.KnockRestricted = true; v.IntegerPowerLevels = true })
	add("11", func(v *RoomVersionInfo) {
		v.Redaction = RedactionV11
		v.CreatorFromSender = true
		v.RedactsInContent = true
	})
	add("12", func(v *RoomVersionInfo) {
		v.StateRes = StateResV2_1
		v.CreateEventIsRoomID = true
		v.PrivilegedCreators = true
	})
}

// DefaultRoomVersion is the version the spec recommends for new rooms.
const DefaultRoomVersion RoomVersion = "12"

// Info returns the properties of a room version, or an error for a version
// this server does not know.
func (v RoomVersion) Info() (RoomVersionInfo, error) {
	info, ok := roomVersions[v]
	if !ok {
		return RoomVersionInfo{}, fmt.Errorf("unsupported room version %q", string(v))
	}
	return info, nil
}

// KnownRoomVersions lists every supported room version, in ascending order.
func KnownRoomVersions() []RoomVersion {
	return []RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
}
