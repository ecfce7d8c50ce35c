// Package authrules implements the authorization rules of every room
// version: whether an event is allowed given the state it is checked against.
//
// The rules are those of the room version specifications (rooms/v1..v12),
// applied in the order they are listed there. The versions number them
// differently (v1-5 have the aliases rule as 4, v6 removed it, v12 inserted
// a rule 2), so comments name the versions whose numbering they use.
// Behaviour that differs between versions is chosen by
// event.RoomVersionInfo flags, never by version string.
//
// Two rules need more than the events: whether an auth event was itself
// rejected (rule 2.3), and signatures (the sender's, and from v8 that of the
// server of join_authorised_via_users_server, see AuthorisingServer). The
// caller checks those.
package authrules

import (
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/matrix/event"
)

// AuthEvents gives the state events an event is checked against: its own
// auth_events, the state before it, or the room's current state.
type AuthEvents interface {
	// Get returns the state event of this type and state key, or nil.
	Get(eventType, stateKey string) *event.Event
}

// ErrNotAllowed wraps every reason an event fails the authorization rules.
var ErrNotAllowed = errors.New("event not allowed by the authorization rules")

func notAllowed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotAllowed, fmt.Sprintf(format, args...))
}

// Allowed reports whether ev passes the authorization rules of its room
// version against auth. A nil error means allowed; a refusal wraps ErrNotAllowed.
//
// auth must hold the room's m.room.create event, also in room version 12
// where auth_events does not list it: its ID is the room ID.
func Allowed(ev *event.Event, auth AuthEvents) error {
	if ev == nil {
		return notAllowed("no event")
	}
	// Rule 1
	if ev.Type() == typeCreate {
		return createAllowed(ev)
	}
	c := checker{ev: ev, v: ev.Version(), sender: ev.Sender()}
	if ev.Type() == typeMember {
		c.member = parseMemberContent(ev.Content())
	}
	if err := c.load(auth); err != nil {
		return err
	}
	// Rule 3 (v1-11), 4 (v12)
	if !c.create.federate && !sameDomain(c.sender, c.createEvent.Sender()) {
		return notAllowed("the room does not federate and %s is not on the creator's server", c.sender)
	}
	// Rule 4 (v1-5): a server manages its own aliases, member or not.
	if c.v.SpecialAliasesAuth && ev.Type() == typeAliases {
		sk := ev.StateKey()
		if sk == nil {
			return notAllowed("m.room.aliases without a state_key")
		}
		if d, ok := domainOf(c.sender); !ok || d != *sk {
			return notAllowed("m.room.aliases state_key %q is not the sender's server", *sk)
		}
		return nil
	}
	// Rule 5 (v1-5), 4 (v6-11), 5 (v12)
	if ev.Type() == typeMember {
		return c.memberAllowed()
	}
	// The remaining rules are numbered for v6-11; v1-5 add one, v12 adds one.
	// Rule 5
	if m := c.membership(c.sender); m != membershipJoin {
		return notAllowed("sender %s is not joined to the room (membership %q)", c.sender, m)
	}
	pl := c.powerLevels()
	senderLevel := pl.UserLevel(c.sender)
	// Rule 6
	if ev.Type() == typeThirdPartyInvite {
		if senderLevel >= pl.InviteLevel() {
			return nil
		}
		return notAllowed("sender level %d is below the invite level %d", senderLevel, pl.InviteLevel())
	}
	// Rule 7
	sk := ev.StateKey()
	if required := pl.EventLevel(ev.Type(), sk != nil); required > senderLevel {
		return notAllowed("sender level %d is below the level %d required for %s", senderLevel, required, ev.Type())
	}
	// Rule 8: state keyed by a user ID belongs to that user.
	if sk != nil && strings.HasPrefix(*sk, "@") && *sk != c.sender {
		return notAllowed("state_key %q is another user's", *sk)
	}
	// Rule 9
	if ev.Type() == typePowerLevels {
		return c.powerLevelsAllowed()
	}
	// Rule 11 (v1-2): event IDs carried their server's name, which let a
	// server redact its own users' events. Later versions leave redactions
	// to the checks of "Handling redactions".
	if c.v.EventIDFormat == event.EventIDFormatV1 && ev.Type() == typeRedaction {
		if senderLevel >= pl.RedactLevel() {
			return nil
		}
		if sameDomain(ev.Redacts(), ev.EventID()) {
			return nil
		}
		return notAllowed("sender level %d is below the redact level %d and %s is from another server", senderLevel, pl.RedactLevel(), ev.Redacts())
	}
	return nil
}

// AuthorisingServer returns the server whose signature an m.room.member
// event needs because its content names a join_authorised_via_users_server
// (rule 4.2 of room version 8 and later). ok is false when the event needs
// no such signature. Allowed cannot check signatures; the caller checks this
// one with the sender's. Allowed refuses a value that names no user.
func AuthorisingServer(ev *event.Event) (server string, ok bool) {
	if ev.Type() != typeMember || !ev.Version().RestrictedJoins {
		return "", false
	}
	mc := parseMemberContent(ev.Content())
	if !mc.authorisedViaStr || !validUserID(mc.authorisedVia) {
		return "", false
	}
	return domainOf(mc.authorisedVia)
}

// stateEntry is one auth event loaded by checker.load.
type stateEntry struct {
	key StateKeyTuple
	ev  *event.Event
}

// checker holds what one call of Allowed has read.
type checker struct {
	ev     *event.Event
	v      event.RoomVersionInfo
	sender string
	member memberContent // of ev, when it is m.room.member

	state       []stateEntry
	stateBuf    [8]stateEntry
	createEvent *event.Event
	create      *createContent
	pl          *PowerLevels
}

// load reads the auth events of the selection for ev from auth once, and
// applies the rules on them: the m.room.create event must be there (rule 2.4
// of v1-11, rule 2 of v12) and every one must belong to ev's room (rule 2.5,
// 3.5 in v12). Reading the whole selection up front makes a foreign event
// refuse ev even where the rule that would read it is never reached.
func (c *checker) load(auth AuthEvents) error {
	roomID := c.ev.RoomID()
	c.state = c.stateBuf[:0]
	needed := authEventsNeeded(c.v, c.ev.Type(), c.ev.StateKey(), c.sender, &c.member)
	if c.v.CreateEventIsRoomID {
		c.state = append(c.state, stateEntry{key: StateKeyTuple{typeCreate, ""}})
	}
	for _, k := range needed {
		c.state = append(c.state, stateEntry{key: k})
	}
	for i := range c.state {
		e := auth.Get(c.state[i].key.EventType, c.state[i].key.StateKey)
		c.state[i].ev = e
		if e == nil {
			continue
		}
		if c.state[i].key.EventType == typeCreate {
			c.createEvent = e
			if c.v.CreateEventIsRoomID && roomID != "!"+strings.TrimPrefix(e.EventID(), "$") {
				return notAllowed("room ID %s is not the ID of the m.room.create event %s", roomID, e.EventID())
			}
		}
		if e.RoomID() != roomID {
			return notAllowed("auth event %s belongs to room %s, not %s", e.EventID(), e.RoomID(), roomID)
		}
	}
	if c.createEvent == nil {
		return notAllowed("no m.room.create event among the auth events")
	}
	var err error
	c.create, err = parseCreate(c.createEvent)
	return err
}

// get returns a loaded auth event; keys outside the selection are never asked.
func (c *checker) get(eventType, stateKey string) *event.Event {
	for _, s := range c.state {
		if s.key.EventType == eventType && s.key.StateKey == stateKey {
			return s.ev
		}
	}
	return nil
}

// membership is a user's current membership, "" without a member event.
func (c *checker) membership(userID string) string {
	e := c.get(typeMember, userID)
	if e == nil {
		return ""
	}
	m, _ := memberString(e.Content(), "membership")
	return m
}

// joinRule is the room's join rule. A room without m.room.join_rules is
// treated as invite-only, as the reference implementations do: the spec
// names no join rule for that case, and "invite" lets an invited user in
// while keeping everyone else out.
func (c *checker) joinRule() string {
	e := c.get(typeJoinRules, "")
	if e == nil {
		return joinRuleInvite
	}
	rule, _ := memberString(e.Content(), "join_rule")
	return rule
}

func (c *checker) powerLevels() *PowerLevels {
	if c.pl == nil {
		c.pl = newPowerLevels(c.create, c.get(typePowerLevels, ""))
	}
	return c.pl
}

// memberAllowed applies the m.room.member rules: rule 5 of v1-5, 4 of v6-11,
// 5 of v12; sub-rules are numbered as in v8-11.
func (c *checker) memberAllowed() error {
	ev, mc := c.ev, &c.member
	// 4.1
	sk := ev.StateKey()
	if sk == nil {
		return notAllowed("m.room.member without a state_key")
	}
	if !mc.hasMembership {
		return notAllowed("m.room.member without a membership")
	}
	target := *sk
	// 4.2 (v8+): the signature itself is the caller's to check (see
	// AuthorisingServer); a value naming no user cannot be signed for.
	if c.v.RestrictedJoins && mc.hasAuthorisedVia && (!mc.authorisedViaStr || !validUserID(mc.authorisedVia)) {
		return notAllowed("join_authorised_via_users_server is not a user ID")
	}
	switch mc.membership {
	case membershipJoin:
		return c.joinAllowed(target)
	case membershipInvite:
		return c.inviteAllowed(target)
	case membershipLeave:
		return c.leaveAllowed(target)
	case membershipBan:
		return c.banAllowed(target)
	case membershipKnock:
		if c.v.Knocking {
			return c.knockAllowed(target)
		}
	}
	// 4.8
	return notAllowed("unknown membership %q", mc.membership)
}

// joinAllowed applies rule 4.3.
func (c *checker) joinAllowed(target string) error {
	// 4.3.1: the creator's own join right after the create event.
	prev := c.ev.PrevEventIDs()
	if len(prev) == 1 && prev[0] == c.createEvent.EventID() && c.create.creator != "" && target == c.create.creator {
		return nil
	}
	// 4.3.2
	if c.sender != target {
		return notAllowed("%s cannot join %s to the room", c.sender, target)
	}
	current := c.membership(target)
	// 4.3.3
	if current == membershipBan {
		return notAllowed("%s is banned", target)
	}
	rule := c.joinRule()
	switch {
	// 4.3.4
	case rule == joinRuleInvite || (c.v.Knocking && rule == joinRuleKnock):
		if current == membershipInvite || current == membershipJoin {
			return nil
		}
		return notAllowed("join rule %q and %s is not invited", rule, target)
	// 4.3.5
	case (c.v.RestrictedJoins && rule == joinRuleRestricted) || (c.v.KnockRestricted && rule == joinRuleKnockRestricted):
		if current == membershipInvite || current == membershipJoin {
			return nil
		}
		if !c.member.authorisedViaStr {
			return notAllowed("join rule %q and no join_authorised_via_users_server", rule)
		}
		via := c.member.authorisedVia
		if m := c.membership(via); m != membershipJoin {
			return notAllowed("join_authorised_via_users_server %s is not joined (membership %q)", via, m)
		}
		pl := c.powerLevels()
		if l := pl.UserLevel(via); l < pl.InviteLevel() {
			return notAllowed("join_authorised_via_users_server %s has level %d, below the invite level %d", via, l, pl.InviteLevel())
		}
		return nil
	// 4.3.6
	case rule == joinRulePublic:
		return nil
	}
	// 4.3.7
	return notAllowed("join rule %q forbids %s to join", rule, target)
}

// inviteAllowed applies rule 4.4.
func (c *checker) inviteAllowed(target string) error {
	if c.member.thirdPartyInvite != nil {
		return c.thirdPartyInviteAllowed(target)
	}
	// 4.4.2
	if m := c.membership(c.sender); m != membershipJoin {
		return notAllowed("inviter %s is not joined (membership %q)", c.sender, m)
	}
	// 4.4.3
	if m := c.membership(target); m == membershipJoin || m == membershipBan {
		return notAllowed("%s cannot be invited with membership %q", target, m)
	}
	// 4.4.4
	pl := c.powerLevels()
	if l := pl.UserLevel(c.sender); l < pl.InviteLevel() {
		return notAllowed("inviter level %d is below the invite level %d", l, pl.InviteLevel())
	}
	return nil
}

// thirdPartyInviteAllowed applies rule 4.4.1: the invite redeems an
// m.room.third_party_invite, whose sender vouches for it in place of the
// membership and power checks of an ordinary invite.
func (c *checker) thirdPartyInviteAllowed(target string) error {
	// 4.4.1.1
	if c.membership(target) == membershipBan {
		return notAllowed("%s is banned", target)
	}
	// 4.4.1.2
	tpi, err := objectKeys(c.member.thirdPartyInvite)
	if err != nil {
		return notAllowed("third_party_invite is not an object")
	}
	rawSigned, ok := tpi["signed"]
	if !ok {
		return notAllowed("third_party_invite has no signed")
	}
	signed, err := objectKeys(rawSigned)
	if err != nil {
		return notAllowed("third_party_invite.signed is not an object")
	}
	// 4.4.1.3
	rawMXID, hasMXID := signed["mxid"]
	rawToken, hasToken := signed["token"]
	if !hasMXID || !hasToken {
		return notAllowed("third_party_invite.signed lacks mxid or token")
	}
	// 4.4.1.4
	if mxid, ok := jsonString(rawMXID); !ok || mxid != target {
		return notAllowed("third_party_invite.signed.mxid %s is not %s", rawMXID, target)
	}
	// 4.4.1.5
	token, ok := jsonString(rawToken)
	var tpiEvent *event.Event
	if ok {
		tpiEvent = c.get(typeThirdPartyInvite, token)
	}
	if tpiEvent == nil {
		return notAllowed("no m.room.third_party_invite for token %s", rawToken)
	}
	// 4.4.1.6
	if tpiEvent.Sender() != c.sender {
		return notAllowed("%s did not send the m.room.third_party_invite", c.sender)
	}
	// 4.4.1.7, 4.4.1.8
	if !signedMatchesAnyKey(signed, thirdPartyPublicKeys(tpiEvent.Content())) {
		return notAllowed("no signature of third_party_invite.signed matches the invite's public keys")
	}
	return nil
}

// leaveAllowed applies rule 4.5.
func (c *checker) leaveAllowed(target string) error {
	current := c.membership(target)
	// 4.5.1
	if c.sender == target {
		if current == membershipInvite || current == membershipJoin || (c.v.Knocking && current == membershipKnock) {
			return nil
		}
		return notAllowed("%s cannot leave with membership %q", target, current)
	}
	// 4.5.2
	if m := c.membership(c.sender); m != membershipJoin {
		return notAllowed("%s is not joined (membership %q)", c.sender, m)
	}
	pl := c.powerLevels()
	senderLevel, targetLevel := pl.UserLevel(c.sender), pl.UserLevel(target)
	// 4.5.3: unbanning takes the ban level as well as the kick level.
	if current == membershipBan && senderLevel < pl.BanLevel() {
		return notAllowed("sender level %d is below the ban level %d needed to unban", senderLevel, pl.BanLevel())
	}
	// 4.5.4
	if senderLevel >= pl.KickLevel() && targetLevel < senderLevel {
		return nil
	}
	// 4.5.5
	return notAllowed("sender level %d cannot kick level %d (kick level %d)", senderLevel, targetLevel, pl.KickLevel())
}

// banAllowed applies rule 4.6.
func (c *checker) banAllowed(target string) error {
	// 4.6.1
	if m := c.membership(c.sender); m != membershipJoin {
		return notAllowed("%s is not joined (membership %q)", c.sender, m)
	}
	// 4.6.2
	pl := c.powerLevels()
	senderLevel, targetLevel := pl.UserLevel(c.sender), pl.UserLevel(target)
	if senderLevel >= pl.BanLevel() && targetLevel < senderLevel {
		return nil
	}
	// 4.6.3
	return notAllowed("sender level %d cannot ban level %d (ban level %d)", senderLevel, targetLevel, pl.BanLevel())
}

// knockAllowed applies rule 4.7 (v7+).
func (c *checker) knockAllowed(target string) error {
	// 4.7.1
	rule := c.joinRule()
	if rule != joinRuleKnock && !(c.v.KnockRestricted && rule == joinRuleKnockRestricted) {
		return notAllowed("join rule %q does not allow knocking", rule)
	}
	// 4.7.2
	if c.sender != target {
		return notAllowed("%s cannot knock for %s", c.sender, target)
	}
	// 4.7.3, 4.7.4
	switch m := c.membership(c.sender); m {
	case membershipBan, membershipInvite, membershipJoin:
		return notAllowed("%s cannot knock with membership %q", c.sender, m)
	}
	return nil
}

// powerLevelsAllowed applies the m.room.power_levels rule: 10 of v1-5, 9 of
// v6-11, 10 of v12; sub-rules numbered as in v12.
func (c *checker) powerLevelsAllowed() error {
	newC, probs := parsePowerLevelsContent(c.ev.Content(), c.v)
	// 10.1, 10.2 (v10+)
	if c.v.IntegerPowerLevels && probs.other != nil {
		return notAllowed("m.room.power_levels: %v", probs.other)
	}
	// 10.3
	if probs.users != nil {
		return notAllowed("m.room.power_levels: %v", probs.users)
	}
	pl := c.powerLevels()
	// 10.4 (v12): creators' power is not the power levels' to give.
	if c.v.PrivilegedCreators {
		for u := range newC.users {
			if pl.IsPrivilegedCreator(u) {
				return notAllowed("m.room.power_levels users holds the creator %s", u)
			}
		}
	}
	// 10.5
	oldEvent := c.get(typePowerLevels, "")
	if oldEvent == nil {
		return nil
	}
	// Before v10 only `users` is checked up front, but a value that is not
	// an integer cannot be weighed against the sender's level below.
	if probs.other != nil {
		return notAllowed("m.room.power_levels: %v", probs.other)
	}
	oldC, _ := parsePowerLevelsContent(oldEvent.Content(), c.v)
	return powerLevelsChangeAllowed(c.v, oldC, newC, c.sender, pl.UserLevel(c.sender))
}

// powerLevelsChangeAllowed applies rules 10.6 to 10.10: what a sender of
// this level may change between two power levels contents. Entries are
// compared as written, not with defaults filled in: the rules speak of
// values "added, changed or removed".
func powerLevelsChangeAllowed(v event.RoomVersionInfo, oldC, newC plContent, sender string, senderLevel int64) error {
	// 10.6
	for i := range oldC.named {
		o, n := oldC.named[i], newC.named[i]
		if o == n {
			continue
		}
		if o.set && o.v > senderLevel {
			return notAllowed("cannot change %s from %d, above the sender's level %d", namedLevelKeys[i], o.v, senderLevel)
		}
		if n.set && n.v > senderLevel {
			return notAllowed("cannot set %s to %d, above the sender's level %d", namedLevelKeys[i], n.v, senderLevel)
		}
	}
	// 10.7, 10.8; `notifications` joined `events` in v6 (MSC2209, the change
	// that also kept it through redaction, hence the flag used here).
	if err := checkLevelMap("events", oldC.events, newC.events, senderLevel); err != nil {
		return err
	}
	if v.NotificationsPowerLevels {
		if err := checkLevelMap("notifications", oldC.notifications, newC.notifications, senderLevel); err != nil {
			return err
		}
	}
	// 10.9: a user may lower their own level, not that of a peer or superior.
	for u, o := range oldC.users {
		if u == sender {
			continue
		}
		if n, ok := newC.users[u]; ok && n == o {
			continue
		}
		if o >= senderLevel {
			return notAllowed("cannot change the level of %s (%d), not below the sender's level %d", u, o, senderLevel)
		}
	}
	// 10.10
	for u, n := range newC.users {
		if o, ok := oldC.users[u]; ok && o == n {
			continue
		}
		if n > senderLevel {
			return notAllowed("cannot give %s level %d, above the sender's level %d", u, n, senderLevel)
		}
	}
	return nil
}

// checkLevelMap applies the rules on `events` and `notifications` entries:
// one changed or removed must not have been above the sender's level, one
// added or changed must not end above it.
func checkLevelMap(name string, oldM, newM map[string]int64, senderLevel int64) error {
	for k, o := range oldM {
		if n, ok := newM[k]; ok && n == o {
			continue
		}
		if o > senderLevel {
			return notAllowed("cannot change %s[%q] from %d, above the sender's level %d", name, k, o, senderLevel)
		}
	}
	for k, n := range newM {
		if o, ok := oldM[k]; ok && o == n {
			continue
		}
		if n > senderLevel {
			return notAllowed("cannot set %s[%q] to %d, above the sender's level %d", name, k, n, senderLevel)
		}
	}
	return nil
}
