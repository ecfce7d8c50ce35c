package authrules

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

// verdict is the expected outcome of a case in a room version.
type verdict func(event.RoomVersionInfo) bool

func allow(event.RoomVersionInfo) bool  { return true }
func reject(event.RoomVersionInfo) bool { return false }

// Version predicates, named after the rule change they stand for.
func aliasesSpecialCase(v event.RoomVersionInfo) bool { return v.SpecialAliasesAuth }
func knocking(v event.RoomVersionInfo) bool           { return v.Knocking }
func restrictedJoins(v event.RoomVersionInfo) bool    { return v.RestrictedJoins }
func knockRestricted(v event.RoomVersionInfo) bool    { return v.KnockRestricted }
func stringyLevels(v event.RoomVersionInfo) bool      { return !v.IntegerPowerLevels }
func floatyLevels(v event.RoomVersionInfo) bool       { return !v.StrictCanonicalJSON }
func creatorFromSender(v event.RoomVersionInfo) bool  { return v.CreatorFromSender }
func privilegedCreators(v event.RoomVersionInfo) bool { return v.PrivilegedCreators }
func creatorInContent(v event.RoomVersionInfo) bool   { return !v.CreatorFromSender }
func v1RedactionRule(v event.RoomVersionInfo) bool    { return v.EventIDFormat == event.EventIDFormatV1 }
func notificationLevelsChecked(v event.RoomVersionInfo) bool {
	return v.NotificationsPowerLevels
}
func not(f verdict) verdict { return func(v event.RoomVersionInfo) bool { return !f(v) } }

// authCase is one event checked against one hand-built room in every room
// version the case applies to.
type authCase struct {
	name     string
	versions func(event.RoomVersionInfo) bool // nil: every version
	room     func(t testing.TB, v event.RoomVersion) *room
	event    func(r *room) *event.Event
	want     verdict
}

func (c authCase) appliesTo(v event.RoomVersionInfo) bool {
	return c.versions == nil || c.versions(v)
}

// Event makers.

func message(sender string) func(*room) *event.Event {
	return func(r *room) *event.Event {
		return r.build(spec{Type: "m.room.message", Sender: sender, Content: map[string]any{"msgtype": "m.text", "body": "hi"}})
	}
}

func stateEvent(typ, key, sender string, content map[string]any) func(*room) *event.Event {
	return func(r *room) *event.Event {
		return r.build(spec{Type: typ, StateKey: sk(key), Sender: sender, Content: content})
	}
}

func memberEvent(sender, target, membership string, extra map[string]any) func(*room) *event.Event {
	return func(r *room) *event.Event { return r.build(r.memberSpec(sender, target, membership, extra)) }
}

// powerLevelsEvent builds power levels; like room.powerLevels it drops
// alice from users where creators cannot be listed, so that cases about
// other rules hold in every version.
func powerLevelsEvent(sender string, content map[string]any) func(*room) *event.Event {
	return func(r *room) *event.Event {
		if u, ok := content["users"].(map[string]any); ok && r.info.PrivilegedCreators {
			delete(u, alice)
		}
		return stateEvent(typePowerLevels, "", sender, content)(r)
	}
}

// powerLevelsEventAsIs builds power levels exactly as given.
func powerLevelsEventAsIs(sender string, content map[string]any) func(*room) *event.Event {
	return stateEvent(typePowerLevels, "", sender, content)
}

// Room makers.

func standard(opts ...func(*roomOpts)) func(testing.TB, event.RoomVersion) *room {
	return func(t testing.TB, v event.RoomVersion) *room { return newRoom(t, v, opts...) }
}

// then runs more setup on a room.
func then(base func(testing.TB, event.RoomVersion) *room, f func(r *room)) func(testing.TB, event.RoomVersion) *room {
	return func(t testing.TB, v event.RoomVersion) *room {
		r := base(t, v)
		f(r)
		return r
	}
}

func createdOnly(content func(r *room) map[string]any) func(testing.TB, event.RoomVersion) *room {
	return func(t testing.TB, v event.RoomVersion) *room {
		r := newEmptyRoom(t, v)
		c := r.createContent()
		if content != nil {
			c = content(r)
		}
		r.addCreate(alice, c)
		return r
	}
}

// pl returns standard power levels with changes applied.
func pl(change func(c map[string]any)) map[string]any {
	c := standardPowerLevels()
	change(c)
	return c
}

func users(c map[string]any) map[string]any { return c["users"].(map[string]any) }

// Third-party invites: an identity server key and a signed block for dave.
var (
	idServerKey  = ed25519.NewKeyFromSeed(make([]byte, 32))
	otherIDKey   = ed25519.NewKeyFromSeed([]byte("another identity server key 0123"))
	idServerPub  = base64.RawStdEncoding.EncodeToString(idServerKey.Public().(ed25519.PublicKey))
	otherIDPub   = base64.RawURLEncoding.EncodeToString(otherIDKey.Public().(ed25519.PublicKey))
	thirdPartyID = "tok"
)

// signedBlock signs {mxid, token} with key as the identity server would.
func signedBlock(mxid, token string, key ed25519.PrivateKey) map[string]any {
	signed := map[string]any{"mxid": mxid, "token": token}
	msg, err := canonicaljson.Marshal(signed)
	if err != nil {
		panic(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, msg))
	signed["signatures"] = map[string]any{"id.test": map[string]any{"ed25519:0": sig}}
	return signed
}

func thirdPartyInvite(signed map[string]any) map[string]any {
	return map[string]any{"third_party_invite": map[string]any{"display_name": "d...@example.org", "signed": signed}}
}

// withThirdPartyInvite adds bob's m.room.third_party_invite with content.
func withThirdPartyInvite(content map[string]any) func(r *room) {
	return func(r *room) {
		r.add(spec{Type: typeThirdPartyInvite, StateKey: sk(thirdPartyID), Sender: bob, Content: content})
	}
}

func tpiContent() map[string]any {
	return map[string]any{"display_name": "d...", "key_validity_url": "https://id.test/v", "public_key": idServerPub}
}

// tpiContentWithList also lists the key in public_keys, where
// gomatrixserverlib looks for it.
func tpiContentWithList() map[string]any {
	c := tpiContent()
	c["public_keys"] = []any{map[string]any{"public_key": idServerPub}}
	return c
}

func authCases() []authCase {
	std := standard()
	public := standard(withJoinRule(joinRulePublic))
	noPL := standard(withPowerLevels(nil))
	knockRoom := standard(withJoinRule(joinRuleKnock))
	restricted := standard(withJoinRule(joinRuleRestricted))
	knockRestrictedRoom := standard(withJoinRule(joinRuleKnockRestricted))
	tpiRoom := then(std, withThirdPartyInvite(tpiContent()))
	withDave := func(base func(testing.TB, event.RoomVersion) *room, membership string) func(testing.TB, event.RoomVersion) *room {
		return then(base, func(r *room) {
			sender := bob
			if membership == membershipKnock || membership == membershipLeave {
				sender = dave
			}
			r.member(sender, dave, membership, nil)
		})
	}
	otherRoomID := func(r *room) string {
		if r.info.CreateEventIsRoomID {
			return "!" + hashID("elsewhere")[1:]
		}
		return "!elsewhere:a.test"
	}

	return []authCase{
		// Rule 1: m.room.create.
		{name: "create/valid", room: createdOnly(nil), event: func(r *room) *event.Event { return r.create }, want: allow},
		{name: "create/with prev_events", room: createdOnly(nil), event: func(r *room) *event.Event {
			s := spec{Type: typeCreate, StateKey: sk(""), Sender: alice, Content: r.createContent(), Prev: []string{hashID("before")}}
			if r.info.CreateEventIsRoomID {
				s.NoRoomID = true
			}
			return r.build(s)
		}, want: reject},
		{name: "create/room_id on another server than the sender", versions: not(privilegedCreators), room: createdOnly(nil), event: func(r *room) *event.Event {
			return r.build(spec{Type: typeCreate, StateKey: sk(""), Sender: alice, Content: r.createContent(), NoPrev: true, RoomID: "!x:b.test"})
		}, want: reject},
		{name: "create/with a room_id", versions: privilegedCreators, room: createdOnly(nil), event: func(r *room) *event.Event {
			return r.build(spec{Type: typeCreate, StateKey: sk(""), Sender: alice, Content: r.createContent(), NoPrev: true, RoomID: "!x:a.test"})
		}, want: reject},
		// gomatrixserverlib skips this in v11. Rule 1.3, in every version: "If
		// content.room_version is present and is not a recognised version, reject."
		{name: "create/unknown room_version", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["room_version"] = "99"
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: reject},
		{name: "create/room_version not a string", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["room_version"] = 1
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: reject},
		{name: "create/no room_version means v1", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			delete(c, "room_version")
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: allow},
		{name: "create/without creator", room: createdOnly(func(r *room) map[string]any {
			return map[string]any{"room_version": string(r.ver)}
		}), event: func(r *room) *event.Event { return r.create }, want: creatorFromSender},
		{name: "create/valid additional_creators", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["additional_creators"] = []any{bob, eve}
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: allow},
		{name: "create/additional_creators holds a non user ID", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["additional_creators"] = []any{bob, "bob"}
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: not(privilegedCreators)},
		{name: "create/additional_creators holds a number", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["additional_creators"] = []any{5}
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: not(privilegedCreators)},
		{name: "create/additional_creators not an array", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["additional_creators"] = bob
			return c
		}), event: func(r *room) *event.Event { return r.create }, want: not(privilegedCreators)},

		// Rule 2 (v1-11) / 2-3 (v12): the auth events.
		{name: "auth events/no m.room.create", room: then(std, func(r *room) {
			delete(r.state, StateKeyTuple{typeCreate, ""})
		}), event: message(carol), want: reject},
		{name: "auth events/power levels from another room", room: then(std, func(r *room) {
			r.add(spec{Type: typePowerLevels, StateKey: sk(""), Sender: alice, Content: standardPowerLevels(), RoomID: otherRoomID(r)})
		}), event: message(carol), want: reject},
		{name: "auth events/sender's membership from another room", room: then(std, func(r *room) {
			r.add(spec{Type: typeMember, StateKey: sk(carol), Sender: carol, Content: map[string]any{"membership": "join"}, RoomID: otherRoomID(r)})
		}), event: message(carol), want: reject},
		// gomatrixserverlib refuses when any event it is handed is foreign. Rule
		// 2.5 is about the event's auth_events: "If any event in auth_events has a
		// room_id which does not match that of the event being authorised,
		// reject." CheckAuthEvents refuses unselected auth events anyway.
		{name: "auth events/unselected foreign state is not read", room: then(std, func(r *room) {
			r.add(spec{Type: "m.room.name", StateKey: sk(""), Sender: alice, Content: map[string]any{"name": "x"}, RoomID: otherRoomID(r)})
		}), event: message(carol), want: allow},
		{name: "auth events/foreign event read by a rule that is not reached", room: then(standard(withJoinRule(joinRulePublic)), func(r *room) {
			r.add(spec{Type: typePowerLevels, StateKey: sk(""), Sender: alice, Content: standardPowerLevels(), RoomID: otherRoomID(r)})
		}), event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "auth events/room ID is not the create event's", versions: privilegedCreators, room: std, event: func(r *room) *event.Event {
			return r.build(spec{Type: "m.room.message", Sender: carol, RoomID: otherRoomID(r)})
		}, want: reject},

		// Rule 3 (v1-11) / 4 (v12): m.federate.
		{name: "federate/false refuses other servers", room: standard(withJoinRule(joinRulePublic), withCreate(map[string]any{"m.federate": false})),
			event: memberEvent(eve, eve, membershipJoin, nil), want: reject},
		{name: "federate/false admits the creator's server", room: standard(withJoinRule(joinRulePublic), withCreate(map[string]any{"m.federate": false})),
			event: memberEvent(dave, dave, membershipJoin, nil), want: allow},
		{name: "federate/true admits other servers", room: standard(withJoinRule(joinRulePublic), withCreate(map[string]any{"m.federate": true})),
			event: memberEvent(eve, eve, membershipJoin, nil), want: allow},
		{name: "federate/false also binds joined remote members", room: then(standard(withCreate(map[string]any{"m.federate": false})), func(r *room) {
			r.member(eve, eve, membershipJoin, nil)
		}), event: message(eve), want: reject},

		// Rule 4 (v1-5): m.room.aliases.
		// gomatrixserverlib keeps the aliases rule in every version. v6: "Rule 4,
		// which related specifically to events of type m.room.aliases, is removed.
		// m.room.aliases events must still pass authorisation checks relating to
		// state events."
		{name: "aliases/server outside the room sets its own aliases", room: std,
			event: stateEvent(typeAliases, "b.test", eve, map[string]any{"aliases": []any{"#x:b.test"}}), want: aliasesSpecialCase},
		{name: "aliases/state_key of another server", room: std,
			event: stateEvent(typeAliases, "a.test", eve, map[string]any{"aliases": []any{}}), want: reject},
		{name: "aliases/member below state_default", room: std,
			event: stateEvent(typeAliases, "a.test", carol, map[string]any{"aliases": []any{}}), want: aliasesSpecialCase},
		{name: "aliases/moderator sets another server's aliases", room: std,
			event: stateEvent(typeAliases, "b.test", bob, map[string]any{"aliases": []any{}}), want: not(aliasesSpecialCase)},
		{name: "aliases/without a state_key", room: std, event: func(r *room) *event.Event {
			return r.build(spec{Type: typeAliases, Sender: eve, Content: map[string]any{}})
		}, want: reject},

		// Rule 5 (v1-5) / 4 (v6-11) / 5 (v12): m.room.member.
		{name: "member/no membership", room: std, event: stateEvent(typeMember, carol, carol, map[string]any{}), want: reject},
		{name: "member/membership not a string", room: std, event: stateEvent(typeMember, carol, carol, map[string]any{"membership": 1}), want: reject},
		{name: "member/unknown membership", room: std, event: memberEvent(carol, carol, "dance", nil), want: reject},
		{name: "member/without a state_key", room: std, event: func(r *room) *event.Event {
			return r.build(spec{Type: typeMember, Sender: carol, Content: map[string]any{"membership": "join"}})
		}, want: reject},

		// Join.
		{name: "join/creator right after the create event", room: createdOnly(nil), event: memberEvent(alice, alice, membershipJoin, nil), want: allow},
		// gomatrixserverlib also wants sender = state_key. Rule 4.3.1 does not: "If
		// the only previous event is an m.room.create and the state_key is the
		// creator, allow."
		{name: "join/creator's join sent by someone else right after the create event", room: createdOnly(nil),
			event: memberEvent(bob, alice, membershipJoin, nil), want: allow},
		{name: "join/non-creator right after the create event", room: createdOnly(nil), event: memberEvent(bob, bob, membershipJoin, nil), want: reject},
		{name: "join/sender of the create event when content.creator names another", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["creator"] = frank
			return c
		}), event: memberEvent(alice, alice, membershipJoin, nil), want: creatorFromSender},
		// gomatrixserverlib takes the create event's sender as creator in every
		// version. Before v11, rule 1.4 "If content has no creator property,
		// reject" makes content.creator the creator; v11 "changed-in" rule 4.3.1
		// to "the state_key is the sender of the m.room.create".
		{name: "join/content.creator when the create event's sender differs", room: createdOnly(func(r *room) map[string]any {
			c := r.createContent()
			c["creator"] = frank
			return c
		}), event: memberEvent(frank, frank, membershipJoin, nil), want: creatorInContent},
		{name: "join/public room", room: public, event: memberEvent(dave, dave, membershipJoin, nil), want: allow},
		{name: "join/invite-only room without an invite", room: std, event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "join/invite-only room with an invite", room: withDave(std, membershipInvite), event: memberEvent(dave, dave, membershipJoin, nil), want: allow},
		{name: "join/member updates their profile", room: std, event: memberEvent(carol, carol, membershipJoin, map[string]any{"displayname": "C"}), want: allow},
		{name: "join/on behalf of another user", room: public, event: memberEvent(bob, dave, membershipJoin, nil), want: reject},
		{name: "join/banned user in a public room", room: withDave(public, membershipBan), event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "join/after leaving an invite-only room", room: withDave(then(std, func(r *room) { r.member(bob, dave, membershipInvite, nil) }), membershipLeave),
			event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "join/no join rules event and an invite", room: withDave(standard(withJoinRule("")), membershipInvite),
			event: memberEvent(dave, dave, membershipJoin, nil), want: allow},
		{name: "join/no join rules event and no invite", room: standard(withJoinRule("")), event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		// gomatrixserverlib lets an invited user join under any join rule. Rule
		// 4.3.4 admits invited users only under the rules it names: "If the
		// join_rule is invite or knock then allow if membership state is invite or
		// join" ... "Otherwise, reject." The next three cases are the same
		// difference for join rules older versions do not know.
		{name: "join/private join rule with an invite", room: withDave(standard(withJoinRule("private")), membershipInvite),
			event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "join/knock room with an invite", room: withDave(knockRoom, membershipInvite), event: memberEvent(dave, dave, membershipJoin, nil), want: knocking},
		{name: "join/knock room without an invite", room: knockRoom, event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "join/knock room while knocking", room: withDave(knockRoom, membershipKnock), event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		// gomatrixserverlib admits only users who left to a public room.
		// Rule 4.3.6: "If the join_rule is public, allow."
		{name: "join/knocking user joins a public room", room: withDave(public, membershipKnock), event: memberEvent(dave, dave, membershipJoin, nil), want: allow},

		// Restricted joins (v8+) and knock_restricted (v10+).
		{name: "restricted/join authorised by a member who can invite", room: restricted,
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": bob}), want: restrictedJoins},
		{name: "restricted/join without join_authorised_via_users_server", room: restricted, event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "restricted/authorising user is not joined", room: restricted,
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": frank}), want: reject},
		{name: "restricted/authorising user left", room: then(restricted, func(r *room) { r.member(bob, bob, membershipLeave, nil) }),
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": bob}), want: reject},
		{name: "restricted/authorising user below the invite level", room: standard(withJoinRule(joinRuleRestricted), withPowerLevels(pl(func(c map[string]any) { c["invite"] = 50 }))),
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": carol}), want: reject},
		{name: "restricted/authorising user at the invite level", room: standard(withJoinRule(joinRuleRestricted), withPowerLevels(pl(func(c map[string]any) { c["invite"] = 50 }))),
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": bob}), want: restrictedJoins},
		{name: "restricted/creator authorises above level 100", room: standard(withJoinRule(joinRuleRestricted), withPowerLevels(pl(func(c map[string]any) { c["invite"] = 101 }))),
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": alice}), want: privilegedCreators},
		{name: "restricted/invited user joins without authorisation", room: withDave(restricted, membershipInvite),
			event: memberEvent(dave, dave, membershipJoin, nil), want: restrictedJoins},
		{name: "restricted/banned user with authorisation", room: withDave(restricted, membershipBan),
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": bob}), want: reject},
		// gomatrixserverlib reads the key only for restricted joins. Rule 4.2
		// (v8+), for every membership: "If content has a
		// join_authorised_via_users_server key: If the event is not validly signed
		// by the homeserver of the user ID denoted by the key, reject." A value
		// that is no user ID denotes no homeserver to sign.
		{name: "restricted/join_authorised_via_users_server names no user", room: public,
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": "bob"}), want: not(restrictedJoins)},
		{name: "restricted/join_authorised_via_users_server not a string", room: public,
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": 5}), want: not(restrictedJoins)},
		// gomatrixserverlib treats knock_restricted as restricted from v8 and
		// allows knocks on it from v7; the join rule exists from v10 ("changed-in
		// v10: If the join_rule is restricted or knock_restricted").
		{name: "knock_restricted/join authorised by a member who can invite", room: knockRestrictedRoom,
			event: memberEvent(dave, dave, membershipJoin, map[string]any{"join_authorised_via_users_server": bob}), want: knockRestricted},
		{name: "knock_restricted/join without authorisation", room: knockRestrictedRoom, event: memberEvent(dave, dave, membershipJoin, nil), want: reject},
		{name: "knock_restricted/invited user joins", room: withDave(knockRestrictedRoom, membershipInvite), event: memberEvent(dave, dave, membershipJoin, nil), want: knockRestricted},
		{name: "knock_restricted/knock", room: knockRestrictedRoom, event: memberEvent(dave, dave, membershipKnock, nil), want: knockRestricted},

		// Knock (v7+).
		{name: "knock/outsider knocks", room: knockRoom, event: memberEvent(dave, dave, membershipKnock, nil), want: knocking},
		{name: "knock/user who left knocks", room: withDave(knockRoom, membershipLeave), event: memberEvent(dave, dave, membershipKnock, nil), want: knocking},
		{name: "knock/knocking again", room: withDave(knockRoom, membershipKnock), event: memberEvent(dave, dave, membershipKnock, nil), want: knocking},
		{name: "knock/on behalf of another user", room: knockRoom, event: memberEvent(bob, dave, membershipKnock, nil), want: reject},
		{name: "knock/banned user", room: withDave(knockRoom, membershipBan), event: memberEvent(dave, dave, membershipKnock, nil), want: reject},
		{name: "knock/invited user", room: withDave(knockRoom, membershipInvite), event: memberEvent(dave, dave, membershipKnock, nil), want: reject},
		{name: "knock/joined member", room: knockRoom, event: memberEvent(carol, carol, membershipKnock, nil), want: reject},
		{name: "knock/invite-only room", room: std, event: memberEvent(dave, dave, membershipKnock, nil), want: reject},
		{name: "knock/public room", room: public, event: memberEvent(dave, dave, membershipKnock, nil), want: reject},
		// gomatrixserverlib lets a knock be retracted in every version. Before v7
		// rule 5.4.1 reads "allow if and only if that user's current membership
		// state is invite or join".
		{name: "knock/retracted", room: withDave(knockRoom, membershipKnock), event: memberEvent(dave, dave, membershipLeave, nil), want: knocking},
		{name: "knock/accepted with an invite", room: withDave(knockRoom, membershipKnock), event: memberEvent(bob, dave, membershipInvite, nil), want: allow},
		{name: "knock/denied by a kick", room: withDave(knockRoom, membershipKnock), event: memberEvent(bob, dave, membershipLeave, nil), want: allow},

		// Invite.
		{name: "invite/by a member", room: std, event: memberEvent(bob, dave, membershipInvite, nil), want: allow},
		{name: "invite/by a member at level 0", room: std, event: memberEvent(carol, dave, membershipInvite, nil), want: allow},
		{name: "invite/by an outsider", room: std, event: memberEvent(frank, dave, membershipInvite, nil), want: reject},
		{name: "invite/by an invited user", room: withDave(std, membershipInvite), event: memberEvent(dave, frank, membershipInvite, nil), want: reject},
		{name: "invite/below the invite level", room: standard(withPowerLevels(pl(func(c map[string]any) { c["invite"] = 50 }))),
			event: memberEvent(carol, dave, membershipInvite, nil), want: reject},
		{name: "invite/at the invite level", room: standard(withPowerLevels(pl(func(c map[string]any) { c["invite"] = 50 }))),
			event: memberEvent(bob, dave, membershipInvite, nil), want: allow},
		{name: "invite/joined user", room: std, event: memberEvent(bob, carol, membershipInvite, nil), want: reject},
		{name: "invite/banned user", room: withDave(std, membershipBan), event: memberEvent(bob, dave, membershipInvite, nil), want: reject},
		{name: "invite/invited user again", room: withDave(std, membershipInvite), event: memberEvent(bob, dave, membershipInvite, nil), want: allow},

		// Invite redeeming a third-party invite.
		// gomatrixserverlib reads only public_keys. Rule 4.4.1.7: "The public keys
		// are in content of m.room.third_party_invite as: A single public key in
		// the public_key property. A list of public keys in the public_keys
		// property."
		{name: "third-party invite/valid signature", room: tpiRoom,
			event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: allow},
		{name: "third-party invite/key listed in public_keys", room: then(std, withThirdPartyInvite(map[string]any{
			"display_name": "d", "key_validity_url": "https://id.test/v", "public_key": otherIDPub,
			"public_keys": []any{map[string]any{"public_key": idServerPub}},
		})), event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: allow},
		{name: "third-party invite/signed by another key", room: tpiRoom,
			event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, otherIDKey))), want: reject},
		{name: "third-party invite/signed block altered", room: tpiRoom, event: func(r *room) *event.Event {
			s := signedBlock(dave, thirdPartyID, idServerKey)
			s["extra"] = "added after signing"
			return memberEvent(bob, dave, membershipInvite, thirdPartyInvite(s))(r)
		}, want: reject},
		{name: "third-party invite/mxid is not the state_key", room: tpiRoom,
			event: memberEvent(bob, frank, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: reject},
		{name: "third-party invite/no signed", room: tpiRoom,
			event: memberEvent(bob, dave, membershipInvite, map[string]any{"third_party_invite": map[string]any{"display_name": "d"}}), want: reject},
		{name: "third-party invite/no token", room: tpiRoom, event: func(r *room) *event.Event {
			s := signedBlock(dave, thirdPartyID, idServerKey)
			delete(s, "token")
			return memberEvent(bob, dave, membershipInvite, thirdPartyInvite(s))(r)
		}, want: reject},
		{name: "third-party invite/unknown token", room: tpiRoom,
			event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, "other", idServerKey))), want: reject},
		// gomatrixserverlib checks neither of the next two. Rules 4.4.1.6 "If
		// sender does not match sender of the m.room.third_party_invite, reject."
		// and 4.4.1.1 "If target user is banned, reject."
		{name: "third-party invite/sent by someone else than the inviter", room: tpiRoom,
			event: memberEvent(carol, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: reject},
		{name: "third-party invite/banned target", room: withDave(tpiRoom, membershipBan),
			event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: reject},
		{name: "third-party invite/sent by someone else, key in public_keys", room: then(std, withThirdPartyInvite(tpiContentWithList())),
			event: memberEvent(carol, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: reject},
		{name: "third-party invite/banned target, key in public_keys", room: withDave(then(std, withThirdPartyInvite(tpiContentWithList())), membershipBan),
			event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: reject},
		{name: "third-party invite/inviter has since left", room: then(tpiRoom, func(r *room) { r.member(bob, bob, membershipLeave, nil) }),
			event: memberEvent(bob, dave, membershipInvite, thirdPartyInvite(signedBlock(dave, thirdPartyID, idServerKey))), want: allow},
		{name: "third-party invite/null third_party_invite", room: tpiRoom,
			event: memberEvent(bob, dave, membershipInvite, map[string]any{"third_party_invite": nil}), want: reject},

		// Rule 7 (v1-5) / 6 (v6-11) / 7 (v12): m.room.third_party_invite.
		{name: "third_party_invite event/member at the invite level", room: std,
			event: stateEvent(typeThirdPartyInvite, "t2", carol, tpiContent()), want: allow},
		{name: "third_party_invite event/below the invite level", room: standard(withPowerLevels(pl(func(c map[string]any) { c["invite"] = 50 }))),
			event: stateEvent(typeThirdPartyInvite, "t2", carol, tpiContent()), want: reject},
		{name: "third_party_invite event/events level does not apply", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["events"] = map[string]any{typeThirdPartyInvite: 100}
		}))), event: stateEvent(typeThirdPartyInvite, "t2", carol, tpiContent()), want: allow},
		{name: "third_party_invite event/outsider", room: std, event: stateEvent(typeThirdPartyInvite, "t2", frank, tpiContent()), want: reject},

		// Leave, kick, unban.
		{name: "leave/member leaves", room: std, event: memberEvent(carol, carol, membershipLeave, nil), want: allow},
		{name: "leave/invited user rejects the invite", room: withDave(std, membershipInvite), event: memberEvent(dave, dave, membershipLeave, nil), want: allow},
		// gomatrixserverlib allows leave after leave (its "NOTSPEC"). Rule 4.5.1:
		// "If the sender matches state_key, allow if and only if that user's
		// current membership state is invite, join, or knock."
		{name: "leave/outsider leaves", room: std, event: memberEvent(dave, dave, membershipLeave, nil), want: reject},
		{name: "leave/user who left leaves again", room: withDave(std, membershipLeave), event: memberEvent(dave, dave, membershipLeave, nil), want: reject},
		{name: "leave/banned user leaves", room: withDave(std, membershipBan), event: memberEvent(dave, dave, membershipLeave, nil), want: reject},
		{name: "kick/moderator kicks a member", room: std, event: memberEvent(bob, carol, membershipLeave, nil), want: allow},
		{name: "kick/member kicks a moderator", room: std, event: memberEvent(carol, bob, membershipLeave, nil), want: reject},
		{name: "kick/moderator kicks the admin", room: std, event: memberEvent(bob, alice, membershipLeave, nil), want: reject},
		{name: "kick/moderator kicks a peer", room: standard(withPowerLevels(pl(func(c map[string]any) { users(c)[carol] = 50 }))),
			event: memberEvent(bob, carol, membershipLeave, nil), want: reject},
		{name: "kick/below the kick level", room: standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 60 }))),
			event: memberEvent(bob, carol, membershipLeave, nil), want: reject},
		{name: "kick/kicker not joined", room: then(std, func(r *room) { r.member(bob, bob, membershipLeave, nil) }),
			event: memberEvent(bob, carol, membershipLeave, nil), want: reject},
		{name: "kick/revoke an invite", room: withDave(std, membershipInvite), event: memberEvent(bob, dave, membershipLeave, nil), want: allow},
		{name: "unban/moderator unbans", room: withDave(std, membershipBan), event: memberEvent(bob, dave, membershipLeave, nil), want: allow},
		{name: "unban/below the ban level", room: withDave(standard(withPowerLevels(pl(func(c map[string]any) { c["ban"] = 60 }))), membershipBan),
			event: memberEvent(bob, dave, membershipLeave, nil), want: reject},
		// "To unban somebody, you must have power level greater than or
		// equal to both the kick and ban levels, and greater than the target
		// user's power level." (rules 4.5.3 and 4.5.4)
		{name: "unban/below the kick level", room: withDave(standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 60 }))), membershipBan),
			event: memberEvent(bob, dave, membershipLeave, nil), want: reject},
		{name: "unban/target not below the sender", room: withDave(standard(withPowerLevels(pl(func(c map[string]any) { users(c)[dave] = 50 }))), membershipBan),
			event: memberEvent(bob, dave, membershipLeave, nil), want: reject},

		// Ban.
		{name: "ban/moderator bans a member", room: std, event: memberEvent(bob, carol, membershipBan, nil), want: allow},
		{name: "ban/moderator bans an outsider", room: std, event: memberEvent(bob, frank, membershipBan, nil), want: allow},
		{name: "ban/member bans", room: std, event: memberEvent(carol, dave, membershipBan, nil), want: reject},
		{name: "ban/moderator bans the admin", room: std, event: memberEvent(bob, alice, membershipBan, nil), want: reject},
		{name: "ban/moderator bans themself", room: std, event: memberEvent(bob, bob, membershipBan, nil), want: reject},
		{name: "ban/banner not joined", room: then(std, func(r *room) { r.member(bob, bob, membershipLeave, nil) }),
			event: memberEvent(bob, carol, membershipBan, nil), want: reject},
		{name: "ban/lowered ban level", room: standard(withPowerLevels(pl(func(c map[string]any) { c["ban"] = 0; users(c)[carol] = 1 }))),
			event: memberEvent(carol, dave, membershipBan, nil), want: allow},

		// Rule 6 (v1-5) / 5 (v6-11) / 6 (v12): the sender must be joined.
		{name: "sender membership/joined member sends a message", room: std, event: message(carol), want: allow},
		{name: "sender membership/outsider sends a message", room: std, event: message(frank), want: reject},
		{name: "sender membership/invited user sends a message", room: withDave(std, membershipInvite), event: message(dave), want: reject},
		{name: "sender membership/banned user sends a message", room: withDave(std, membershipBan), event: message(dave), want: reject},
		{name: "sender membership/knocking user sends a message", room: withDave(knockRoom, membershipKnock), event: message(dave), want: reject},

		// Rule 8 (v1-5) / 7 (v6-11) / 8 (v12): required power level.
		{name: "power/member below state_default", room: std, event: stateEvent("m.room.name", "", carol, map[string]any{"name": "x"}), want: reject},
		{name: "power/moderator at state_default", room: std, event: stateEvent("m.room.name", "", bob, map[string]any{"name": "x"}), want: allow},
		{name: "power/events entry lowers a state event's level", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["events"] = map[string]any{"m.room.name": 0}
		}))), event: stateEvent("m.room.name", "", carol, map[string]any{"name": "x"}), want: allow},
		{name: "power/events_default raised", room: standard(withPowerLevels(pl(func(c map[string]any) { c["events_default"] = 10 }))),
			event: message(carol), want: reject},
		{name: "power/events entry raises a message's level", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["events"] = map[string]any{"m.room.message": 20}
		}))), event: message(carol), want: reject},
		{name: "power/users_default raised", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["users_default"] = 50
		}))), event: stateEvent("m.room.name", "", carol, map[string]any{"name": "x"}), want: allow},
		{name: "power/no power levels: creator sends state", room: noPL, event: stateEvent("m.room.name", "", alice, map[string]any{"name": "x"}), want: allow},
		{name: "power/no power levels: member sends state", room: noPL, event: stateEvent("m.room.name", "", carol, map[string]any{"name": "x"}), want: reject},
		{name: "power/no power levels: member sends a message", room: noPL, event: message(carol), want: allow},
		{name: "power/no power levels: creator kicks", room: noPL, event: memberEvent(alice, carol, membershipLeave, nil), want: allow},
		{name: "power/no power levels: member kicks", room: noPL, event: memberEvent(bob, carol, membershipLeave, nil), want: reject},
		{name: "power/no power levels: create sender when content.creator names another", room: then(standard(withPowerLevels(nil), withCreate(map[string]any{"creator": frank})), func(r *room) {
			r.member(frank, frank, membershipJoin, nil)
		}), event: stateEvent("m.room.name", "", alice, map[string]any{"name": "x"}), want: creatorFromSender},
		// See "join/content.creator when the create event's sender differs": the
		// level 100 of a room without power levels is the creator's.
		{name: "power/no power levels: content.creator when the create sender differs", room: then(standard(withPowerLevels(nil), withCreate(map[string]any{"creator": frank})), func(r *room) {
			r.member(frank, frank, membershipJoin, nil)
		}), event: stateEvent("m.room.name", "", frank, map[string]any{"name": "x"}), want: creatorInContent},

		// Rule 9 (v1-5) / 8 (v6-11) / 9 (v12): user-owned state keys.
		{name: "state_key/sender's own user ID", room: std, event: stateEvent("com.example.state", bob, bob, nil), want: allow},
		{name: "state_key/another user's ID", room: std, event: stateEvent("com.example.state", carol, bob, nil), want: reject},
		{name: "state_key/@ not at the start", room: std, event: stateEvent("com.example.state", "x@y", bob, nil), want: allow},

		// Rule 10 (v1-5) / 9 (v6-11) / 10 (v12): m.room.power_levels.
		{name: "power levels/first event by the creator", room: then(createdOnly(nil), func(r *room) { r.member(alice, alice, membershipJoin, nil) }),
			event: powerLevelsEvent(alice, map[string]any{"users": map[string]any{bob: 1000}, "ban": 1000, "events": map[string]any{"x": 5000}}), want: allow},
		{name: "power levels/first event with string levels", room: then(createdOnly(nil), func(r *room) { r.member(alice, alice, membershipJoin, nil) }),
			event: powerLevelsEvent(alice, map[string]any{"ban": "50", "events": map[string]any{"x": "5"}}), want: stringyLevels},
		// Before v10 only `users` is checked before "If there is no previous
		// m.room.power_levels event in the room, allow."
		{name: "power levels/first event with a malformed level", room: then(createdOnly(nil), func(r *room) { r.member(alice, alice, membershipJoin, nil) }),
			event: powerLevelsEvent(alice, map[string]any{"ban": "fifty"}), want: stringyLevels},
		{name: "power levels/first event with a malformed users value", room: then(createdOnly(nil), func(r *room) { r.member(alice, alice, membershipJoin, nil) }),
			event: powerLevelsEvent(alice, map[string]any{"users": map[string]any{bob: "fifty"}}), want: reject},
		{name: "power levels/malformed level replacing a valid one", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { c["ban"] = "fifty" })), want: reject},
		{name: "power levels/events not an object", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { c["events"] = 5 })), want: reject},
		{name: "power levels/users key not a user ID", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)["bob"] = 10 })), want: reject},
		{name: "power levels/users not an object", room: std,
			event: powerLevelsEvent(alice, map[string]any{"users": []any{}}), want: reject},
		{name: "power levels/string users value", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)[carol] = "10" })), want: stringyLevels},
		{name: "power levels/string level with sign, zeros and spaces", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)[carol] = " +0010 " })), want: stringyLevels},
		{name: "power levels/string level with a fraction", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)[carol] = "10.5" })), want: reject},
		{name: "power levels/float level", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { c["kick"] = 50.9 })), want: floatyLevels},
		{name: "power levels/float users value", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)[carol] = 5.114698e4 })), want: reject},
		{name: "power levels/float users value within the sender's level", room: std,
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)[carol] = 99.99 })), want: floatyLevels},
		{name: "power levels/member below the power_levels level", room: std,
			event: powerLevelsEvent(carol, pl(func(c map[string]any) {})), want: reject},
		{name: "power levels/moderator lowers ban", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["ban"] = 40 })), want: allow},
		{name: "power levels/moderator raises ban above their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["ban"] = 60 })), want: reject},
		{name: "power levels/moderator changes a level above theirs", room: standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 60 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["kick"] = 50 })), want: reject},
		{name: "power levels/moderator removes a level above theirs", room: standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 60 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) {})), want: reject},
		{name: "power levels/moderator adds a level at theirs", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["redact"] = 50 })), want: allow},
		// "For the properties users_default, events_default, state_default,
		// ban, redact, kick, invite check if they were added, changed or
		// removed": removing an explicit 50 is a change even though the
		// default is also 50.
		{name: "power levels/removing an explicit default above the sender", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["ban"] = 50
			c["events"] = map[string]any{typePowerLevels: 0}
		}))), event: powerLevelsEvent(carol, pl(func(c map[string]any) { c["events"] = map[string]any{typePowerLevels: 0} })), want: reject},
		{name: "power levels/restating an explicit level unchanged", room: standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 60 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["kick"] = 60; c["ban"] = 45 })), want: allow},
		{name: "power levels/restating a level as a string", versions: stringyLevels, room: standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 60 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["kick"] = "60" })), want: allow},
		{name: "power levels/moderator promotes a member to their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { users(c)[carol] = 50 })), want: allow},
		{name: "power levels/moderator promotes a member above their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { users(c)[carol] = 51 })), want: reject},
		{name: "power levels/moderator demotes a peer", room: standard(withPowerLevels(pl(func(c map[string]any) { users(c)[carol] = 50 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { users(c)[carol] = 0 })), want: reject},
		{name: "power levels/moderator removes a peer's entry", room: standard(withPowerLevels(pl(func(c map[string]any) { users(c)[carol] = 50 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) {})), want: reject},
		{name: "power levels/moderator demotes a lower member", room: standard(withPowerLevels(pl(func(c map[string]any) { users(c)[carol] = 49 }))),
			event: powerLevelsEvent(bob, pl(func(c map[string]any) {})), want: allow},
		{name: "power levels/moderator demotes themself", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { users(c)[bob] = 10 })), want: allow},
		{name: "power levels/moderator promotes themself", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { users(c)[bob] = 60 })), want: reject},
		{name: "power levels/moderator changes the admin's level", room: std, event: func(r *room) *event.Event {
			c := standardPowerLevels()
			users(c)[alice] = 0
			return powerLevelsEventAsIs(bob, c)(r)
		}, want: reject},
		{name: "power levels/moderator adds an events entry above their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["events"] = map[string]any{"m.room.name": 60} })), want: reject},
		{name: "power levels/moderator adds an events entry at their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["events"] = map[string]any{"m.room.name": 50} })), want: allow},
		{name: "power levels/moderator changes an events entry from above their level", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["events"] = map[string]any{"m.room.topic": 100}
		}))), event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["events"] = map[string]any{"m.room.topic": 0} })), want: reject},
		{name: "power levels/moderator changes notifications from above their level", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["notifications"] = map[string]any{"room": 80}
		}))), event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["notifications"] = map[string]any{"room": 50} })), want: not(notificationLevelsChecked)},
		{name: "power levels/moderator sets notifications above their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["notifications"] = map[string]any{"room": 60} })), want: not(notificationLevelsChecked)},
		{name: "power levels/moderator sets notifications at their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["notifications"] = map[string]any{"room": 50} })), want: allow},
		// gomatrixserverlib refuses to change a notifications entry equal to
		// the sender's level. Rule 10.7: "For each entry being changed in,
		// or removed from, the events or notifications properties: If the
		// current value is greater than the sender's current power level,
		// reject."
		{name: "power levels/moderator changes notifications at their level", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["notifications"] = map[string]any{"room": 50}
		}))), event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["notifications"] = map[string]any{"room": 10} })), want: allow},
		// gomatrixserverlib compares levels with defaults filled in; the
		// spec compares entries as written: "For each entry being added to,
		// or changed in, the events or notifications properties: If the new
		// value is greater than the sender's current power level, reject."
		// An added entry has no current value to weigh.
		{name: "power levels/adding an events entry below a higher events_default", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["events_default"] = 60
		}))), event: powerLevelsEvent(bob, pl(func(c map[string]any) {
			c["events_default"] = 60
			c["events"] = map[string]any{"m.room.topic": 50}
		})), want: allow},
		// Likewise "For each entry being changed in, or removed from, the
		// users property" concerns existing entries only.
		{name: "power levels/adding a users entry below a higher users_default", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["users_default"] = 60
		}))), event: powerLevelsEvent(bob, pl(func(c map[string]any) {
			c["users_default"] = 60
			users(c)[carol] = 10
		})), want: allow},
		// "... other than the sender's own entry": removing it is allowed
		// even where users_default is higher.
		{name: "power levels/removing one's own entry below users_default", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["users_default"] = 60
		}))), event: powerLevelsEvent(bob, pl(func(c map[string]any) {
			c["users_default"] = 60
			delete(users(c), bob)
		})), want: allow},
		// gomatrixserverlib does not check users_default, one of the
		// properties of rule 10.6: "For the properties users_default,
		// events_default, state_default, ban, redact, kick, invite check if
		// they were added, changed or removed ... If the new value is
		// higher than the sender's current power level, reject."
		{name: "power levels/moderator raises users_default above their level", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["users_default"] = 75 })), want: reject},
		// gomatrixserverlib weighs this entry as the invite level. Entries
		// of `events` are weighed as written (rule 10.8).
		{name: "power levels/moderator sets the events level of m.room.third_party_invite above theirs", room: std,
			event: powerLevelsEvent(bob, pl(func(c map[string]any) { c["events"] = map[string]any{typeThirdPartyInvite: 75} })), want: reject},
		{name: "power levels/creator listed in users", room: std, event: func(r *room) *event.Event {
			c := standardPowerLevels()
			users(c)[alice] = 100
			return powerLevelsEventAsIs(alice, c)(r)
		}, want: not(privilegedCreators)},
		{name: "power levels/additional creator listed in users", room: standard(withCreate(map[string]any{"additional_creators": []any{carol}})),
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { users(c)[carol] = 10 })), want: not(privilegedCreators)},
		{name: "power levels/first event listing the creator", room: then(createdOnly(nil), func(r *room) { r.member(alice, alice, membershipJoin, nil) }),
			event: powerLevelsEventAsIs(alice, map[string]any{"users": map[string]any{alice: 100}}), want: not(privilegedCreators)},

		// Room creators (v12 infinite power, v11 creator from sender).
		{name: "creators/creator kicks the highest possible level", room: standard(withPowerLevels(pl(func(c map[string]any) { users(c)[bob] = 1<<53 - 1 }))),
			event: memberEvent(alice, bob, membershipLeave, nil), want: privilegedCreators},
		{name: "creators/top level cannot kick a creator", room: standard(withPowerLevels(pl(func(c map[string]any) { users(c)[bob] = 1<<53 - 1 }))),
			event: memberEvent(bob, alice, membershipLeave, nil), want: not(privilegedCreators)},
		{name: "creators/additional creator bans", room: then(standard(withCreate(map[string]any{"additional_creators": []any{dave}}), withPowerLevels(pl(func(c map[string]any) { c["ban"] = 100 }))),
			func(r *room) { r.member(dave, dave, membershipJoin, nil) }),
			event: memberEvent(dave, carol, membershipBan, nil), want: privilegedCreators},
		{name: "creators/creator cannot kick another creator", room: then(standard(withCreate(map[string]any{"additional_creators": []any{dave}})),
			func(r *room) { r.member(dave, dave, membershipJoin, nil) }),
			event: memberEvent(alice, dave, membershipLeave, nil), want: not(privilegedCreators)},
		{name: "creators/additional creator sends state without power levels", room: then(standard(withPowerLevels(nil), withCreate(map[string]any{"additional_creators": []any{dave}})),
			func(r *room) { r.member(dave, dave, membershipJoin, nil) }),
			event: stateEvent("m.room.name", "", dave, map[string]any{"name": "x"}), want: privilegedCreators},
		{name: "creators/creator changes a level above 100", room: standard(withPowerLevels(pl(func(c map[string]any) { c["kick"] = 1000 }))),
			event: powerLevelsEvent(alice, pl(func(c map[string]any) { c["kick"] = 50 })), want: privilegedCreators},
		// gomatrixserverlib weighs notifications against the users map
		// only, ignoring the creators' infinite power in v12, even for the
		// first power levels event, of which rule 10.5 says "If there is no
		// previous m.room.power_levels event in the room, allow."
		{name: "creators/additional creator sends the first power levels", room: then(standard(withPowerLevels(nil), withCreate(map[string]any{"additional_creators": []any{dave}})),
			func(r *room) { r.member(dave, dave, membershipJoin, nil) }),
			event: powerLevelsEvent(dave, map[string]any{"notifications": map[string]any{"room": 101}}), want: privilegedCreators},
		{name: "creators/creator changes notifications above 100", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["notifications"] = map[string]any{"room": 150}
		}))), event: powerLevelsEvent(alice, pl(func(c map[string]any) { c["notifications"] = map[string]any{"room": 10} })),
			want: func(v event.RoomVersionInfo) bool {
				return !v.NotificationsPowerLevels || v.PrivilegedCreators
			}},
		{name: "creators/creator still needs to be joined", room: then(std, func(r *room) { r.member(alice, alice, membershipLeave, nil) }),
			event: message(alice), want: reject},

		// Rule 11 (v1-2): m.room.redaction.
		{name: "redaction/member redacts an event of their own server", room: std,
			event: func(r *room) *event.Event {
				return r.build(spec{Type: typeRedaction, Sender: carol, Redacts: "$orig:a.test"})
			}, want: allow},
		{name: "redaction/member redacts an event of another server", room: std,
			event: func(r *room) *event.Event {
				return r.build(spec{Type: typeRedaction, Sender: carol, Redacts: "$orig:b.test"})
			}, want: not(v1RedactionRule)},
		{name: "redaction/moderator redacts an event of another server", room: std,
			event: func(r *room) *event.Event {
				return r.build(spec{Type: typeRedaction, Sender: bob, Redacts: "$orig:b.test"})
			}, want: allow},
		{name: "redaction/below the redact level", room: standard(withPowerLevels(pl(func(c map[string]any) { c["redact"] = 60 }))),
			event: func(r *room) *event.Event {
				return r.build(spec{Type: typeRedaction, Sender: bob, Redacts: "$orig:b.test"})
			}, want: not(v1RedactionRule)},
		{name: "redaction/events level of m.room.redaction", room: standard(withPowerLevels(pl(func(c map[string]any) {
			c["events"] = map[string]any{typeRedaction: 60}
		}))), event: func(r *room) *event.Event {
			return r.build(spec{Type: typeRedaction, Sender: bob, Redacts: "$orig:a.test"})
		}, want: reject},
		{name: "redaction/outsider", room: std,
			event: func(r *room) *event.Event {
				return r.build(spec{Type: typeRedaction, Sender: frank, Redacts: "$orig:a.test"})
			}, want: reject},
	}
}

func TestAllowed(t *testing.T) {
	perVersion := map[event.RoomVersion]int{}
	allowedIn := map[event.RoomVersion]int{}
	for _, c := range authCases() {
		for _, v := range allVersions() {
			info, _ := v.Info()
			if !c.appliesTo(info) {
				continue
			}
			perVersion[v]++
			if c.want(info) {
				allowedIn[v]++
			}
			t.Run(c.name+"/v"+string(v), func(t *testing.T) {
				r := c.room(t, v)
				ev := c.event(r)
				err := Allowed(ev, r.state)
				want := c.want(info)
				if err != nil && !errors.Is(err, ErrNotAllowed) {
					t.Fatalf("refusal does not wrap ErrNotAllowed: %v", err)
				}
				if (err == nil) != want {
					t.Errorf("got %s, want allowed=%v", describe(err), want)
				}
			})
		}
	}
	for _, v := range event.KnownRoomVersions() {
		t.Logf("room version %s: %d cases, %d allowed and %d refused", v, perVersion[v], allowedIn[v], perVersion[v]-allowedIn[v])
	}
}
