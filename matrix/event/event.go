// Package event implements the PDU format of every room version: parsing,
// content and reference hashes, event IDs, signing, verification and
// redaction. It does no I/O.
package event

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// Event is a parsed, immutable PDU of a known room version. Its JSON is kept
// in canonical form, so that hashes and signatures are computed over the
// bytes every server derives, without re-encoding.
type Event struct {
	eventID string
	version RoomVersionInfo
	json    []byte // canonical JSON; never modified
	f       fields

	// contentHash records the outcome of the content hash check when a
	// constructor made it.
	contentHash contentHashState

	// membership is content.membership of an m.room.member event, read
	// when parsed; membershipOK is false when it is not a string.
	membership   string
	membershipOK bool
}

type contentHashState uint8

const (
	contentHashUnchecked contentHashState = iota
	contentHashMatches
	contentHashMismatch
)

// fields are the top-level PDU keys that the protocol reads. Unknown keys are
// kept in the raw JSON and never dropped. Values are read by exact key: the
// case-insensitive field matching of encoding/json would let a key such as
// "Type" stand in for a missing "type", which the hashes, the redaction
// algorithm and other servers do not do.
type fields struct {
	RoomID         string
	Sender         string
	Type           string
	StateKey       *string
	Content        json.RawMessage
	Depth          int64
	OriginServerTS int64
	Redacts        string // top-level redacts, room versions 1 to 10
	Unsigned       json.RawMessage
	EventID        string // present only in room versions 1 and 2

	prevEventIDs []string
	authEventIDs []string
	// prevEvents and authEvents are the raw lists, kept for validation.
	prevEvents json.RawMessage
	authEvents json.RawMessage
}

// ErrBadEvent wraps every reason an event's JSON is refused.
var ErrBadEvent = errors.New("bad event")

// ErrEventTooLarge means the event's canonical JSON exceeds MaxEventSize.
// Errors wrapping it also wrap ErrBadEvent.
var ErrEventTooLarge = errors.New("event too large")

// MaxEventSize is the largest a PDU may be, measured as canonical JSON in
// the federation format including signatures and unsigned (client-server
// spec, "Size limits").
const MaxEventSize = 65536

// maxUntrustedInput bounds the raw bytes NewEventFromUntrustedJSON will
// parse. The size limit applies to the canonical form, which white space in
// the input can make much smaller, so the raw bound is looser; it only stops
// a peer from making us parse megabytes to learn the event is too large.
const maxUntrustedInput = 16 * MaxEventSize

func badEvent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadEvent, fmt.Sprintf(format, args...))
}

// NewEventFromTrustedJSONWithEventID builds an event whose ID is already known
// and whose JSON has already been checked, such as one loaded from our own
// database. Nothing is hashed or verified; the JSON is canonicalised.
func NewEventFromTrustedJSONWithEventID(eventID string, eventJSON []byte, v RoomVersion) (*Event, error) {
	info, err := v.Info()
	if err != nil {
		return nil, err
	}
	members, canon, err := canonicalEvent(eventJSON, canonicaljson.Options{})
	if err != nil {
		return nil, err
	}
	e := &Event{eventID: eventID, version: info, json: canon}
	if err := e.parse(members); err != nil {
		return nil, err
	}
	return e, nil
}

// NewEventFromTrustedJSON builds an event from JSON this server produced or
// already accepted, computing its ID (reading it, in room versions 1 and 2)
// and checking its content hash (see ContentHashMatches). The field checks
// and strict canonical JSON checks of NewEventFromUntrustedJSON are skipped.
func NewEventFromTrustedJSON(eventJSON []byte, v RoomVersion) (*Event, error) {
	info, err := v.Info()
	if err != nil {
		return nil, err
	}
	members, canon, err := canonicalEvent(eventJSON, canonicaljson.Options{})
	if err != nil {
		return nil, err
	}
	return newEventFromMembers(members, canon, info)
}

// NewEventFromUntrustedJSON builds an event received over federation. It
// refuses (with an error wrapping ErrBadEvent) anything that does not follow
// the room version's event format: JSON that breaks the strict canonical
// JSON rules in room versions 6 and later, a canonical encoding larger than
// MaxEventSize, missing keys or keys of the wrong type, identifiers that do
// not parse or exceed their size limits, and too many prev or auth events.
//
// A content hash mismatch is not a format error: the spec says to process
// the redacted event instead. The returned event is the one received; check
// ContentHashMatches and use Redacted when it reports false. Signatures are
// not checked here (see VerifyEventSignatures).
func NewEventFromUntrustedJSON(eventJSON []byte, v RoomVersion) (*Event, error) {
	info, err := v.Info()
	if err != nil {
		return nil, err
	}
	opts := canonicaljson.Options{Strict: info.StrictCanonicalJSON, MaxBytes: maxUntrustedInput}
	members, canon, err := canonicalEvent(eventJSON, opts)
	if err != nil {
		return nil, err
	}
	if len(canon) > MaxEventSize {
		return nil, fmt.Errorf("%w: %w: %d bytes as canonical JSON, limit %d",
			ErrBadEvent, ErrEventTooLarge, len(canon), MaxEventSize)
	}
	if err := validateUntrusted(members, info); err != nil {
		return nil, err
	}
	return newEventFromMembers(members, canon, info)
}

// canonicalEvent canonicalises event JSON and splits the top-level object.
func canonicalEvent(eventJSON []byte, opts canonicaljson.Options) ([]member, []byte, error) {
	canon, err := opts.Canonicalize(eventJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	members, err := splitObject(canon)
	if err != nil {
		return nil, nil, badEvent("event must be a JSON object")
	}
	return members, canon, nil
}

// newEventFromMembers parses a canonical event, computes its ID and checks
// its content hash.
func newEventFromMembers(members []member, canon []byte, info RoomVersionInfo) (*Event, error) {
	e := &Event{version: info, json: canon}
	if err := e.parse(members); err != nil {
		return nil, err
	}
	var err error
	if e.eventID, err = eventIDOf(members, info); err != nil {
		return nil, err
	}
	e.contentHash = contentHashMismatch
	if checkContentHash(members) == nil {
		e.contentHash = contentHashMatches
	}
	return e, nil
}

// parse fills e.f from the members of e.json and checks the shape the room
// version demands. It accepts what every event we store must have; the
// stricter checks for events from federation are in validateUntrusted.
func (e *Event) parse(members []member) error {
	var ok bool
	for _, m := range members {
		v := m.value[:len(m.value):len(m.value)]
		switch {
		case m.is("type"):
			if e.f.Type, ok = jsonString(v); !ok {
				return badEvent("type must be a string")
			}
		case m.is("sender"):
			if e.f.Sender, ok = jsonString(v); !ok {
				return badEvent("sender must be a string")
			}
		case m.is("room_id"):
			if e.f.RoomID, ok = jsonString(v); !ok {
				return badEvent("room_id must be a string")
			}
		case m.is("state_key"):
			if string(v) == "null" {
				continue // historically written for non-state events
			}
			sk, ok := jsonString(v)
			if !ok {
				return badEvent("state_key must be a string")
			}
			e.f.StateKey = &sk
		case m.is("content"):
			e.f.Content = json.RawMessage(v)
		case m.is("prev_events"):
			e.f.prevEvents = json.RawMessage(v)
		case m.is("auth_events"):
			e.f.authEvents = json.RawMessage(v)
		case m.is("depth"):
			if err := json.Unmarshal(v, &e.f.Depth); err != nil {
				return badEvent("depth must be an integer")
			}
		case m.is("origin_server_ts"):
			if err := json.Unmarshal(v, &e.f.OriginServerTS); err != nil {
				return badEvent("origin_server_ts must be an integer")
			}
		case m.is("unsigned"):
			e.f.Unsigned = json.RawMessage(v)
		case m.is("redacts") && !e.version.RedactsInContent:
			if e.f.Redacts, ok = jsonString(v); !ok {
				return badEvent("redacts must be a string")
			}
		case m.is("event_id") && e.version.EventIDFormat == EventIDFormatV1:
			if e.f.EventID, ok = jsonString(v); !ok {
				return badEvent("event_id must be a string")
			}
		}
	}
	var err error
	if e.f.prevEventIDs, err = parseEventRefs(e.f.prevEvents, e.version.EventIDFormat); err != nil {
		return badEvent("prev_events: %v", err)
	}
	if e.f.authEventIDs, err = parseEventRefs(e.f.authEvents, e.version.EventIDFormat); err != nil {
		return badEvent("auth_events: %v", err)
	}
	if e.f.Type == "" {
		return badEvent("missing type")
	}
	if e.f.Sender == "" {
		return badEvent("missing sender")
	}
	if e.f.RoomID == "" && !(e.version.CreateEventIsRoomID && isRoomCreate(e.f.Type, e.f.StateKey)) {
		return badEvent("missing room_id")
	}
	if len(e.f.Content) == 0 || e.f.Content[0] != '{' {
		return badEvent("content must be an object")
	}
	if e.f.Type == "m.room.member" {
		// Read once: the membership of every member of a room is asked
		// for again and again (who to wake, who to push to, the rules).
		e.membership, e.membershipOK = jsonString(e.contentMember("membership"))
	}
	return nil
}

// parseEventRefs reads prev_events or auth_events: a list of event IDs, or in
// room versions 1 and 2 a list of [event ID, {hashes}] pairs.
func parseEventRefs(raw json.RawMessage, format EventIDFormat) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if format != EventIDFormatV1 {
		var ids []string
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, err
		}
		return ids, nil
	}
	var pairs []json.RawMessage
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(pairs))
	for _, p := range pairs {
		var pair []json.RawMessage
		if err := json.Unmarshal(p, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("want [event_id, hashes] pairs")
		}
		var id string
		if err := json.Unmarshal(pair[0], &id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// isRoomCreate reports whether an event is a room's m.room.create event:
// only the one with an empty state key creates the room, and only it may
// lack a room_id in room version 12.
func isRoomCreate(evType string, stateKey *string) bool {
	return evType == "m.room.create" && stateKey != nil && *stateKey == ""
}

// members splits the event's canonical JSON.
func (e *Event) members() ([]member, error) {
	members, err := splitObject(e.json)
	if err != nil {
		return nil, badEvent("%v", err)
	}
	return members, nil
}

// contentMember returns the value of a content key, matched exactly, or nil.
func (e *Event) contentMember(name string) []byte {
	members, err := splitObject(e.f.Content)
	if err != nil {
		return nil
	}
	return find(members, name)
}

// EventID is the event's ID: carried in the event for room versions 1 and 2,
// derived from the reference hash otherwise.
func (e *Event) EventID() string { return e.eventID }

// JSON is the event's full JSON in canonical form. Callers must not modify
// it.
func (e *Event) JSON() []byte { return e.json }

// Version is the room version of the room the event belongs to.
func (e *Event) Version() RoomVersionInfo { return e.version }

// RoomID is the room the event belongs to. A room version 12 create event
// carries no room_id: its room ID is derived from its own event ID.
func (e *Event) RoomID() string {
	if e.f.RoomID == "" && e.version.CreateEventIsRoomID && isRoomCreate(e.f.Type, e.f.StateKey) && len(e.eventID) > 1 {
		return "!" + e.eventID[1:]
	}
	return e.f.RoomID
}

// Sender is the user who sent the event.
func (e *Event) Sender() string { return e.f.Sender }

// Type is the event type.
func (e *Event) Type() string { return e.f.Type }

// StateKey is the state key, or nil for a non-state event.
func (e *Event) StateKey() *string { return e.f.StateKey }

// StateKeyEquals reports whether the event is a state event with this state key.
func (e *Event) StateKeyEquals(s string) bool { return e.f.StateKey != nil && *e.f.StateKey == s }

// Content is the event's content object, in canonical form. Callers must not
// modify it.
func (e *Event) Content() json.RawMessage { return e.f.Content }

// PrevEventIDs are the events this one follows in the room's DAG.
func (e *Event) PrevEventIDs() []string { return e.f.prevEventIDs }

// AuthEventIDs are the events that authorise this one.
func (e *Event) AuthEventIDs() []string { return e.f.authEventIDs }

// Depth is the event's depth in the DAG.
func (e *Event) Depth() int64 { return e.f.Depth }

// OriginServerTS is the sending server's timestamp in milliseconds.
func (e *Event) OriginServerTS() int64 { return e.f.OriginServerTS }

// Unsigned is the unsigned data carried with the event, if any.
func (e *Event) Unsigned() json.RawMessage { return e.f.Unsigned }

// Redacts is the event a m.room.redaction event redacts: a top-level key
// before room version 11, a content key from version 11 on.
func (e *Event) Redacts() string {
	if e.f.Type != "m.room.redaction" {
		return ""
	}
	if e.version.RedactsInContent {
		s, _ := jsonString(e.contentMember("redacts"))
		return s
	}
	return e.f.Redacts
}

// Membership is content.membership of an m.room.member event.
func (e *Event) Membership() (string, error) {
	if e.f.Type != "m.room.member" {
		return "", fmt.Errorf("not an m.room.member event")
	}
	if !e.membershipOK {
		return "", badEvent("m.room.member without a membership string")
	}
	return e.membership, nil
}

// ContentHashMatches reports whether the event's hashes.sha256 is the hash
// of its content. When it is not, the event was altered (or is a redacted
// copy) and the spec requires processing Redacted() instead.
func (e *Event) ContentHashMatches() bool {
	switch e.contentHash {
	case contentHashMatches:
		return true
	case contentHashMismatch:
		return false
	}
	members, err := e.members()
	return err == nil && checkContentHash(members) == nil
}

// ReferenceHash is the event's reference hash (see the package function
// ReferenceHash). Room versions 1 and 2 need it to reference the event from
// prev_events and auth_events.
func (e *Event) ReferenceHash() ([sha256.Size]byte, error) {
	members, err := e.members()
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return referenceHashOf(members, e.version)
}

// Redacted returns the event with the redaction algorithm of its room
// version applied and the same event ID.
func (e *Event) Redacted() (*Event, error) {
	members, err := e.members()
	if err != nil {
		return nil, err
	}
	redacted, err := redactMembers(members, e.version)
	if err != nil {
		return nil, err
	}
	out := &Event{eventID: e.eventID, version: e.version, json: joinObject(redacted)}
	if redacted, err = out.members(); err != nil {
		return nil, err
	}
	if err := out.parse(redacted); err != nil {
		return nil, err
	}
	return out, nil
}
