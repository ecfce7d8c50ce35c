package event

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// ProtoEvent is an event this server is about to create, before hashing and
// signing. The room engine fills it from the room's state (prev_events from
// the forward extremities, auth_events from the auth event selection,
// depth) and Build turns it into a PDU of the room version's format.
type ProtoEvent struct {
	Type     string
	StateKey *string // nil for a non-state event
	Sender   string
	// RoomID must be empty for a room version 12 m.room.create event, whose
	// room ID is derived from its event ID, and set for every other event.
	RoomID string
	// Content is the content object; nil means {}.
	Content        json.RawMessage
	PrevEvents     []string
	AuthEvents     []string
	Depth          int64
	OriginServerTS int64 // milliseconds since the epoch
	// Redacts is the event an m.room.redaction redacts: written to the
	// top level before room version 11 and into content from version 11.
	Redacts string
	// Unsigned is carried with the event but covered by neither hash nor
	// signature; nil leaves it out.
	Unsigned json.RawMessage

	// EventID is the event's ID in room versions 1 and 2, where it is
	// chosen by the creating server rather than derived; empty means a
	// random "$opaque:origin". It must be empty for later versions.
	EventID string
	// ReferenceHashes maps every prev and auth event ID to its reference
	// hash (unpadded base64, see Event.ReferenceHash). Room versions 1 and 2
	// reference events as [event ID, {"sha256": hash}] pairs and need it;
	// later versions ignore it.
	ReferenceHashes map[string]string
}

// Build creates the event: it lays out the keys in the room version's
// format, adds the content hash, signs the redacted form as origin with the
// given key and checks the result against the same rules as events received
// over federation, so that other servers will accept it.
func (p ProtoEvent) Build(v RoomVersion, origin string, keyID string, key ed25519.PrivateKey) (*Event, error) {
	info, err := v.Info()
	if err != nil {
		return nil, err
	}
	pdu, err := p.layout(info, origin)
	if err != nil {
		return nil, err
	}
	opts := canonicaljson.Options{Strict: info.StrictCanonicalJSON}
	canon, err := opts.Marshal(pdu)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	members, err := splitObject(canon)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	members = withContentHash(members)
	if members, err = signEventMembers(members, origin, keyID, key, info); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	canon = joinObject(members)
	if len(canon) > MaxEventSize {
		return nil, fmt.Errorf("build: %w: %w: %d bytes, limit %d", ErrBadEvent, ErrEventTooLarge, len(canon), MaxEventSize)
	}
	// canon is a fresh buffer, so re-split it: the members must point into
	// the event's own JSON.
	if members, err = splitObject(canon); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := validateUntrusted(members, info); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return newEventFromMembers(members, canon, info)
}

// layout returns the PDU as a map from top-level key to value, without
// hashes and signatures.
func (p ProtoEvent) layout(v RoomVersionInfo, origin string) (map[string]any, error) {
	isCreate := isRoomCreate(p.Type, p.StateKey)
	content := p.Content
	if content == nil {
		content = json.RawMessage("{}")
	}
	if jsonKind(trimSpace(content)) != jsonKindObject {
		return nil, fmt.Errorf("build: content must be a JSON object")
	}
	if isCreate && (len(p.PrevEvents) > 0 || len(p.AuthEvents) > 0) {
		return nil, fmt.Errorf("build: an m.room.create event has no prev_events or auth_events")
	}
	if p.Depth < 0 {
		return nil, fmt.Errorf("build: negative depth %d", p.Depth)
	}

	pdu := map[string]any{
		"type":             p.Type,
		"sender":           p.Sender,
		"content":          content,
		"depth":            p.Depth,
		"origin_server_ts": p.OriginServerTS,
	}
	if p.StateKey != nil {
		pdu["state_key"] = *p.StateKey
	}
	if p.Unsigned != nil {
		pdu["unsigned"] = p.Unsigned
	}
	// origin stopped being protected by redaction in room version 11 and is
	// not part of the event format any more; older versions still carry it.
	if v.Redaction != RedactionV11 {
		pdu["origin"] = origin
	}

	switch {
	case v.CreateEventIsRoomID && isCreate:
		if p.RoomID != "" {
			return nil, fmt.Errorf("build: a room version %s m.room.create event has no room_id", v.ID)
		}
	case p.RoomID == "":
		return nil, fmt.Errorf("build: missing room ID")
	default:
		pdu["room_id"] = p.RoomID
	}
	if v.CreateEventIsRoomID && !isCreate && len(p.RoomID) > 1 {
		createID := "$" + p.RoomID[1:]
		for _, a := range p.AuthEvents {
			if a == createID {
				return nil, fmt.Errorf("build: room version %s events must not list the m.room.create event %s in auth_events", v.ID, createID)
			}
		}
	}

	if p.Redacts != "" {
		if p.Type != "m.room.redaction" {
			return nil, fmt.Errorf("build: redacts set on a %s event", p.Type)
		}
		if v.RedactsInContent {
			var err error
			if content, err = contentWithRedacts(content, p.Redacts); err != nil {
				return nil, err
			}
			pdu["content"] = content
		} else {
			pdu["redacts"] = p.Redacts
		}
	}

	if v.EventIDFormat == EventIDFormatV1 {
		eventID := p.EventID
		if eventID == "" {
			eventID = "$" + randomOpaque() + ":" + origin
		}
		pdu["event_id"] = eventID
		prev, err := p.eventRefPairs(p.PrevEvents)
		if err != nil {
			return nil, err
		}
		auth, err := p.eventRefPairs(p.AuthEvents)
		if err != nil {
			return nil, err
		}
		pdu["prev_events"], pdu["auth_events"] = prev, auth
	} else {
		if p.EventID != "" {
			return nil, fmt.Errorf("build: room version %s derives event IDs; EventID must be empty", v.ID)
		}
		pdu["prev_events"], pdu["auth_events"] = nonNil(p.PrevEvents), nonNil(p.AuthEvents)
	}
	return pdu, nil
}

// eventRefPairs builds the [event ID, {"sha256": reference hash}] pairs of
// room versions 1 and 2.
func (p ProtoEvent) eventRefPairs(ids []string) ([][2]any, error) {
	pairs := make([][2]any, 0, len(ids))
	for _, id := range ids {
		hash, ok := p.ReferenceHashes[id]
		if !ok {
			return nil, fmt.Errorf("build: no reference hash for %s", id)
		}
		pairs = append(pairs, [2]any{id, map[string]string{"sha256": hash}})
	}
	return pairs, nil
}

// contentWithRedacts sets content.redacts, refusing a different value the
// caller already put there.
func contentWithRedacts(content json.RawMessage, redacts string) (json.RawMessage, error) {
	members, err := canonicalObject(content)
	if err != nil {
		return nil, fmt.Errorf("build: content: %w", err)
	}
	if existing := find(members, "redacts"); existing != nil {
		if s, ok := jsonString(existing); !ok || s != redacts {
			return nil, fmt.Errorf("build: content.redacts disagrees with Redacts %q", redacts)
		}
		return joinObject(members), nil
	}
	value, err := quoteJSON(redacts)
	if err != nil {
		return nil, err
	}
	return joinObject(withMember(members, "redacts", value)), nil
}

func nonNil(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// randomOpaque returns the random local part of a room version 1 or 2
// event ID; crypto/rand.Text carries 128 bits of randomness.
func randomOpaque() string { return rand.Text() }
