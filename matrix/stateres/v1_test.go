package stateres

import (
	"bytes"
	"crypto/sha1"
	"maps"
	"slices"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// Room version 1 orderings, with injected auth functions.

// sameDepth builds n topic (or power levels) events on forks of b, all at
// the same depth, and returns their IDs and states.
func v1Candidates(b *branch, typ string, names ...string) ([]string, []StateMap) {
	var ids []string
	var states []StateMap
	for _, n := range names {
		f := b.fork()
		content := map[string]any{"topic": n}
		if typ == "m.room.power_levels" {
			content = powerLevelsContent(map[string]int{alice: 100})
		}
		ids = append(ids, f.send(n, alice, typ, "", content))
		states = append(states, f.state)
	}
	return ids, states
}

func bySHA1(ids []string, descending bool) []string {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b string) int {
		ha, hb := sha1.Sum([]byte(a)), sha1.Sum([]byte(b))
		if descending {
			return bytes.Compare(hb[:], ha[:])
		}
		return bytes.Compare(ha[:], hb[:])
	})
	return out
}

// Other keys: "pick the event with the highest depth and lowest
// sha1(event_id) that passes authentication in R".
func TestV1OtherKeys(t *testing.T) {
	r, b := newRoom(t, "1", nil)
	ids, states := v1Candidates(b, "m.room.topic", "t1", "t2", "t3", "t4")
	deep := b.fork()
	deep.send("filler", alice, "m.room.name", "", map[string]any{"name": "n"})
	deepID := deep.send("t-deep", alice, "m.room.topic", "", map[string]any{"topic": "deep"})
	delete(deep.state, StateKey{"m.room.name", ""})
	states = append(states, deep.state)

	got, seen := resolveRecording(t, r, r.info, allowAll, states...)
	wantState(t, got, map[StateKey]string{topicKey: deepID})
	if !slices.Equal(seen, []string{deepID}) {
		t.Errorf("checked %v, want only the deepest", seen)
	}

	// The deepest refused: the lowest sha1 among the others, checked in
	// ascending sha1 order.
	order := bySHA1(ids, false)
	got, seen = resolveRecording(t, r, r.info, refuse(deepID, order[0]), states...)
	wantState(t, got, map[StateKey]string{topicKey: order[1]})
	if want := []string{deepID, order[0], order[1]}; !slices.Equal(seen, want) {
		t.Errorf("checked %v, want %v", seen, want)
	}

	// None passes: the key is left out.
	got, _ = resolveRecording(t, r, r.info, refuse(append(ids, deepID)...), states...)
	wantState(t, got, map[StateKey]string{topicKey: ""})
}

// Power levels (and join rules, memberships): "Sort the list by ascending
// depth then descending sha1(event_id). Add the first event in the list to
// R. For each subsequent event in the list, check that the event would be
// allowed ... If it would not be allowed, stop".
func TestV1AuthKeys(t *testing.T) {
	r, b := newRoom(t, "1", nil)
	ids, states := v1Candidates(b, "m.room.power_levels", "pa", "pb", "pc")
	order := bySHA1(ids, true)

	got, seen := resolveRecording(t, r, r.info, allowAll, states...)
	wantState(t, got, map[StateKey]string{plKey: order[2]})
	if want := order[1:]; !slices.Equal(seen, want) {
		t.Errorf("checked %v, want %v (the first goes in unchecked)", seen, want)
	}

	// A refusal stops the key: the third is not even checked.
	got, seen = resolveRecording(t, r, r.info, refuse(order[1]), states...)
	wantState(t, got, map[StateKey]string{plKey: order[0]})
	if want := order[1:2]; !slices.Equal(seen, want) {
		t.Errorf("checked %v, want %v", seen, want)
	}
}

// "A conflict occurs between states where those states have different
// event_ids for the same (event_type, state_key)": a key that one state
// lacks is kept without any check.
func TestV1MissingKeyIsNoConflict(t *testing.T) {
	r, b := newRoom(t, "1", nil)
	x := b.fork()
	x.send("name", alice, "m.room.name", "", map[string]any{"name": "n"})
	got, seen := resolveRecording(t, r, r.info, refuse("$name"), x.state, b.state)
	wantState(t, got, map[StateKey]string{{"m.room.name", ""}: "$name"})
	if len(seen) != 0 {
		t.Errorf("checked %v", seen)
	}
}

// Events whose auth events form a cycle cannot be genuine, but in room
// versions 1 and 2 their IDs are chosen by their sender, so a malicious
// server can send them. Resolution must end.
func TestAuthCycle(t *testing.T) {
	r, b := newRoom(t, "2", nil)
	pl := func(id, cites string) *event.Event {
		auth := []string{r.createID, "$alice-join", cites}
		return r.makeEvent(id, alice, "m.room.power_levels", ptr(""), powerLevelsContent(map[string]int{alice: 100}), b.heads, auth, b.depth+1)
	}
	r.events["$cycle-a"] = pl("$cycle-a", "$cycle-b")
	r.events["$cycle-b"] = pl("$cycle-b", "$cycle-a")
	topic := r.makeEvent("$topic-on-cycle", alice, "m.room.topic", ptr(""), map[string]any{"topic": "t"}, b.heads, []string{r.createID, "$alice-join", "$cycle-a"}, b.depth+1)
	r.events[topic.EventID()] = topic

	x, y := maps.Clone(b.state), maps.Clone(b.state)
	x[plKey], y[plKey] = "$cycle-a", "$cycle-b"
	y[topicKey] = "$topic-on-cycle"
	for _, algo := range []event.StateResAlgorithm{event.StateResV2, event.StateResV2_1} {
		info := r.info
		info.StateRes = algo
		for _, allowed := range []AllowedFunc{allowAll, gmslAllowed(t)} {
			if _, err := (Resolver{Allowed: allowed}).Resolve(info, []StateMap{x, y}, nil, r); err != nil {
				t.Errorf("algorithm %d: %v", algo, err)
			}
		}
	}
}
