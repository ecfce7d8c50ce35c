package stateres

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// Named tests of where gomatrixserverlib (at the version in go.mod) and the
// spec part ways, one per quirk of emulation_test.go. Each resolves a small
// room with the spec (our resolver, with gomatrixserverlib's auth rules so
// that only the algorithm differs, and with ours when they are ready),
// checks that gomatrixserverlib really answers otherwise, and that the
// quirk's model reproduces its answer. The spec decides; the comments quote
// it. Should gomatrixserverlib change, these tests say which difference
// went away.

// checkDifference asserts the spec's answer and gomatrixserverlib's at one
// key.
func checkDifference(t *testing.T, r *testRoom, q quirk, key StateKey, spec, theirs string, states ...StateMap) {
	t.Helper()
	for _, impl := range authImpls {
		t.Run(impl.name, func(t *testing.T) {
			got := r.resolve(impl.allowed(t), states...)
			if got[key] != spec {
				t.Errorf("spec: (%s, %q) = %q, want %q", key.Type, key.StateKey, got[key], spec)
			}
		})
	}
	got, err := gmslResolve(t, r, r.info.StateRes, states)
	if err != nil {
		t.Fatal(err)
	}
	if got[key] != theirs {
		t.Errorf("gomatrixserverlib: (%s, %q) = %q, want %q (has it changed?)", key.Type, key.StateKey, got[key], theirs)
	}
	model, err := withQuirks(gmslAllowed(t), q).Resolve(r.info, states, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	if model[key] != theirs {
		t.Errorf("model of %s: (%s, %q) = %q, want gomatrixserverlib's %q", q, key.Type, key.StateKey, model[key], theirs)
	}
}

// rooms/v2, "Reverse topological power ordering": "The reverse topological
// power ordering can be found by sorting the events using Kahn's algorithm
// for topological sorting, and at each step selecting, among all the
// candidate vertices, the smallest vertex using the above comparison
// relation", from "earliest event to latest".
//
// Alice kicks Eve while, concurrently, she steps down (removes her own power
// level). After pl0 the candidates are Eve's join (power 0), which the kick
// needs first, and Alice's step-down (100): the step-down is the smallest
// and goes first, so the kick then fails. gomatrixserverlib runs Kahn's
// algorithm from the latest events, taking the greatest each time and
// prepending it; as the step-down is the later of Alice's two events, that
// order puts it last and the kick stands.
func TestDiffLexicographicallySmallestOrder(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	b.send("eve-join", eve, "m.room.member", eve, member("join"))
	stepDown, kick := b.fork(), b.fork()
	kick.send("alice-kicks-eve", alice, "m.room.member", eve, member("leave"))
	stepDown.send("alice-steps-down", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{bob: 50}))
	checkDifference(t, r, quirkReverseKahn, memberKey(eve), "$eve-join", "$alice-kicks-eve", stepDown.state, kick.state)
}

// rooms/v2, "Algorithm", step 1: "Select the set X of all power events that
// appear in the full conflicted set. For each such power event P, enlarge X
// by adding the events in the auth chain of P which also belong to the full
// conflicted set." And "The full conflicted set is the union of the
// conflicted state set and the auth difference."
//
// Eve invites Charlie; on one side Charlie then joins and Dave kicks him.
// Charlie's join is only in that side's auth chain, so it is in the auth
// difference (not conflicted); it is in the kick's auth chain, and so is
// the invite through it: X holds invite, join and kick, replayed in that
// order, and the kick stands. gomatrixserverlib enlarges X only through
// conflicted events, stops at the join, and replays the invite and the join
// after the kick, in the mainline phase: Charlie is back in.
func TestDiffAuthDifferenceEventsJoinPowerSet(t *testing.T) {
	r, b := newRoom(t, "10", map[string]int{dave: 50})
	b.send("dave-join", dave, "m.room.member", dave, member("join"))
	b.send("eve-join", eve, "m.room.member", eve, member("join"))
	b.send("jr-invite", alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	b.send("eve-invites-charlie", eve, "m.room.member", charlie, member("invite"))
	invited, kicked := b, b.fork()
	kicked.send("charlie-joins", charlie, "m.room.member", charlie, member("join"))
	kicked.send("dave-kicks-charlie", dave, "m.room.member", charlie, member("leave"))
	// The side that only saw the invite sent something else meanwhile.
	invited.send("alice-topic", alice, "m.room.topic", "", map[string]any{"topic": "t"})
	checkDifference(t, r, quirkPowerSetThroughConflicted, memberKey(charlie), "$dave-kicks-charlie", "$charlie-joins", invited.state, kicked.state)
}

// rooms/v2, "Auth difference": "calculating the full auth chain for each
// state S_i, that is the union of the auth chains for each event in S_i,
// and then taking every event that doesn't appear in every auth chain", and
// "The auth chain of an event E is the set containing all of E's auth
// events, all of their auth events, and so on". An event of the
// unconflicted state map that some set's events cite and another's do not
// is in the auth difference, hence in the full conflicted set, and is
// replayed like the rest.
//
// After pl1 the room forked: on one side Alice sent pl-side and Bob a
// topic; on the other Alice sent pl2. A merge resolved the power levels to
// pl2 and kept Bob's topic: that merged state is one state set. The other
// is the pl2 side after Alice set a topic of her own. pl2 is unconflicted
// but only the second set cites it, so it is in the auth difference with
// pl-side: both are replayed, pl2 last, the mainline is pl2's, Bob's topic
// (under pl1 there) comes before Alice's (under pl2) and Alice's wins.
// gomatrixserverlib leaves unconflicted events out of the full conflicted
// set: it replays pl-side only, takes pl-side's mainline, on which Bob's
// topic comes last, and Bob's wins.
func TestDiffUnconflictedEventsInAuthDifference(t *testing.T) {
	r, b := newRoom(t, "10", map[string]int{bob: 50})
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	b.send("pl1", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 50, charlie: 1}))
	side, main := b.fork(), b.fork()
	side.send("pl-side", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 50, dave: 5}))
	side.send("bob-topic", bob, "m.room.topic", "", map[string]any{"topic": "bob's"})
	main.send("pl2", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 50, charlie: 10}))
	merged := main.fork().state
	merged[topicKey] = "$bob-topic"
	main.send("alice-topic", alice, "m.room.topic", "", map[string]any{"topic": "alice's"})
	checkDifference(t, r, quirkUnconflictedNotFull, topicKey, "$alice-topic", "$bob-topic", merged, main.state)
}

// rooms/v2, "Mainline ordering": "Find the smallest index j ≥ 1 for which
// e_j belongs to the mainline of P. If such a j exists, then e_j = P_i for
// some unique index i ≥ 0. Otherwise set i = ∞", and events with a greater
// position come first.
//
// Alice's first topic was sent before the room had power levels (its clock
// was late); a concurrent topic cites pl0, the oldest mainline event. The
// first has position ∞ and goes first, so the second wins.
// gomatrixserverlib gives it the position of the oldest mainline event,
// the timestamps decide, and the first wins.
func TestDiffMainlinePositionInfinity(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	early := &branch{r: r, state: StateMap{{"m.room.create", ""}: "$create", memberKey(alice): "$alice-join"}, heads: []string{"$alice-join"}, depth: 2}
	r.clock = 500
	early.send("topic-before-pl", alice, "m.room.topic", "", map[string]any{"topic": "early"})
	r.clock = 300
	b.send("topic-after-pl", alice, "m.room.topic", "", map[string]any{"topic": "late"})
	other := b.fork().state
	other[topicKey] = "$topic-before-pl"
	checkDifference(t, r, quirkMainline, topicKey, "$topic-after-pl", "$topic-before-pl", b.state, other)
}

// rooms/v2, "Mainline ordering": with equal mainline positions, "x's
// origin_server_ts is less than y's origin_server_ts" decides; how many
// power levels events lie between an event and the mainline is no
// criterion.
//
// Two topics reach the mainline at pl1, one directly, one through a power
// levels event that lost (pl-side). By timestamp the direct one is later
// and wins. gomatrixserverlib first sorts by the number of power levels
// events walked, puts the direct one first, and the other wins.
func TestDiffMainlineNoStepCount(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	b.send("pl1", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 1}))
	side, main := b.fork(), b.fork()
	r.clock = 50
	side.send("pl-side", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 3}))
	r.clock = 100
	side.send("topic-via-side", alice, "m.room.topic", "", map[string]any{"topic": "side"})
	r.clock = 200
	main.send("topic-direct", alice, "m.room.topic", "", map[string]any{"topic": "direct"})
	r.clock = 300
	main.send("pl2", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 2}))
	checkDifference(t, r, quirkMainline, topicKey, "$topic-direct", "$topic-via-side", side.state, main.state)
}

// rooms/v2, "Reverse topological power ordering": "x's sender has greater
// power level than y's sender, when looking at their respective
// auth_events". With no power levels event among them, the power level is
// what the auth rules give: "In room versions 1 through 11, when there is
// no m.room.power_levels event in the room, the room creator has a power
// level of 100" (m.room.power_levels, users_default).
//
// Alice set the join rules before the power levels existed; a faulty state
// set still has those join rules, the other has Bob's later ones. Alice's
// (100, the creator) sort before Bob's (50), which then win.
// gomatrixserverlib counts 0 for Alice there, sorts Bob's first, and
// Alice's win.
func TestDiffCreatorPowerWithoutPowerLevels(t *testing.T) {
	r, _ := newRoom(t, "10", nil)
	// A room whose join rules came before its power levels.
	b := &branch{r: r, state: StateMap{{"m.room.create", ""}: "$create", memberKey(alice): "$alice-join"}, heads: []string{"$alice-join"}, depth: 2}
	b.send("jr-before-pl", alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	b.send("pl", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 50}))
	b.send("jr-again", alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	b.send("bob-joins", bob, "m.room.member", bob, member("join"))
	b.send("bob-jr", bob, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	faulty := b.fork().state
	faulty[jrKey] = "$jr-before-pl"
	checkDifference(t, r, quirkNoCreatorPower, jrKey, "$bob-jr", "$jr-before-pl", b.state, faulty)
}

// rooms/v2, "Iterative auth checks": "If a (event_type, state_key) key
// that is required for checking the authorisation rules is not present in
// the state, then the appropriate state event from the event's auth_events
// is used if the auth event is not rejected."
//
// Bob, a moderator, makes the room invite-only, then renames himself; on
// the other side he renamed himself differently. His membership key is
// conflicted and not yet resolved when his join rules are checked, so his
// join from the join rules' auth events is used and they stand.
// gomatrixserverlib puts the checked event itself in place of that auth
// event (authAndApplyEvents adds `event`, not `authEv`), finds Bob not in
// the room, and drops the join rules.
func TestDiffAuthEventsFallback(t *testing.T) {
	r, b := newRoom(t, "10", map[string]int{bob: 50})
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	a, c := b.fork(), b.fork()
	a.send("bob-jr", bob, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	a.send("bob-renames", bob, "m.room.member", bob, map[string]any{"membership": "join", "displayname": "B"})
	c.send("bob-renames-too", bob, "m.room.member", bob, map[string]any{"membership": "join", "displayname": "Bee"})
	checkDifference(t, r, quirkBrokenAuthFallback, jrKey, "$bob-jr", "$jr-public", a.state, c.state)
}

// gomatrixserverlib's v2.1 cannot resolve a room version 12 conflict that
// involves a power event: it computes the senders' power levels from a
// create event it only knows once the unconflicted state is applied, which
// v2.1 no longer does first, and panics. Ours resolves it.
func TestDiffGMSLV21RoomV12Panics(t *testing.T) {
	r, b := newRoom(t, "12", map[string]int{bob: 50})
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	a, c := b.fork(), b.fork()
	a.send("bob-jr", bob, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	c.send("alice-jr", alice, "m.room.join_rules", "", map[string]any{"join_rule": "knock"})
	got := r.resolve(gmslAllowed(t), a.state, c.state)
	// Alice (a creator: infinite power) sorts first; Bob's change, later in
	// the order, wins.
	wantState(t, got, map[StateKey]string{jrKey: "$bob-jr"})
	if _, err := gmslResolve(t, r, event.StateResV2_1, []StateMap{a.state, c.state}); err == nil || !strings.Contains(err.Error(), "missing resolved create event") {
		t.Errorf("gomatrixserverlib: %v, want its panic (has it changed?)", err)
	}
}
