package authrules

import (
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/matrix/event"
)

// Event types the auth rules read.
const (
	typeCreate           = "m.room.create"
	typeMember           = "m.room.member"
	typePowerLevels      = "m.room.power_levels"
	typeJoinRules        = "m.room.join_rules"
	typeThirdPartyInvite = "m.room.third_party_invite"
	typeAliases          = "m.room.aliases"
	typeRedaction        = "m.room.redaction"
)

// Memberships and join rules.
const (
	membershipJoin   = "join"
	membershipInvite = "invite"
	membershipLeave  = "leave"
	membershipBan    = "ban"
	membershipKnock  = "knock"

	joinRulePublic          = "public"
	joinRuleInvite          = "invite"
	joinRuleKnock           = "knock"
	joinRuleRestricted      = "restricted"
	joinRuleKnockRestricted = "knock_restricted"
)

// StateKeyTuple names one entry of a room's state.
type StateKeyTuple struct {
	EventType string
	StateKey  string
}

// memberContent is what the auth rules and the auth events selection read
// from m.room.member content.
type memberContent struct {
	membership    string
	hasMembership bool // a string membership is present
	// thirdPartyInvite is content.third_party_invite, nil if absent.
	thirdPartyInvite json.RawMessage
	// authorisedVia is content.join_authorised_via_users_server.
	authorisedVia    string
	hasAuthorisedVia bool // the key is present, whatever its value
	authorisedViaStr bool // and its value is a string
}

func parseMemberContent(content []byte) memberContent {
	var mc memberContent
	if !isObject(content) {
		return mc
	}
	mc.membership, mc.hasMembership = memberString(content, "membership")
	if raw, ok := objectMember(content, "third_party_invite"); ok {
		mc.thirdPartyInvite = raw
	}
	if raw, ok := objectMember(content, "join_authorised_via_users_server"); ok {
		mc.hasAuthorisedVia = true
		mc.authorisedVia, mc.authorisedViaStr = jsonString(raw)
	}
	return mc
}

// thirdPartyToken returns content.third_party_invite.signed.token if it is a string.
func thirdPartyToken(thirdPartyInvite []byte) (string, bool) {
	signed, ok := objectMember(thirdPartyInvite, "signed")
	if !ok {
		return "", false
	}
	return memberString(signed, "token")
}

// AuthEventsNeeded is the auth events selection (server-server API, "Auth
// events selection"): the state entries whose current events go into the
// auth_events of an event with this type, state key (nil for a non-state
// event), sender and content, in a room of version v. It is empty for
// m.room.create. From room version 12 on, m.room.create is never selected:
// the room ID names it. Entries are unique; the room engine includes those
// present in the current state.
func AuthEventsNeeded(v event.RoomVersionInfo, eventType string, stateKey *string, sender string, content json.RawMessage) []StateKeyTuple {
	var mc memberContent
	if eventType == typeMember {
		mc = parseMemberContent(content)
	}
	return authEventsNeeded(v, eventType, stateKey, sender, &mc)
}

// AuthEventsNeededFor is AuthEventsNeeded for a built event.
func AuthEventsNeededFor(ev *event.Event) []StateKeyTuple {
	return AuthEventsNeeded(ev.Version(), ev.Type(), ev.StateKey(), ev.Sender(), ev.Content())
}

func authEventsNeeded(v event.RoomVersionInfo, eventType string, stateKey *string, sender string, mc *memberContent) []StateKeyTuple {
	if eventType == typeCreate {
		return nil
	}
	out := make([]StateKeyTuple, 0, 7)
	add := func(t, sk string) {
		k := StateKeyTuple{t, sk}
		for _, have := range out {
			if have == k {
				return
			}
		}
		out = append(out, k)
	}
	if !v.CreateEventIsRoomID {
		add(typeCreate, "")
	}
	add(typePowerLevels, "")
	add(typeMember, sender)
	if eventType != typeMember {
		return out
	}
	if stateKey != nil {
		add(typeMember, *stateKey)
	}
	switch mc.membership {
	case membershipJoin, membershipInvite, membershipKnock:
		add(typeJoinRules, "")
	}
	if mc.membership == membershipInvite && mc.thirdPartyInvite != nil {
		if token, ok := thirdPartyToken(mc.thirdPartyInvite); ok {
			add(typeThirdPartyInvite, token)
		}
	}
	if mc.membership == membershipJoin && v.RestrictedJoins && mc.authorisedViaStr {
		add(typeMember, mc.authorisedVia)
	}
	return out
}

// CheckAuthEvents applies the rules on an event's own auth_events (rule 2 of
// room versions 1-11, rule 3 of v12) to authEvents, the events its
// auth_events name: no two for one (type, state_key), none outside the auth
// events selection, none from another room, and the m.room.create event
// present (v1-11) or absent (v12). Whether any of them was itself rejected
// (rule 2.3) is the caller's to check: this package keeps no such record.
// A refusal wraps ErrNotAllowed; other errors mean authEvents does not
// match the event's auth_events.
//
// To authorise an event against its auth events, call this, then Allowed
// with NewStateMap(authEvents...), adding the room's create event in room
// version 12.
func CheckAuthEvents(ev *event.Event, authEvents []*event.Event) error {
	if ev.Type() == typeCreate {
		// Rule 1 decides a create event before rule 2 is reached.
		return nil
	}
	v := ev.Version()
	ids := ev.AuthEventIDs()
	listed := make(map[string]bool, len(ids))
	for _, id := range ids {
		if listed[id] {
			return notAllowed("auth_events lists %s twice", id)
		}
		listed[id] = true
	}
	if len(authEvents) != len(ids) {
		return fmt.Errorf("authrules: %d auth events given for the %d auth_events of %s", len(authEvents), len(ids), ev.EventID())
	}
	needed := AuthEventsNeededFor(ev)
	seen := make(map[StateKeyTuple]bool, len(authEvents))
	hasCreate := false
	for _, ae := range authEvents {
		if ae == nil || !listed[ae.EventID()] {
			return fmt.Errorf("authrules: auth event given for %s is not in its auth_events", ev.EventID())
		}
		if ae.StateKey() == nil {
			return notAllowed("auth event %s is not a state event", ae.EventID())
		}
		k := StateKeyTuple{ae.Type(), *ae.StateKey()}
		if seen[k] {
			return notAllowed("auth_events holds two events for (%s, %q)", k.EventType, k.StateKey)
		}
		seen[k] = true
		selected := false
		for _, n := range needed {
			if n == k {
				selected = true
				break
			}
		}
		if !selected {
			return notAllowed("auth event %s (%s, %q) is not in the auth events selection", ae.EventID(), k.EventType, k.StateKey)
		}
		if ae.RoomID() != ev.RoomID() {
			return notAllowed("auth event %s belongs to room %s, not %s", ae.EventID(), ae.RoomID(), ev.RoomID())
		}
		if k.EventType == typeCreate {
			hasCreate = true
		}
	}
	if !v.CreateEventIsRoomID && !hasCreate {
		return notAllowed("auth_events has no m.room.create event")
	}
	return nil
}

// StateMap is an AuthEvents backed by a map, e.g. over an event's auth
// events or a room's state.
type StateMap map[StateKeyTuple]*event.Event

// NewStateMap indexes state events by (type, state_key); a later event
// replaces an earlier one with the same key, and non-state events are skipped.
func NewStateMap(events ...*event.Event) StateMap {
	m := make(StateMap, len(events))
	for _, e := range events {
		if e != nil && e.StateKey() != nil {
			m[StateKeyTuple{e.Type(), *e.StateKey()}] = e
		}
	}
	return m
}

// Get implements AuthEvents.
func (m StateMap) Get(eventType, stateKey string) *event.Event {
	return m[StateKeyTuple{eventType, stateKey}]
}
