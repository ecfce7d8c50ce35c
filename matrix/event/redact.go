package event

import (
	"fmt"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// Top-level keys the redaction algorithm keeps. Everything else, including
// unsigned, is stripped. Room version 11 stopped protecting origin,
// membership and prev_state, which no algorithm reads any more.
var (
	redactKeepTopV1 = []string{
		"auth_events", "content", "depth", "event_id", "hashes", "membership",
		"origin", "origin_server_ts", "prev_events", "prev_state", "room_id",
		"sender", "signatures", "state_key", "type",
	}
	redactKeepTopV11 = []string{
		"auth_events", "content", "depth", "event_id", "hashes",
		"origin_server_ts", "prev_events", "room_id", "sender", "signatures",
		"state_key", "type",
	}
)

// keepAll marks an event type whose whole content survives redaction.
const keepAll = "*"

// redactContentKeys lists, per redaction algorithm and event type, the
// content keys that survive redaction. Content of unlisted types is emptied.
// The keys are those the authorization rules and the client-visible room
// configuration depend on, so a redacted event still authorises what it did.
var redactContentKeys = map[RedactionAlgorithm]map[string][]string{
	RedactionV1: {
		"m.room.member":             {"membership"},
		"m.room.create":             {"creator"},
		"m.room.join_rules":         {"join_rule"},
		"m.room.power_levels":       {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
		"m.room.aliases":            {"aliases"},
		"m.room.history_visibility": {"history_visibility"},
	},
	// v6 removed the special meaning of m.room.aliases.
	RedactionV6: {
		"m.room.member":             {"membership"},
		"m.room.create":             {"creator"},
		"m.room.join_rules":         {"join_rule"},
		"m.room.power_levels":       {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
		"m.room.history_visibility": {"history_visibility"},
	},
	// v8 keeps the restricted join rule's allow list.
	RedactionV8: {
		"m.room.member":             {"membership"},
		"m.room.create":             {"creator"},
		"m.room.join_rules":         {"join_rule", "allow"},
		"m.room.power_levels":       {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
		"m.room.history_visibility": {"history_visibility"},
	},
	// v9 keeps the authorising user of a restricted join, without which a
	// redacted join would no longer pass the auth rules.
	RedactionV9: {
		"m.room.member":             {"membership", "join_authorised_via_users_server"},
		"m.room.create":             {"creator"},
		"m.room.join_rules":         {"join_rule", "allow"},
		"m.room.power_levels":       {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
		"m.room.history_visibility": {"history_visibility"},
	},
	// v11: the create event keeps everything, power levels keep invite, the
	// redaction keeps redacts, and member events keep
	// third_party_invite.signed (handled in redactContent).
	RedactionV11: {
		"m.room.member":             {"membership", "join_authorised_via_users_server"},
		"m.room.create":             {keepAll},
		"m.room.join_rules":         {"join_rule", "allow"},
		"m.room.power_levels":       {"ban", "events", "events_default", "invite", "kick", "redact", "state_default", "users", "users_default"},
		"m.room.history_visibility": {"history_visibility"},
		"m.room.redaction":          {"redacts"},
	},
}

// Redact applies the redaction algorithm of room version v to an event and
// returns the redacted event as canonical JSON. It strips every top-level key
// the algorithm does not protect (unsigned included) and every content key
// not protected for the event's type. The input must be a JSON object with a
// string type and an object content; it is read leniently (no strict
// canonical JSON checks), since validation is the constructors' job and
// redaction must work on every stored event.
func Redact(eventJSON []byte, v RoomVersionInfo) ([]byte, error) {
	canon, err := canonicaljson.Canonicalize(eventJSON)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	members, err := splitObject(canon)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	redacted, err := redactMembers(members, v)
	if err != nil {
		return nil, err
	}
	return joinObject(redacted), nil
}

// redactMembers is Redact on the members of a canonical event object.
func redactMembers(members []member, v RoomVersionInfo) ([]member, error) {
	keepTop := redactKeepTopV1
	if v.Redaction == RedactionV11 {
		keepTop = redactKeepTopV11
	}
	contentKeys, ok := redactContentKeys[v.Redaction]
	if !ok {
		return nil, fmt.Errorf("redact: unknown redaction algorithm %d", v.Redaction)
	}
	evType, ok := jsonString(find(members, "type"))
	if !ok {
		return nil, badEvent("redact: type must be a string")
	}
	out := make([]member, 0, len(keepTop))
	sawContent := false
	for _, m := range members {
		if !isAnyOf(m, keepTop) {
			continue
		}
		if m.is("content") {
			content, err := redactContent(m.value, evType, contentKeys[evType], v)
			if err != nil {
				return nil, err
			}
			m.value = content
			sawContent = true
		}
		out = append(out, m)
	}
	if !sawContent {
		return nil, badEvent("redact: missing content")
	}
	return out, nil
}

// redactContent filters a canonical content object down to the keys kept.
func redactContent(content []byte, evType string, keep []string, v RoomVersionInfo) ([]byte, error) {
	if len(content) == 0 || content[0] != '{' {
		return nil, badEvent("redact: content must be an object")
	}
	if len(keep) == 1 && keep[0] == keepAll {
		return content, nil
	}
	members, err := splitObject(content)
	if err != nil {
		return nil, fmt.Errorf("redact: content: %w", err)
	}
	kept := make([]member, 0, len(keep)+1)
	for _, m := range members {
		switch {
		case isAnyOf(m, keep):
			kept = append(kept, m)
		case v.Redaction == RedactionV11 && evType == "m.room.member" && m.is("third_party_invite"):
			// The key survives as an object holding only its signed part,
			// which the auth rules verify against the third-party invite.
			// A non-object has no signed part and is dropped whole.
			if len(m.value) == 0 || m.value[0] != '{' {
				continue
			}
			inner, err := splitObject(m.value)
			if err != nil {
				return nil, fmt.Errorf("redact: third_party_invite: %w", err)
			}
			var signed []member
			if s := find(inner, "signed"); s != nil {
				signed = []member{{key: []byte(`"signed"`), value: s}}
			}
			m.value = joinObject(signed)
			kept = append(kept, m)
		}
	}
	return joinObject(kept), nil
}

func isAnyOf(m member, names []string) bool {
	for _, n := range names {
		if m.is(n) {
			return true
		}
	}
	return false
}
