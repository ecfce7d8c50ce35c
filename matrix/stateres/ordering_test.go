package stateres

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// Unit tests of the orderings with injected auth functions: allowAll makes
// the order of the iterative auth checks, which recordingAllowed captures,
// the only thing that decides the result.

func resolveRecording(t *testing.T, r *testRoom, info event.RoomVersionInfo, inner AllowedFunc, states ...StateMap) (StateMap, []string) {
	t.Helper()
	rec := &recordingAllowed{inner: inner}
	got, err := Resolver{Allowed: rec.allowed}.Resolve(info, states, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	return got, rec.seen
}

// The reverse topological power ordering breaks ties by the sender's power
// level (higher first, read from the event's own auth events), then
// origin_server_ts, then event ID.
func TestPowerOrderingTieBreaks(t *testing.T) {
	for _, v := range []event.RoomVersion{"10", "12"} {
		t.Run("v"+string(v), func(t *testing.T) {
			r, b := newRoom(t, v, map[string]int{bob: 50, charlie: 50, dave: 0})
			for _, u := range []struct{ name, id string }{{"bob", bob}, {"charlie", charlie}, {"dave", dave}} {
				b.send(u.name+"-join", u.id, "m.room.member", u.id, member("join"))
			}
			jr := func(name, sender string, ts int64) StateMap {
				f := b.fork()
				r.clock = ts
				f.send(name, sender, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
				return f.state
			}
			states := []StateMap{
				jr("bob-jr", bob, 100),
				jr("c-jr", charlie, 50),
				jr("dave-jr", dave, 10),
				jr("alice-jr", alice, 1000),
			}
			f := b.fork()
			r.clock = 50
			f.send("c-pl", charlie, "m.room.power_levels", "", powerLevelsContent(map[string]int{charlie: 50}))
			states = append(states, f.state)

			_, seen := resolveRecording(t, r, r.info, allowAll, states...)
			// pl0 and jr-public are conflicted too (one set changed each)
			// and come first: every other event has them in its auth chain.
			// The joins of bob, charlie and dave are unconflicted but in the
			// auth difference (each is cited only by its sender's events, in
			// some of the sets), so they are in X and sorted like the rest.
			want := []string{
				"$pl0", "$jr-public",
				"$alice-jr",                  // 100
				"$bob-join", "$charlie-join", // 50, timestamps 5 and 6
				"$c-jr", "$c-pl", "$bob-jr", // 50, timestamps 50, 50, 100
				"$dave-join", "$dave-jr", // 0
			}
			if !slices.Equal(seen, want) {
				t.Errorf("checked %v,\nwant    %v", seen, want)
			}
		})
	}
}

// The DAG comes before the tie-breaks: Alice's join rules cite Bob's power
// levels, so they wait for them although Alice's level is the highest and
// Bob's the lowest.
func TestPowerOrderingTopologyFirst(t *testing.T) {
	r, b := newRoom(t, "10", map[string]int{bob: 40, charlie: 50})
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	b.send("charlie-join", charlie, "m.room.member", charlie, member("join"))
	a, c := b.fork(), b.fork()
	r.clock = 10
	a.send("bob-pl", bob, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 40, charlie: 50}))
	r.clock = 20
	a.send("alice-jr", alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	r.clock = 5
	c.send("charlie-jr", charlie, "m.room.join_rules", "", map[string]any{"join_rule": "knock"})

	_, seen := resolveRecording(t, r, r.info, allowAll, a.state, c.state)
	// X: pl0 (conflicted), the two join rules, bob-pl, and the joins of Bob
	// and Charlie (unconflicted, but each in one set's auth chain only).
	want := []string{"$pl0", "$charlie-join", "$charlie-jr", "$bob-join", "$bob-pl", "$alice-jr"}
	if !slices.Equal(seen, want) {
		t.Errorf("checked %v,\nwant    %v", seen, want)
	}
}

// The power ordering is a topological ordering of the auth DAG, so an event
// follows every event of X in its auth chain, also when the path between
// them runs through an event outside the full conflicted set. Here Alice's
// join rules cite pl1, an unconflicted power levels event sent by Bob,
// which cites Bob's first join; that join is conflicted (Bob renamed
// himself on one side) and so in X: "For each such power event P, enlarge X
// by adding the events in the auth chain of P which also belong to the full
// conflicted set" (rooms/v2). Its late timestamp would put it last; the
// auth chain puts it before Alice's join rules.
//
// gomatrixserverlib (like Synapse) follows auth events only through
// conflicted events when it enlarges X, so Bob's join stays out of X there
// and is ordered by the mainline instead.
func TestPowerOrderingFollowsAuthChainThroughNonConflictedEvents(t *testing.T) {
	r, b := newRoom(t, "10", map[string]int{bob: 100})
	r.clock = 5000
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	r.clock = 10
	b.send("pl1", bob, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 100, charlie: 1}))
	renamed, jr := b.fork(), b.fork()
	renamed.send("bob-renames", bob, "m.room.member", bob, map[string]any{"membership": "join", "displayname": "B"})
	jr.send("alice-jr", alice, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})

	_, seen := resolveRecording(t, r, r.info, allowAll, renamed.state, jr.state)
	// X: alice-jr, the conflicted jr-public, and bob-join (in alice-jr's
	// auth chain via pl1). jr-public (ts 4) comes first, then bob-join
	// because alice-jr's chain holds it, then alice-jr. The mainline phase
	// then checks bob-renames.
	want := []string{"$jr-public", "$bob-join", "$alice-jr", "$bob-renames"}
	if !slices.Equal(seen, want) {
		t.Errorf("checked %v,\nwant    %v", seen, want)
	}
}

// The mainline ordering sorts by the position of the closest mainline power
// levels event in each event's power levels ancestry (further back first,
// with no power levels at all first of all), then origin_server_ts, then
// event ID.
func TestMainlineOrdering(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	// A topic sent before any power levels event: mainline position infinite.
	early := &branch{r: r, state: StateMap{{"m.room.create", ""}: "$create", memberKey(alice): "$alice-join"}, heads: []string{"$alice-join"}, depth: 2}
	r.clock = 900
	early.send("topic-early", alice, "m.room.topic", "", map[string]any{"topic": "e"})
	topic := func(name string, ts int64) string {
		f := b.fork()
		r.clock = ts
		return f.send(name, alice, "m.room.topic", "", map[string]any{"topic": name})
	}
	topicA := topic("topic-a", 800) // cites pl0
	b.send("pl1", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 1}))
	topicB := topic("topic-b", 700) // cites pl1
	b.send("pl2", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 2}))
	// Bob's join cites pl2 in every set, which keeps pl2 out of the auth
	// difference (else it would be replayed as a power event).
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	topicD := topic("topic-d", 600) // cites pl2
	topicC := topic("topic-c", 600) // cites pl2, same timestamp

	var states []StateMap
	for _, id := range []string{"$topic-early", topicA, topicB, topicC, topicD} {
		s := maps.Clone(b.state)
		s[topicKey] = id
		states = append(states, s)
	}

	// v2: the mainline of the resolved (unconflicted) pl2 is pl2, pl1, pl0.
	got, seen := resolveRecording(t, r, r.info, allowAll, states...)
	want := []string{"$topic-early", "$topic-a", "$topic-b", "$topic-c", "$topic-d"}
	if !slices.Equal(seen, want) {
		t.Errorf("v2: checked %v,\nwant       %v", seen, want)
	}
	wantState(t, got, map[StateKey]string{topicKey: "$topic-d", plKey: "$pl2"})

	// v2.1 starts the iterative auth checks from an empty state, so with the
	// power levels unconflicted the partially resolved state has none: every
	// position is infinite and the timestamps decide.
	info := r.info
	info.StateRes = event.StateResV2_1
	got, seen = resolveRecording(t, r, info, allowAll, states...)
	want = []string{"$topic-c", "$topic-d", "$topic-b", "$topic-a", "$topic-early"}
	if !slices.Equal(seen, want) {
		t.Errorf("v2.1: checked %v,\nwant         %v", seen, want)
	}
	wantState(t, got, map[StateKey]string{topicKey: "$topic-early", plKey: "$pl2"})
}

// The mainline is that of the power levels event the power phase resolved,
// and an event's position is that of the first mainline event in its power
// levels ancestry: an event citing a power levels event off the mainline
// takes the position of that event's mainline ancestor.
func TestMainlineOffMainlineAncestry(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	b.send("pl1", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 1}))
	side, main := b.fork(), b.fork()
	side.send("pl-side", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 3}))
	r.clock = 100
	side.send("topic-side", alice, "m.room.topic", "", map[string]any{"topic": "side"}) // cites pl-side
	main.send("pl2", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 2}))
	r.clock = 50
	main.send("topic-main", alice, "m.room.topic", "", map[string]any{"topic": "main"}) // cites pl2

	// pl-side is refused, so pl2 is the resolved power levels and its
	// mainline is pl2, pl1, pl0. topic-side reaches it through pl-side at
	// pl1 (position 1), topic-main at pl2 (position 0): topic-side first
	// although it is later by the clock.
	got, seen := resolveRecording(t, r, r.info, refuse("$pl-side"), side.state, main.state)
	want := []string{"$pl-side", "$pl2", "$topic-side", "$topic-main"}
	if !slices.Equal(seen, want) {
		t.Errorf("checked %v,\nwant    %v", seen, want)
	}
	wantState(t, got, map[StateKey]string{plKey: "$pl2", topicKey: "$topic-main"})
}

// The iterative auth checks answer from the partially resolved state first
// and fall back to the event's own auth events, skipping rejected ones.
func TestIterativeAuthChecksState(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	// Bob's name event cites bob-join in every set, which keeps bob-join
	// out of the auth difference below.
	b.send("bob-name", bob, "m.room.name", "", map[string]any{"name": "n"})
	renamed, topic := b.fork(), b.fork()
	renamed.send("bob-renames", bob, "m.room.member", bob, map[string]any{"membership": "join", "displayname": "B"})
	topic.send("bob-topic", bob, "m.room.topic", "", map[string]any{"topic": "t"})

	// The sender's membership that each check was shown.
	shown := map[string]string{}
	look := func(ev *event.Event, auth authrules.AuthEvents) error {
		id := "none"
		if m := auth.Get("m.room.member", ev.Sender()); m != nil {
			id = m.EventID()
		}
		shown[ev.EventID()] = id
		return nil
	}

	// v2: Bob's key is conflicted; bob-join and bob-renames are applied
	// before bob-topic (earlier timestamps), so the topic is checked
	// against bob-renames, not its own auth event bob-join.
	if _, err := (Resolver{Allowed: look}).Resolve(r.info, []StateMap{renamed.state, topic.state}, nil, r); err != nil {
		t.Fatal(err)
	}
	if shown["$bob-topic"] != "$bob-renames" {
		t.Errorf("bob-topic was checked against %s, want the partially resolved $bob-renames", shown["$bob-topic"])
	}

	// With Bob's key unconflicted (same in both sets) and v2.1's empty
	// start, the topic falls back to its auth event, unless that is
	// rejected.
	both := topic.state
	alices := b.fork()
	alices.send("alice-topic", alice, "m.room.topic", "", map[string]any{"topic": "a"})
	other := alices.state
	info := r.info
	info.StateRes = event.StateResV2_1
	clear(shown)
	if _, err := (Resolver{Allowed: look}).Resolve(info, []StateMap{both, other}, nil, r); err != nil {
		t.Fatal(err)
	}
	if shown["$bob-topic"] != "$bob-join" {
		t.Errorf("bob-topic was checked against %s, want its auth event $bob-join", shown["$bob-topic"])
	}
	r.rejected["$bob-join"] = true
	clear(shown)
	if _, err := (Resolver{Allowed: look}).Resolve(info, []StateMap{both, other}, nil, r); err != nil {
		t.Fatal(err)
	}
	if shown["$bob-topic"] != "none" {
		t.Errorf("bob-topic was checked against %s, want nothing: its auth event is rejected", shown["$bob-topic"])
	}
}

// Refused events are skipped and the key keeps what was there before.
func TestIterativeAuthChecksSkipRefused(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	x, y := b.fork(), b.fork()
	r.clock = 10
	x.send("topic-x", alice, "m.room.topic", "", map[string]any{"topic": "x"})
	r.clock = 20
	y.send("topic-y", alice, "m.room.topic", "", map[string]any{"topic": "y"})
	got, _ := resolveRecording(t, r, r.info, allowAll, x.state, y.state)
	wantState(t, got, map[StateKey]string{topicKey: "$topic-y"})
	got, _ = resolveRecording(t, r, r.info, refuse("$topic-y"), x.state, y.state)
	wantState(t, got, map[StateKey]string{topicKey: "$topic-x"})
	got, _ = resolveRecording(t, r, r.info, refuse("$topic-x", "$topic-y"), x.state, y.state)
	wantState(t, got, map[StateKey]string{topicKey: ""})
}

// Step 5: the unconflicted state wins over whatever the checks applied at
// its keys (here an older power levels event in the auth difference).
func TestUnconflictedStateReapplied(t *testing.T) {
	r, b := newRoom(t, "10", map[string]int{bob: 50})
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	x, y := b.fork(), b.fork()
	x.send("pl1", alice, "m.room.power_levels", "", powerLevelsContent(map[string]int{alice: 100, bob: 10}))
	x.send("topic-x", alice, "m.room.topic", "", map[string]any{"topic": "x"})
	y.send("topic-y", alice, "m.room.topic", "", map[string]any{"topic": "y"})
	// Pretend both sets agree on pl0 although x's topic cites pl1: pl1 is
	// then in the auth difference and applied by the checks, but the
	// unconflicted pl0 is what the result holds.
	xs := maps.Clone(x.state)
	xs[plKey] = "$pl0"
	got, seen := resolveRecording(t, r, r.info, allowAll, xs, y.state)
	if !slices.Contains(seen, "$pl1") {
		t.Errorf("pl1 (auth difference) was not checked: %v", seen)
	}
	wantState(t, got, map[StateKey]string{plKey: "$pl0"})
}

func TestResolveEdgeCases(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	info := r.info

	got, err := Resolve(info, nil, nil, r)
	if err != nil || len(got) != 0 {
		t.Errorf("no state sets: %v, %v", got, err)
	}
	got, err = Resolve(info, []StateMap{b.state}, nil, r)
	if err != nil || diffStates(got, b.state) != "" {
		t.Errorf("one state set: %v", err)
	}
	got[topicKey] = "$x"
	if _, ok := b.state[topicKey]; ok {
		t.Error("the result aliases the input")
	}
	if _, err := Resolve(info, []StateMap{b.state, b.state}, [][]string{nil}, r); err == nil {
		t.Error("mismatched auth chains accepted")
	}
	if _, err := Resolve(event.RoomVersionInfo{ID: "x"}, []StateMap{b.state, b.state}, nil, r); err == nil {
		t.Error("unknown algorithm accepted")
	}
	if _, err := Resolve(info, []StateMap{b.state, b.state}, nil, nil); err == nil {
		t.Error("nil provider accepted")
	}

	// Identical sets resolve to themselves without fetching anything.
	r.fetches = 0
	got, err = Resolver{Allowed: allowAll}.Resolve(info, []StateMap{b.state, b.state}, [][]string{{"$create"}, {"$create"}}, r)
	if err != nil || diffStates(got, b.state) != "" || r.fetches != 0 {
		t.Errorf("identical sets: %v (fetched %d events)", err, r.fetches)
	}
}

func TestMissingEvents(t *testing.T) {
	for _, v := range []event.RoomVersion{"1", "10", "12"} {
		t.Run("v"+string(v), func(t *testing.T) {
			r, b := newRoom(t, v, nil)
			x, y := b.fork(), b.fork()
			x.send("topic-x", alice, "m.room.topic", "", map[string]any{"topic": "x"})
			y.send("topic-y", alice, "m.room.topic", "", map[string]any{"topic": "y"})

			// A state event that cannot be had.
			ys := maps.Clone(y.state)
			ys[topicKey] = "$nowhere"
			if _, err := (Resolver{Allowed: allowAll}).Resolve(r.info, []StateMap{x.state, ys}, nil, r); !errors.Is(err, ErrMissingEvent) {
				t.Errorf("missing state event: %v, want ErrMissingEvent", err)
			}
			// An auth chain event that cannot be had.
			if v != "1" {
				delete(r.events, "$alice-join")
				if _, err := (Resolver{Allowed: allowAll}).Resolve(r.info, []StateMap{x.state, y.state}, nil, r); !errors.Is(err, ErrMissingEvent) {
					t.Errorf("missing auth event: %v, want ErrMissingEvent", err)
				}
			}
			// A provider that answers nil, nil.
			nilProvider := providerFunc(func(id string) (*event.Event, error) { return nil, nil })
			if _, err := (Resolver{Allowed: allowAll}).Resolve(r.info, []StateMap{x.state, y.state}, nil, nilProvider); !errors.Is(err, ErrMissingEvent) {
				t.Errorf("nil event: %v, want ErrMissingEvent", err)
			}
		})
	}
}

type providerFunc func(id string) (*event.Event, error)

func (f providerFunc) Event(id string) (*event.Event, error) { return f(id) }

// With auth chains supplied the resolver does not need the unconflicted
// state's events, which a large room has many of.
func TestLazyFetching(t *testing.T) {
	r, b := newRoom(t, "10", nil)
	for i := range 200 {
		u := "@u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ":example.org"
		b.send("join-"+u, u, "m.room.member", u, member("join"))
	}
	x, y := b.fork(), b.fork()
	x.send("topic-x", alice, "m.room.topic", "", map[string]any{"topic": "x"})
	y.send("topic-y", alice, "m.room.topic", "", map[string]any{"topic": "y"})
	chains := [][]string{r.fullAuthChain(x.state), r.fullAuthChain(y.state)}
	r.fetches = 0
	if _, err := (Resolver{Allowed: allowAll}).Resolve(r.info, []StateMap{x.state, y.state}, chains, r); err != nil {
		t.Fatal(err)
	}
	if r.fetches > 10 {
		t.Errorf("fetched %d events to resolve one conflict", r.fetches)
	}
}

func TestPowerValue(t *testing.T) {
	v1, _ := event.RoomVersion("1").Info()
	v9, _ := event.RoomVersion("9").Info()
	v10, _ := event.RoomVersion("10").Info()
	for _, c := range []struct {
		raw  string
		v    event.RoomVersionInfo
		want int64
		ok   bool
	}{
		{`50`, v10, 50, true},
		{`-5`, v10, -5, true},
		{`"50"`, v10, 0, false},
		{`50.5`, v10, 0, false},
		{`"50"`, v9, 50, true},
		{`" +0050 "`, v9, 50, true},
		{`"-100"`, v9, -100, true},
		{`"1.5"`, v9, 0, false},
		{`"+-1"`, v9, 0, false},
		{`""`, v9, 0, false},
		{`50.57`, v1, 50, true},
		{`5.114698E4`, v1, 51146, true},
		{`true`, v1, 0, false},
		{`null`, v1, 0, false},
	} {
		got, ok := powerValue([]byte(c.raw), c.v)
		if got != c.want || ok != c.ok {
			t.Errorf("powerValue(%s, v%s) = %d, %v; want %d, %v", c.raw, c.v.ID, got, ok, c.want, c.ok)
		}
	}
}

// The sender's power level for the ordering comes from the event's own auth
// events: its power levels event, else 100 for the creator; in room
// version 12 creators are above any level.
func TestSenderPower(t *testing.T) {
	for _, c := range []struct {
		v          event.RoomVersion
		wantAlice  int64 // creator
		wantBob    int64 // 30 in pl0
		wantBefore int64 // creator, event citing no power levels
	}{
		{"1", 100, 30, 100},
		{"11", 100, 30, 100},
		{"12", creatorPower, 30, creatorPower},
	} {
		r, b := newRoom(t, c.v, map[string]int{bob: 30})
		b.send("bob-join", bob, "m.room.member", bob, member("join"))
		b.send("alice-topic", alice, "m.room.topic", "", map[string]any{"topic": "t"})
		b.send("bob-topic", bob, "m.room.topic", "", map[string]any{"topic": "t"})
		g := newGraph(r.info, r, 0)
		for id, want := range map[string]int64{"$alice-topic": c.wantAlice, "$bob-topic": c.wantBob, "$alice-join": c.wantBefore} {
			i := g.intern(id)
			if err := g.load(i); err != nil {
				t.Fatal(err)
			}
			got, err := g.senderPower(i)
			if err != nil || got != want {
				t.Errorf("v%s %s: power %d, %v; want %d", c.v, id, got, err, want)
			}
		}
	}
}
