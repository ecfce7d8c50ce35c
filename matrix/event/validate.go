package event

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/parley-chat/parley/matrix/id"
)

// Limits from the PDU schemas and the client-server spec's "Size limits".
const (
	maxKeyBytes      = 255 // type and state_key
	maxPrevEvents    = 20
	maxAuthEvents    = 10
	maxDepthStrict   = 1<<53 - 1 // room versions 6 and later (canonical JSON integers)
	maxDepthLenient  = math.MaxInt64
	jsonKindString   = "string"
	jsonKindObject   = "object"
	jsonKindArray    = "array"
	jsonKindInteger  = "integer"
	jsonKindAnything = ""
)

// pduKey describes how a top-level PDU key must look in a room version.
type pduKey struct {
	name     string
	kind     string
	required bool
}

// pduKeys lists the top-level keys of the PDU format of a room version
// (data/api/server-server/definitions/pdu_v*.yaml). Keys not listed are
// allowed and not checked.
func pduKeys(v RoomVersionInfo, isCreate bool) []pduKey {
	keys := []pduKey{
		{"type", jsonKindString, true},
		{"sender", jsonKindString, true},
		{"content", jsonKindObject, true},
		{"prev_events", jsonKindArray, true},
		{"auth_events", jsonKindArray, true},
		{"depth", jsonKindInteger, true},
		{"origin_server_ts", jsonKindInteger, true},
		{"hashes", jsonKindObject, true},
		{"signatures", jsonKindObject, true},
		{"state_key", jsonKindString, false},
		{"unsigned", jsonKindObject, false},
		// A room version 12 create event has no room_id; whether one that has
		// it is allowed is for the auth rules to say.
		{"room_id", jsonKindString, !(v.CreateEventIsRoomID && isCreate)},
	}
	if !v.RedactsInContent {
		keys = append(keys, pduKey{"redacts", jsonKindString, false})
	}
	if v.EventIDFormat == EventIDFormatV1 {
		keys = append(keys, pduKey{"event_id", jsonKindString, true})
	}
	return keys
}

// jsonKind names the kind of a canonical JSON value.
func jsonKind(value []byte) string {
	if len(value) == 0 {
		return ""
	}
	switch c := value[0]; {
	case c == '"':
		return jsonKindString
	case c == '{':
		return jsonKindObject
	case c == '[':
		return jsonKindArray
	case c == '-' || ('0' <= c && c <= '9'):
		for _, d := range value[1:] {
			if d < '0' || d > '9' {
				return "number"
			}
		}
		return jsonKindInteger
	case c == 't' || c == 'f':
		return "boolean"
	default:
		return "null"
	}
}

// validateUntrusted checks a canonical event from federation against the
// event format of its room version, beyond what parse needs.
func validateUntrusted(members []member, v RoomVersionInfo) error {
	evType, _ := jsonString(find(members, "type"))
	var stateKey *string
	if sk, ok := jsonString(find(members, "state_key")); ok {
		stateKey = &sk
	}
	for _, k := range pduKeys(v, isRoomCreate(evType, stateKey)) {
		value := find(members, k.name)
		if value == nil {
			if k.required {
				return badEvent("missing %s", k.name)
			}
			continue
		}
		if got := jsonKind(value); k.kind != jsonKindAnything && got != k.kind {
			return badEvent("%s must be a JSON %s, not %s", k.name, k.kind, got)
		}
	}

	if evType == "" {
		return badEvent("type must not be empty")
	}
	if len(evType) > maxKeyBytes {
		return badEvent("type is %d bytes, limit %d", len(evType), maxKeyBytes)
	}
	if value := find(members, "state_key"); value != nil {
		sk, _ := jsonString(value)
		if len(sk) > maxKeyBytes {
			return badEvent("state_key is %d bytes, limit %d", len(sk), maxKeyBytes)
		}
	}
	sender, _ := jsonString(find(members, "sender"))
	if _, err := id.ParseUserID(sender); err != nil {
		return badEvent("sender: %v", err)
	}
	if value := find(members, "room_id"); value != nil {
		roomID, _ := jsonString(value)
		parsed, err := id.ParseRoomID(roomID)
		if err != nil {
			return badEvent("room_id: %v", err)
		}
		// Room IDs carry a server name up to version 11 and are a create
		// event's reference hash from version 12 on.
		if v.CreateEventIsRoomID != (parsed.Server == "") {
			return badEvent("room_id %q does not have the room ID format of room version %s", roomID, v.ID)
		}
	}
	if v.EventIDFormat == EventIDFormatV1 {
		eventID, _ := jsonString(find(members, "event_id"))
		if _, err := id.ParseEventIDFormat(eventID, id.EventIDFormatV1); err != nil {
			return badEvent("event_id: %v", err)
		}
	}

	maxDepth := int64(maxDepthLenient)
	if v.StrictCanonicalJSON {
		maxDepth = maxDepthStrict
	}
	depth, err := strconv.ParseInt(string(find(members, "depth")), 10, 64)
	if err != nil || depth < 0 || depth > maxDepth {
		return badEvent("depth must be an integer in [0, %d]", maxDepth)
	}
	if _, err := strconv.ParseInt(string(find(members, "origin_server_ts")), 10, 64); err != nil {
		return badEvent("origin_server_ts must be a 64-bit integer")
	}

	if err := validateEventRefs(find(members, "prev_events"), maxPrevEvents, v); err != nil {
		return badEvent("prev_events: %v", err)
	}
	if err := validateEventRefs(find(members, "auth_events"), maxAuthEvents, v); err != nil {
		return badEvent("auth_events: %v", err)
	}

	hashes, err := splitObject(find(members, "hashes"))
	if err != nil {
		return badEvent("hashes: %v", err)
	}
	if jsonKind(find(hashes, "sha256")) != jsonKindString {
		return badEvent("hashes.sha256 must be a string")
	}
	var sigs map[string]map[string]string
	if err := json.Unmarshal(find(members, "signatures"), &sigs); err != nil {
		return badEvent("signatures must map server names to objects of strings")
	}
	return nil
}

// validateEventRefs checks prev_events or auth_events: at most limit event
// IDs in the room version's format, as pairs with a hashes object in room
// versions 1 and 2.
func validateEventRefs(raw []byte, limit int, v RoomVersionInfo) error {
	var refs []json.RawMessage
	if err := json.Unmarshal(raw, &refs); err != nil {
		return err
	}
	if len(refs) > limit {
		return fmt.Errorf("%d entries, limit %d", len(refs), limit)
	}
	format := idFormat(v.EventIDFormat)
	for _, ref := range refs {
		idJSON := []byte(ref)
		if v.EventIDFormat == EventIDFormatV1 {
			var pair []json.RawMessage
			if err := json.Unmarshal(ref, &pair); err != nil || len(pair) != 2 {
				return fmt.Errorf("want [event_id, {hashes}] pairs")
			}
			if jsonKind(pair[1]) != jsonKindObject {
				return fmt.Errorf("want [event_id, {hashes}] pairs")
			}
			idJSON = pair[0]
		}
		s, ok := jsonString(idJSON)
		if !ok {
			return fmt.Errorf("event IDs must be strings")
		}
		if _, err := id.ParseEventIDFormat(s, format); err != nil {
			return err
		}
	}
	return nil
}

// idFormat maps an event ID format to the id package's.
func idFormat(f EventIDFormat) id.EventIDFormat {
	switch f {
	case EventIDFormatV1:
		return id.EventIDFormatV1
	case EventIDFormatV3:
		return id.EventIDFormatV3
	default:
		return id.EventIDFormatV4
	}
}
