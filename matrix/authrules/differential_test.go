package authrules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	gmslspec "github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/parley-chat/parley/matrix/event"
)

// The differential test builds random small rooms and random events for
// every room version, and compares Allowed with gomatrixserverlib's. Where
// the two disagree the spec decides: each known disagreement is recognised
// by knownDifference, which names the allowed_test.go case that pins the
// spec's answer. Any other disagreement fails the test. Every room version,
// 1 to 12, is compared: gomatrixserverlib reads all of them from the same
// JSON through its RoomVersionImpl.NewEventFromTrustedJSONWithEventID.

var pool = []string{alice, bob, carol, dave, eve, frank}

// gen produces one random room and one random event in it.
type gen struct {
	// odd allows malformed levels: only in the event checked, since the
	// power levels in state passed the auth rules.
	odd bool
	rng *rand.Rand
	r   *room
	pl  map[string]any // content of the power levels in state, nil if none
}

func (g *gen) pick(xs ...string) string { return xs[g.rng.Intn(len(xs))] }
func (g *gen) chance(p float64) bool    { return g.rng.Float64() < p }

// level returns a random power level in one of the forms the version accepts.
func (g *gen) level() any {
	l := []int{0, 0, 1, 10, 49, 50, 50, 51, 75, 100, 100, 101, -1}[g.rng.Intn(13)]
	switch {
	case g.odd && g.chance(0.01):
		return float64(l) + 0.5
	case g.odd && g.chance(0.01):
		return g.pick("fifty", " +07 ", "1.5", "")
	case !g.r.info.IntegerPowerLevels && g.chance(0.1):
		return strconv.Itoa(l)
	}
	return l
}

func (g *gen) randomPowerLevels() map[string]any {
	c := map[string]any{}
	for _, k := range namedLevelKeys {
		if g.chance(0.3) {
			c[k] = g.level()
		}
	}
	users := map[string]any{}
	for _, u := range pool {
		if g.chance(0.5) {
			users[u] = g.level()
		}
	}
	if g.r.info.PrivilegedCreators {
		for _, u := range g.creators() {
			delete(users, u)
		}
	} else if g.chance(0.8) {
		users[alice] = 100
	}
	c["users"] = users
	if g.chance(0.4) {
		ev := map[string]any{}
		for _, t := range []string{"m.room.name", typePowerLevels, typeRedaction, "m.room.message", typeThirdPartyInvite} {
			if g.chance(0.3) {
				ev[t] = g.level()
			}
		}
		c["events"] = ev
	}
	if g.chance(0.3) {
		c["notifications"] = map[string]any{"room": g.level()}
	}
	return c
}

func (g *gen) creators() []string {
	out := []string{g.r.create.Sender()}
	if ac, ok := mustContent(g.r.create)["additional_creators"].([]any); ok {
		for _, a := range ac {
			out = append(out, a.(string))
		}
	}
	return out
}

func mustContent(e *event.Event) map[string]any {
	var m map[string]any
	if err := jsonUnmarshal(e.Content(), &m); err != nil {
		panic(err)
	}
	return m
}

// deepCopy copies JSON-like maps.
func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if inner, ok := v.(map[string]any); ok {
			out[k] = deepCopy(inner)
		} else {
			out[k] = v
		}
	}
	return out
}

// buildRoom makes a random room state.
func (g *gen) buildRoom(t testing.TB, ver event.RoomVersion, seed string) {
	g.r = newEmptyRoom(t, ver)
	g.r.seed = seed
	cc := g.r.createContent()
	if g.chance(0.1) {
		cc["m.federate"] = false
	}
	if !g.r.info.CreatorFromSender && g.chance(0.1) {
		cc["creator"] = frank
	}
	if g.r.info.PrivilegedCreators && g.chance(0.3) {
		cc["additional_creators"] = []any{g.pick(bob, dave, eve)}
	}
	g.r.addCreate(alice, cc)
	if g.chance(0.05) {
		return // only the create event: exercises the creator's first join
	}
	g.r.member(alice, alice, membershipJoin, nil)
	g.pl = nil
	if g.chance(0.85) {
		g.pl = g.randomPowerLevels()
		g.r.add(spec{Type: typePowerLevels, StateKey: sk(""), Sender: alice, Content: deepCopy(g.pl)})
	}
	if g.chance(0.9) {
		g.r.joinRules(g.pick(joinRulePublic, joinRuleInvite, joinRuleKnock, joinRuleRestricted, joinRuleKnockRestricted, "private"))
	}
	for _, u := range pool[1:] {
		m := g.pick("", membershipJoin, membershipJoin, membershipInvite, membershipLeave, membershipBan, membershipKnock)
		if m == "" {
			continue
		}
		g.r.member(u, u, m, nil)
	}
	if g.chance(0.3) {
		c := tpiContent()
		if g.chance(0.5) {
			c = tpiContentWithList()
		}
		g.r.add(spec{Type: typeThirdPartyInvite, StateKey: sk(thirdPartyID), Sender: g.pick(pool...), Content: c})
	}
	if g.chance(0.03) {
		foreign := "!elsewhere:a.test"
		if g.r.info.CreateEventIsRoomID {
			foreign = "!" + hashID("elsewhere")[1:]
		}
		g.r.add(spec{Type: typeMember, StateKey: sk(g.pick(pool...)), Sender: alice, Content: map[string]any{"membership": "join"}, RoomID: foreign})
	}
}

// randomCreate makes a create event, valid or broken in one way.
func (g *gen) randomCreate() *event.Event {
	r := g.r
	c := r.createContent()
	s := spec{Type: typeCreate, StateKey: sk(""), Sender: g.pick(alice, eve), NoPrev: true, Content: c}
	if r.info.CreateEventIsRoomID {
		s.NoRoomID = true
	} else {
		d, _ := domainOf(s.Sender)
		s.RoomID = "!new:" + d
	}
	switch g.rng.Intn(9) {
	case 0:
		s.Prev = []string{r.create.EventID()}
		s.NoPrev = false
	case 1:
		s.RoomID, s.NoRoomID = "!new:b.test", false
	case 2:
		c["room_version"] = "99"
	case 3:
		delete(c, "creator")
	case 4:
		c["additional_creators"] = []any{bob, g.pick("bob", "@:", "@bob:b.test")}
	case 5:
		c["additional_creators"] = "@bob:a.test"
	case 6:
		delete(c, "room_version")
	}
	return r.build(s)
}

// randomEvent makes a random event in the room.
func (g *gen) randomEvent() *event.Event {
	r := g.r
	sender := g.pick(pool...)
	if g.chance(0.05) {
		return g.randomCreate()
	}
	switch g.rng.Intn(10) {
	case 0:
		return r.build(spec{Type: "m.room.message", Sender: sender, Content: map[string]any{"body": "x"}})
	case 1:
		return r.build(spec{Type: "m.room.name", StateKey: sk(""), Sender: sender, Content: map[string]any{"name": "x"}})
	case 2:
		key := g.pick("", sender, g.pick(pool...), "x@y")
		return r.build(spec{Type: "com.example.state", StateKey: sk(key), Sender: sender})
	case 3:
		return r.build(spec{Type: typeThirdPartyInvite, StateKey: sk("t" + strconv.Itoa(g.rng.Intn(3))), Sender: sender, Content: tpiContent()})
	case 4:
		d, _ := domainOf(g.pick(pool...))
		return r.build(spec{Type: typeRedaction, Sender: sender, Redacts: "$orig:" + d})
	case 5:
		d, _ := domainOf(g.pick(sender, eve))
		return r.build(spec{Type: typeAliases, StateKey: sk(d), Sender: sender, Content: map[string]any{"aliases": []any{}}})
	case 6:
		return g.powerLevelsEvent(sender)
	default:
		return g.memberEvent(sender)
	}
}

func (g *gen) memberEvent(sender string) *event.Event {
	r := g.r
	target := sender
	if g.chance(0.5) {
		target = g.pick(pool...)
	}
	membership := g.pick(membershipJoin, membershipJoin, membershipInvite, membershipLeave, membershipLeave, membershipBan, membershipKnock)
	extra := map[string]any{}
	if membership == membershipJoin && g.chance(0.4) {
		extra["join_authorised_via_users_server"] = g.pick(pool...)
		if g.chance(0.1) {
			extra["join_authorised_via_users_server"] = "bob"
		}
	}
	if membership == membershipInvite && g.chance(0.3) {
		key := idServerKey
		if g.chance(0.2) {
			key = otherIDKey
		}
		mxid := target
		if g.chance(0.1) {
			mxid = g.pick(pool...)
		}
		extra = thirdPartyInvite(signedBlock(mxid, thirdPartyID, key))
	}
	s := r.memberSpec(sender, target, membership, extra)
	if r.last == r.create.EventID() || g.chance(0.05) {
		s.Prev = []string{r.create.EventID()}
	}
	return r.build(s)
}

func (g *gen) powerLevelsEvent(sender string) *event.Event {
	// Odd values only where the creator is the sender, so that two
	// known differences do not meet in one event.
	g.odd = mustContent(g.r.create)["creator"] != frank
	defer func() { g.odd = false }()
	var c map[string]any
	if g.pl == nil || g.chance(0.2) {
		c = g.randomPowerLevels()
	} else {
		c = deepCopy(g.pl)
		for n := 1 + g.rng.Intn(3); n > 0; n-- {
			switch g.rng.Intn(5) {
			case 0:
				k := namedLevelKeys[g.rng.Intn(len(namedLevelKeys))]
				if g.chance(0.3) {
					delete(c, k)
				} else {
					c[k] = g.level()
				}
			case 1, 2:
				u, _ := c["users"].(map[string]any)
				if u == nil {
					u = map[string]any{}
					c["users"] = u
				}
				who := g.pick(pool...)
				if g.chance(0.3) {
					delete(u, who)
				} else {
					u[who] = g.level()
				}
			case 3:
				e, _ := c["events"].(map[string]any)
				if e == nil {
					e = map[string]any{}
					c["events"] = e
				}
				e[g.pick("m.room.name", typePowerLevels, "m.room.topic")] = g.level()
			case 4:
				c["notifications"] = map[string]any{"room": g.level()}
			}
		}
	}
	return g.r.build(spec{Type: typePowerLevels, StateKey: sk(""), Sender: sender, Content: c})
}

// gmslVerdict runs gomatrixserverlib's Allowed on the same JSON.
func gmslVerdict(ver event.RoomVersion, ev *event.Event, state StateMap) (err error, crashed bool) {
	defer func() {
		if p := recover(); p != nil {
			err, crashed = fmt.Errorf("panic: %v", p), true
		}
	}()
	impl := gmsl.MustGetRoomVersion(gmsl.RoomVersion(ver))
	toPDU := func(e *event.Event) gmsl.PDU {
		p, err := impl.NewEventFromTrustedJSONWithEventID(e.EventID(), e.JSON(), false)
		if err != nil {
			panic(fmt.Sprintf("gomatrixserverlib cannot read %s: %v", e.JSON(), err))
		}
		return p
	}
	var pdus []gmsl.PDU
	for _, e := range state {
		pdus = append(pdus, toPDU(e))
	}
	provider, err := gmsl.NewAuthEvents(pdus)
	if err != nil {
		panic(err)
	}
	querier := func(_ gmslspec.RoomID, senderID gmslspec.SenderID) (*gmslspec.UserID, error) {
		return gmslspec.NewUserID(string(senderID), true)
	}
	return gmsl.Allowed(toPDU(ev), provider, querier), false
}

func TestDifferentialGomatrixserverlib(t *testing.T) {
	iterations := 3000
	if testing.Short() {
		iterations = 300
	}
	// PARLEY_AUTHRULES_DIFF_ITERATIONS runs a longer comparison.
	if n, err := strconv.Atoi(os.Getenv("PARLEY_AUTHRULES_DIFF_ITERATIONS")); err == nil && n > 0 {
		iterations = n
	}
	seed := int64(1)
	if n, err := strconv.ParseInt(os.Getenv("PARLEY_AUTHRULES_DIFF_SEED"), 10, 64); err == nil {
		seed = n
	}
	for _, ver := range allVersions() {
		t.Run("v"+string(ver), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed*1000 + int64(len(ver)*100) + int64(ver[0])))
			known := map[string]int{}
			agreed, crashes := 0, 0
			for i := 0; i < iterations; i++ {
				g := &gen{rng: rng}
				g.buildRoom(t, ver, "r"+strconv.Itoa(i))
				ev := g.randomEvent()
				ours := Allowed(ev, g.r.state)
				theirs, crashed := gmslVerdict(ver, ev, g.r.state)
				if crashed {
					crashes++
					continue
				}
				if (ours == nil) == (theirs == nil) {
					agreed++
					continue
				}
				if why := knownDifference(g, ev, ours, theirs); why != "" {
					known[why]++
					continue
				}
				t.Errorf("disagreement on %s\nstate:%s\nours: %s\ngomatrixserverlib: %v", ev.JSON(), dumpState(g.r.state), describe(ours), theirs)
			}
			names := make([]string, 0, len(known))
			for k := range known {
				names = append(names, k)
			}
			sort.Strings(names)
			t.Logf("%d agreed, %d gomatrixserverlib panics", agreed, crashes)
			for _, k := range names {
				t.Logf("known difference %q: %d", k, known[k])
			}
		})
	}
}

func dumpState(s StateMap) string {
	keys := make([]StateKeyTuple, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].EventType != keys[j].EventType {
			return keys[i].EventType < keys[j].EventType
		}
		return keys[i].StateKey < keys[j].StateKey
	})
	out := ""
	for _, k := range keys {
		out += "\n  " + string(s[k].Content()) + "  <- " + k.EventType + " " + k.StateKey + " by " + s[k].Sender()
	}
	return out
}

// knownDifference explains a disagreement the spec decides against
// gomatrixserverlib, naming the allowed_test.go cases that pin the spec's
// answer, or returns "".
func knownDifference(g *gen, ev *event.Event, ours, theirs error) string {
	r, v := g.r, g.r.info
	state := r.state
	membershipOf := func(u string) string {
		if e := state.Get(typeMember, u); e != nil {
			m, _ := e.Membership()
			return m
		}
		return ""
	}
	joinRule := joinRuleInvite
	if e := state.Get(typeJoinRules, ""); e != nil {
		joinRule, _ = mustContent(e)["join_rule"].(string)
	}
	allowedByUs := ours == nil

	if theirs != nil && strings.Contains(theirs.Error(), "different rooms") && allowedByUs {
		// Case "auth events/unselected foreign state is not read": the
		// room_id rule is about the auth events; gomatrixserverlib refuses
		// whenever any event it was handed is foreign.
		selected := false
		for _, k := range AuthEventsNeededFor(ev) {
			if e := state.Get(k.EventType, k.StateKey); e != nil && e.RoomID() != ev.RoomID() {
				selected = true
			}
		}
		if !selected {
			return "foreign state outside the auth events selection"
		}
	}
	if !v.CreatorFromSender && ev.Type() != typeCreate {
		// Cases "join/content.creator when the create event's sender
		// differs" and "power/no power levels: content.creator when the
		// create sender differs": before v11 "the creator" is
		// content.creator; gomatrixserverlib always takes the sender.
		// Recognised by checking again with content.creator set to the
		// sender.
		if c, _ := mustContent(r.create)["creator"].(string); c != r.create.Sender() {
			if (Allowed(ev, withCreatorFromSender(r)) == nil) == (theirs == nil) {
				return "content.creator ignored"
			}
		}
	}

	switch ev.Type() {
	case typeCreate:
		if rv, ok := mustContent(ev)["room_version"].(string); ok && theirs == nil {
			if _, err := event.RoomVersion(rv).Info(); err != nil {
				// Case "create/unknown room_version": rule 1.3 holds in
				// every version; gomatrixserverlib skips it in v11.
				return "unknown room_version accepted"
			}
		}
	case typeAliases:
		// Cases "aliases/...": gomatrixserverlib applies the aliases rule
		// in every version; v6 removed it ("Rule 4, which related
		// specifically to events of type m.room.aliases, is removed").
		if !v.SpecialAliasesAuth {
			return "aliases rule applied after v5"
		}
	case typePowerLevels:
		if d := powerLevelsDifference(g, ev, theirs); d != "" {
			return d
		}
	case typeMember:
		mc := parseMemberContent(ev.Content())
		target := *ev.StateKey()
		sender := ev.Sender()
		current := membershipOf(target)
		if !allowedByUs && v.RestrictedJoins && mc.hasAuthorisedVia && !validUserID(mc.authorisedVia) {
			// Case "restricted/join_authorised_via_users_server names no
			// user": rule 4.2 wants a signature from that user's server.
			return "join_authorised_via_users_server names no user"
		}
		switch mc.membership {
		case membershipJoin:
			if !allowedByUs && joinRule == joinRuleKnockRestricted && !v.KnockRestricted {
				// Case "knock_restricted/join authorised by a member who
				// can invite" before v10, where knock_restricted is no
				// join rule at all.
				return "knock_restricted before v10"
			}
			prev := ev.PrevEventIDs()
			creator := alice
			if allowedByUs && len(prev) == 1 && prev[0] == r.create.EventID() && target == creator && sender != target {
				// Case "join/creator's join sent by someone else right
				// after the create event": rule 4.3.1 does not look at
				// the sender.
				return "creator's first join sent by another user"
			}
			if !allowedByUs && sender == target && (current == membershipInvite || current == membershipJoin) {
				// Cases "join/private join rule with an invite",
				// "join/knock room with an invite" (v1-6),
				// "restricted/invited user joins..." (v1-7),
				// "knock_restricted/invited user joins" (v1-9): rule
				// 4.3.4 admits invited users only under the join rules
				// the version lists.
				return "invited user joins under a join rule the version does not list"
			}
			if allowedByUs && joinRule == joinRulePublic && current == membershipKnock {
				// Case "join/knocking user joins a public room": "If the
				// join_rule is public, allow."
				return "knocking user joins a public room"
			}
		case membershipLeave:
			if !allowedByUs && sender == target && (current == "" || current == membershipLeave) {
				// Cases "leave/outsider leaves", "leave/user who left
				// leaves again": "If the sender matches state_key, allow
				// if and only if that user's current membership state is
				// invite, join, or knock."
				return "leave without being in the room"
			}
			if !allowedByUs && sender == target && current == membershipKnock && !v.Knocking {
				// Case "knock/retracted" before v7.
				return "knock retracted before v7"
			}
			if !allowedByUs && sender != target && current == membershipBan {
				// Cases "unban/below the kick level", "unban/target not
				// below the sender": rules 4.5.3 and 4.5.4 both apply.
				return "unban needs the kick level and a lower target"
			}
		case membershipKnock:
			if !allowedByUs && joinRule == joinRuleKnockRestricted && !v.KnockRestricted {
				// Case "knock_restricted/knock" before v10.
				return "knock_restricted before v10"
			}
		case membershipInvite:
			if mc.thirdPartyInvite == nil {
				break
			}
			tpi := state.Get(typeThirdPartyInvite, thirdPartyID)
			if allowedByUs && tpi != nil {
				if _, hasList := mustContent(tpi)["public_keys"]; !hasList {
					// Case "third-party invite/key only in public_key":
					// rule 4.4.1.7.1, "A single public key in the
					// public_key property."
					return "third-party invite key in public_key"
				}
			}
			if !allowedByUs && theirs == nil && tpi != nil && (tpi.Sender() != sender || current == membershipBan) {
				// Cases "third-party invite/sent by someone else than the
				// inviter", "third-party invite/banned target": rules
				// 4.4.1.1 and 4.4.1.6.
				return "third-party invite by another sender or to a banned user"
			}
		}
	}
	return ""
}

// withCreatorFromSender returns the room's state with a create event whose
// content.creator is its sender, keeping the event ID.
func withCreatorFromSender(r *room) StateMap {
	c := mustContent(r.create)
	c["creator"] = r.create.Sender()
	s := spec{ID: r.create.EventID(), Type: typeCreate, StateKey: sk(""), Sender: r.create.Sender(), Content: c, NoPrev: true}
	out := StateMap{}
	for k, e := range r.state {
		out[k] = e
	}
	out[StateKeyTuple{typeCreate, ""}] = r.build(s)
	return out
}

// powerLevelsDifference recognises the ways gomatrixserverlib weighs a power
// levels change differently from the spec.
func powerLevelsDifference(g *gen, ev *event.Event, theirs error) string {
	_, newProbs := parsePowerLevelsContent(ev.Content(), g.r.info)
	if theirs == nil && newProbs.first() != nil && floatIn(ev.Content()) && g.r.info.StrictCanonicalJSON {
		// Case "power levels/float level": floats are accepted (and
		// truncated) only in v1-5, whose spec includes "m.room.power_levels
		// events accept values as floats"; gomatrixserverlib truncates
		// them in every version before v10.
		return "float level after v5"
	}
	old := g.r.state.Get(typePowerLevels, "")
	if old == nil && theirs != nil && g.r.create.Version().PrivilegedCreators {
		if p, _ := NewPowerLevels(g.r.create, nil); p.IsPrivilegedCreator(ev.Sender()) {
			// Case "creators/additional creator sends the first power
			// levels": "If there is no previous m.room.power_levels event
			// in the room, allow."; gomatrixserverlib still weighs
			// notifications, against the users map only.
			return "creator's power ignored for notifications"
		}
	}
	if old == nil {
		probs := newProbs
		if theirs != nil && probs.users == nil && probs.other != nil && !g.r.info.IntegerPowerLevels {
			// Case "power levels/first event with a malformed level".
			return "malformed level in the first power levels event"
		}
		return ""
	}
	oldP, _ := parsePowerLevelsContent(old.Content(), g.r.info)
	newP, _ := parsePowerLevelsContent(ev.Content(), g.r.info)
	if theirs == nil && oldP.named[levelUsersDefault] != newP.named[levelUsersDefault] {
		// Case "power levels/moderator raises users_default above their
		// level": users_default is one of the properties rule 10.6 checks;
		// gomatrixserverlib leaves it out.
		return "users_default change unchecked"
	}
	if theirs == nil && oldP.events[typeThirdPartyInvite] != newP.events[typeThirdPartyInvite] {
		// Case "power levels/moderator sets the events level of
		// m.room.third_party_invite above theirs": gomatrixserverlib
		// weighs that entry as the invite level.
		return "events entry of m.room.third_party_invite read as the invite level"
	}
	// gomatrixserverlib compares effective levels, defaults filled in,
	// where the spec compares the entries as written ("check if they were
	// added, changed or removed"; "each entry being changed in, or removed
	// from"). Filling the defaults into both events and checking again
	// reproduces its verdict when that is the cause. Cases "power
	// levels/removing an explicit default above the sender", "power
	// levels/adding an events entry below a higher events_default",
	// "power levels/adding a users entry below a higher users_default",
	// "power levels/removing one's own entry below users_default".
	pls, _ := NewPowerLevels(g.r.create, old)
	senderLevel := pls.UserLevel(ev.Sender())
	oldFilled, newFilled := fillDefaults(oldP, newP)
	filled := powerLevelsChangeAllowed(g.r.info, oldFilled, newFilled, ev.Sender(), senderLevel)
	if (filled == nil) == (theirs == nil) {
		return "power levels compared as written, not with defaults filled in"
	}
	if theirs == nil {
		return ""
	}
	// gomatrixserverlib also fills in 50 for absent notifications.
	effective := func(m map[string]int64, k string) int64 {
		if l, ok := m[k]; ok {
			return l
		}
		return defaultRoomNotificationLevel
	}
	for k := range unionKeys(oldP.notifications, newP.notifications) {
		o, n := effective(oldP.notifications, k), effective(newP.notifications, k)
		if o == n {
			continue
		}
		if pls.IsPrivilegedCreator(ev.Sender()) {
			// Case "creators/creator changes notifications above 100".
			return "creator's power ignored for notifications"
		}
		if o == senderLevel {
			// Case "power levels/moderator changes notifications at their
			// level": the spec refuses only "If the current value is
			// greater than the sender's current power level".
			return "notifications entry at the sender's level"
		}
	}
	return ""
}

// fillDefaults gives both contents every named level and every entry
// either has, absent ones at their default, as gomatrixserverlib compares
// them: entries of events at events_default, of users at users_default, of
// notifications at 50.
func fillDefaults(oldP, newP plContent) (plContent, plContent) {
	fill := func(p, other plContent) plContent {
		var out plContent
		for i := range p.named {
			l := namedLevelDefaults[i]
			if p.named[i].set {
				l = p.named[i].v
			}
			out.named[i] = optLevel{v: l, set: true}
		}
		withDefault := func(m, o map[string]int64, def int64) map[string]int64 {
			res := map[string]int64{}
			for k := range unionKeys(m, o) {
				if l, ok := m[k]; ok {
					res[k] = l
				} else {
					res[k] = def
				}
			}
			return res
		}
		out.users = withDefault(p.users, other.users, out.named[levelUsersDefault].v)
		out.events = withDefault(p.events, other.events, out.named[levelEventsDefault].v)
		out.notifications = withDefault(p.notifications, other.notifications, defaultRoomNotificationLevel)
		return out
	}
	return fill(oldP, newP), fill(newP, oldP)
}

func unionKeys(a, b map[string]int64) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// floatIn reports whether JSON holds a number with a fraction or exponent.
func floatIn(raw []byte) bool {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return false
	}
	var walk func(any) bool
	walk = func(x any) bool {
		switch y := x.(type) {
		case json.Number:
			return strings.ContainsAny(string(y), ".eE")
		case map[string]any:
			for _, e := range y {
				if walk(e) {
					return true
				}
			}
		case []any:
			for _, e := range y {
				if walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}
