package stateres

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// The tests build rooms by hand: events with readable IDs ("$alice-join"),
// sent on branches of the DAG that carry their own state, so that a test
// reads like the story it tells.

const (
	alice   = "@alice:example.org"
	bob     = "@bob:example.org"
	charlie = "@charlie:example.org"
	dave    = "@dave:example.org"
	eve     = "@eve:example.org"
	zara    = "@zara:example.org"
)

// testRoom holds every event of a hand-built room and is its EventProvider.
type testRoom struct {
	t        testing.TB
	version  event.RoomVersion
	info     event.RoomVersionInfo
	roomID   string
	createID string
	events   map[string]*event.Event
	rejected map[string]bool
	clock    int64 // origin_server_ts of the next event; each event advances it
	fetches  int   // calls of Event, to check that providers are used sparingly
	mu       sync.Mutex
}

// Event implements EventProvider.
func (r *testRoom) Event(id string) (*event.Event, error) {
	r.mu.Lock()
	r.fetches++
	r.mu.Unlock()
	ev, ok := r.events[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrMissingEvent, id)
	}
	return ev, nil
}

// IsRejected implements RejectionProvider.
func (r *testRoom) IsRejected(id string) bool { return r.rejected[id] }

// v12CreateID turns a readable name into a create event ID whose derived
// room ID has the 43 URL-safe base64 characters that room version 12
// requires (and gomatrixserverlib checks).
func v12CreateID(name string) string {
	return "$" + name + strings.Repeat("_", 43-len(name))
}

// newRoom starts a room: the create event by alice, alice's join, power
// levels giving alice 100 and the given users their levels, and public
// join rules. It returns the branch after those events.
func newRoom(t testing.TB, version event.RoomVersion, levels map[string]int) (*testRoom, *branch) {
	t.Helper()
	info, err := version.Info()
	if err != nil {
		t.Fatal(err)
	}
	r := &testRoom{t: t, version: version, info: info, events: map[string]*event.Event{}, rejected: map[string]bool{}, clock: 1}
	r.createID = "$create"
	r.roomID = "!room:example.org"
	if info.CreateEventIsRoomID {
		r.createID = v12CreateID("create")
		r.roomID = "!" + r.createID[1:]
	}
	b := &branch{r: r, state: StateMap{}}
	createContent := map[string]any{"room_version": string(version)}
	if !info.CreatorFromSender {
		createContent["creator"] = alice
	}
	b.sendID(r.createID, alice, "m.room.create", "", createContent)
	b.send("alice-join", alice, "m.room.member", alice, member("join"))
	users := map[string]int{alice: 100}
	if info.PrivilegedCreators {
		// Creators cannot be listed in room version 12.
		delete(users, alice)
	}
	for u, l := range levels {
		users[u] = l
	}
	b.send("pl0", alice, "m.room.power_levels", "", powerLevelsContent(users))
	b.send("jr-public", alice, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	return r, b
}

func member(membership string) map[string]any { return map[string]any{"membership": membership} }

func powerLevelsContent(users map[string]int) map[string]any {
	return map[string]any{
		"users": users, "users_default": 0,
		"events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"events": map[string]int{"m.room.power_levels": 100},
	}
}

// branch is one line of the DAG: the state after its latest events.
type branch struct {
	r     *testRoom
	state StateMap
	heads []string
	depth int64
}

func (b *branch) fork() *branch {
	return &branch{r: b.r, state: maps.Clone(b.state), heads: slices.Clone(b.heads), depth: b.depth}
}

// send adds a state event named "$"+name on the branch and applies it to the
// branch's state. It returns the event ID.
func (b *branch) send(name, sender, typ, stateKey string, content map[string]any) string {
	return b.sendID("$"+name, sender, typ, stateKey, content)
}

func (b *branch) sendID(id, sender, typ, stateKey string, content map[string]any) string {
	ev := b.build(id, sender, typ, &stateKey, content)
	b.add(ev)
	return id
}

// build makes the event the way a server would: prev_events are the
// branch's heads and auth_events follow the auth events selection.
func (b *branch) build(id, sender, typ string, stateKey *string, content map[string]any) *event.Event {
	r := b.r
	r.t.Helper()
	if _, dup := r.events[id]; dup {
		r.t.Fatalf("duplicate event ID %s", id)
	}
	return r.makeEvent(id, sender, typ, stateKey, content, b.heads, b.authFor(sender, typ, stateKey, content), b.depth+1)
}

// add records an event and applies it to the branch.
func (b *branch) add(ev *event.Event) {
	b.r.events[ev.EventID()] = ev
	if k, ok := stateKeyOf(ev); ok {
		b.state[k] = ev.EventID()
	}
	b.heads = []string{ev.EventID()}
	b.depth = ev.Depth()
}

// authFor is the auth events selection of the server-server API.
func (b *branch) authFor(sender, typ string, stateKey *string, content map[string]any) []string {
	if typ == "m.room.create" {
		return nil
	}
	var out []string
	add := func(t, sk string) {
		if id, ok := b.state[StateKey{t, sk}]; ok && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if !b.r.info.CreateEventIsRoomID {
		add("m.room.create", "")
	}
	add("m.room.power_levels", "")
	add("m.room.member", sender)
	if typ == "m.room.member" && stateKey != nil {
		add("m.room.member", *stateKey)
		switch content["membership"] {
		case "join", "invite", "knock":
			add("m.room.join_rules", "")
		}
	}
	return out
}

// makeEvent writes the JSON of an event in the room version's format.
func (r *testRoom) makeEvent(id, sender, typ string, stateKey *string, content map[string]any, prev, auth []string, depth int64) *event.Event {
	r.t.Helper()
	refs := func(ids []string) any {
		if r.info.EventIDFormat != event.EventIDFormatV1 {
			return append([]string{}, ids...)
		}
		pairs := make([]any, 0, len(ids))
		for _, id := range ids {
			pairs = append(pairs, []any{id, map[string]string{"sha256": "aGFzaA"}})
		}
		return pairs
	}
	m := map[string]any{
		"type": typ, "sender": sender, "content": content,
		"prev_events": refs(prev), "auth_events": refs(auth),
		"depth": depth, "origin_server_ts": r.clock,
		"hashes":     map[string]string{"sha256": "aGFzaA"},
		"signatures": map[string]any{},
	}
	r.clock++
	if stateKey != nil {
		m["state_key"] = *stateKey
	}
	if !(r.info.CreateEventIsRoomID && typ == "m.room.create") {
		m["room_id"] = r.roomID
	}
	if r.info.EventIDFormat == event.EventIDFormatV1 {
		m["event_id"] = id
	}
	js, err := json.Marshal(m)
	if err != nil {
		r.t.Fatal(err)
	}
	ev, err := event.NewEventFromTrustedJSONWithEventID(id, js, r.version)
	if err != nil {
		r.t.Fatalf("building %s: %v", id, err)
	}
	return ev
}

// resolve runs our resolver on the given states with the given auth
// function (nil: authrules.Allowed).
func (r *testRoom) resolve(allowed AllowedFunc, states ...StateMap) StateMap {
	r.t.Helper()
	got, err := Resolver{Allowed: allowed}.Resolve(r.info, states, nil, r)
	if err != nil {
		r.t.Fatalf("resolve: %v", err)
	}
	// The explicit auth chains must give the same answer as the walk.
	chains := make([][]string, len(states))
	for i, s := range states {
		chains[i] = r.fullAuthChain(s)
	}
	got2, err := Resolver{Allowed: allowed}.Resolve(r.info, states, chains, r)
	if err != nil {
		r.t.Fatalf("resolve with auth chains: %v", err)
	}
	if d := diffStates(got, got2); d != "" {
		r.t.Fatalf("resolution with explicit auth chains differs:\n%s", d)
	}
	return got
}

// fullAuthChain is the union of the auth chains of a state's events, as the
// spec defines it, with the create event implied by a version 12 room ID.
func (r *testRoom) fullAuthChain(s StateMap) []string {
	seen := map[string]bool{}
	var stack []string
	push := func(ev *event.Event) {
		ids := ev.AuthEventIDs()
		if r.info.CreateEventIsRoomID && ev.EventID() != r.createID {
			ids = append([]string{r.createID}, ids...)
		}
		for _, a := range ids {
			if !seen[a] {
				seen[a] = true
				stack = append(stack, a)
			}
		}
	}
	for _, id := range s {
		push(r.events[id])
	}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		push(r.events[id])
	}
	out := slices.Collect(maps.Keys(seen))
	sort.Strings(out)
	return out
}

// diffStates describes how two states differ, or returns "".
func diffStates(a, b StateMap) string {
	keys := map[StateKey]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var lines []string
	for k := range keys {
		if a[k] != b[k] {
			lines = append(lines, fmt.Sprintf("  (%s, %q): %q vs %q", k.Type, k.StateKey, a[k], b[k]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// authImpl is an authorization rules implementation that scenario tests run
// the resolver with.
type authImpl struct {
	name    string
	allowed func(t testing.TB) AllowedFunc
}

// authImpls are gomatrixserverlib's auth rules (a stand-in so the algorithm
// can be tested on its own) and ours, once matrix/authrules implements them.
var authImpls = []authImpl{
	{"gmsl-authrules", func(t testing.TB) AllowedFunc { return gmslAllowed(t) }},
	{"authrules", func(t testing.TB) AllowedFunc {
		if !authrulesReady() {
			t.Skip("matrix/authrules does not implement the auth rules yet")
		}
		return authrules.Allowed
	}},
}

// authrulesReady reports whether authrules.Allowed implements the rules:
// it must allow a well-formed create event.
func authrulesReady() bool {
	js := []byte(`{"type":"m.room.create","state_key":"","sender":"@alice:example.org","room_id":"!room:example.org",` +
		`"content":{"creator":"@alice:example.org","room_version":"10"},"prev_events":[],"auth_events":[],"depth":1,` +
		`"origin_server_ts":1,"hashes":{"sha256":"aGFzaA"},"signatures":{}}`)
	ev, err := event.NewEventFromTrustedJSONWithEventID("$create", js, "10")
	if err != nil {
		return false
	}
	return authrules.Allowed(ev, noAuthEvents{}) == nil
}

type noAuthEvents struct{}

func (noAuthEvents) Get(string, string) *event.Event { return nil }

// recordingAllowed wraps an auth function and records the events it was
// asked about, in order.
type recordingAllowed struct {
	inner AllowedFunc
	seen  []string
}

func (r *recordingAllowed) allowed(ev *event.Event, auth authrules.AuthEvents) error {
	r.seen = append(r.seen, ev.EventID())
	return r.inner(ev, auth)
}

// allowAll allows every event: the resolved state is then decided by the
// orderings alone.
func allowAll(*event.Event, authrules.AuthEvents) error { return nil }

// refuse refuses the listed events and allows the rest.
func refuse(ids ...string) AllowedFunc {
	return func(ev *event.Event, _ authrules.AuthEvents) error {
		if slices.Contains(ids, ev.EventID()) {
			return errors.New("refused by the test")
		}
		return nil
	}
}

// wantState checks the resolved value of some keys; "" means absent.
func wantState(t testing.TB, got StateMap, want map[StateKey]string) {
	t.Helper()
	for k, id := range want {
		if got[k] != id {
			t.Errorf("(%s, %q) = %q, want %q", k.Type, k.StateKey, got[k], id)
		}
	}
}

func memberKey(user string) StateKey { return StateKey{"m.room.member", user} }

var (
	plKey    = StateKey{"m.room.power_levels", ""}
	jrKey    = StateKey{"m.room.join_rules", ""}
	topicKey = StateKey{"m.room.topic", ""}
)
