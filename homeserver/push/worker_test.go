package push

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// roomFixture is a shard over a room whose current state the test changes
// as the room engine does: before handing the event over.
type roomFixture struct {
	t     *testing.T
	rooms *liveRooms
	sh    *shard
	now   time.Time
}

func newRoomFixture(t *testing.T) *roomFixture {
	creator := "@alice:example.org"
	f := &roomFixture{t: t, rooms: &liveRooms{}, now: time.Unix(1_700_000_000, 0)}
	f.rooms.state = map[storage.StateKey]*event.Event{}
	s := New(Config{ServerName: "example.org", Rooms: f.rooms, Rules: defaultRuleStore{}, Now: func() time.Time { return f.now }})
	f.sh = s.shards[0]
	f.set(mkEvent(t, map[string]any{"type": "m.room.create", "state_key": "", "sender": creator,
		"content": map[string]any{"room_version": "11"}}))
	f.set(mkEvent(t, map[string]any{"type": "m.room.power_levels", "state_key": "", "sender": creator,
		"content": map[string]any{"users": map[string]any{creator: 100}}}))
	f.set(mkEvent(t, map[string]any{"type": "m.room.name", "state_key": "", "sender": creator,
		"content": map[string]any{"name": "Lunch"}}))
	f.set(f.member(creator, creator, "join", "Alice"))
	f.set(f.member("@bob:example.org", "@bob:example.org", "join", ""))
	f.set(f.member("@carol:remote.example", "@carol:remote.example", "join", "Carol"))
	f.set(f.member("@dan:example.org", creator, "invite", ""))
	return f
}

// member is a member event of target by sender; displayname "" leaves it
// out.
func (f *roomFixture) member(target, sender, membership, displayname string) *event.Event {
	content := map[string]any{"membership": membership}
	if displayname != "" {
		content["displayname"] = displayname
	}
	return mkEvent(f.t, map[string]any{"type": "m.room.member", "state_key": target, "sender": sender, "content": content})
}

// set makes ev part of the current state.
func (f *roomFixture) set(ev *event.Event) {
	f.rooms.state[storage.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = ev
}

// room hands ev to the shard and returns its context of the room.
func (f *roomFixture) room(ev *event.Event) *roomInfo {
	f.t.Helper()
	ri, err := f.sh.room(context.Background(), ev)
	if err != nil {
		f.t.Fatal(err)
	}
	return ri
}

// checkCurrent fails unless ri holds what buildRoomInfo reads from the
// current state.
func (f *roomFixture) checkCurrent(step string, ri *roomInfo) {
	f.t.Helper()
	want := buildRoomInfo(f.rooms.state, "example.org")
	if ri.ctx.MemberCount != want.ctx.MemberCount {
		f.t.Errorf("%s: member count %d, want %d", step, ri.ctx.MemberCount, want.ctx.MemberCount)
	}
	if !maps.Equal(ri.ctx.DisplayNames, want.ctx.DisplayNames) {
		f.t.Errorf("%s: display names %v, want %v", step, ri.ctx.DisplayNames, want.ctx.DisplayNames)
	}
	if got, want := slices.Sorted(slices.Values(ri.local)), slices.Sorted(slices.Values(want.local)); !slices.Equal(got, want) {
		f.t.Errorf("%s: local members %v, want %v", step, got, want)
	}
	if !maps.Equal(ri.joined, want.joined) {
		f.t.Errorf("%s: joined %v, want %v", step, ri.joined, want.joined)
	}
	if ri.name != want.name || ri.alias != want.alias || (ri.ctx.Power == nil) != (want.ctx.Power == nil) {
		f.t.Errorf("%s: name %q alias %q power %v, want %q %q %v", step, ri.name, ri.alias, ri.ctx.Power != nil,
			want.name, want.alias, want.ctx.Power != nil)
	}
}

// TestRoomInfoIncremental applies membership changes one at a time to a
// cached room context and compares it, after each, with the context read
// from the whole current state.
func TestRoomInfoIncremental(t *testing.T) {
	f := newRoomFixture(t)
	ri := f.room(message(t, "@alice:example.org", nil))
	f.checkCurrent("initial", ri)
	const alice = "@alice:example.org"
	for _, c := range []struct {
		step                                    string
		target, sender, membership, displayname string
	}{
		{"local join with a name", "@erin:example.org", "@erin:example.org", "join", "Erin"},
		{"remote join without a name", "@frank:remote.example", "@frank:remote.example", "join", ""},
		{"display name set", "@bob:example.org", "@bob:example.org", "join", "Bobby"},
		{"display name changed", "@bob:example.org", "@bob:example.org", "join", "Robert"},
		{"display name removed", "@bob:example.org", "@bob:example.org", "join", ""},
		{"invite accepted", "@dan:example.org", "@dan:example.org", "join", "Dan"},
		{"local leave", "@erin:example.org", "@erin:example.org", "leave", ""},
		{"remote ban of a member", "@carol:remote.example", alice, "ban", ""},
		{"ban of a stranger", "@mallory:remote.example", alice, "ban", ""},
		{"invite", "@gina:example.org", alice, "invite", ""},
		{"invite rejected", "@gina:example.org", "@gina:example.org", "leave", ""},
		{"knock", "@hal:remote.example", "@hal:remote.example", "knock", "Hal"},
		{"rejoin after leaving", "@erin:example.org", "@erin:example.org", "join", "Erin again"},
		{"kick of a local member", "@dan:example.org", alice, "leave", ""},
		{"unban", "@carol:remote.example", alice, "leave", ""},
		{"join after unban", "@carol:remote.example", "@carol:remote.example", "join", "Carol"},
		{"the creator leaves", alice, alice, "leave", ""},
	} {
		ev := f.member(c.target, c.sender, c.membership, c.displayname)
		f.set(ev)
		if got := f.room(ev); got != ri {
			t.Fatalf("%s: the room's context was read again, not updated", c.step)
		}
		f.checkCurrent(c.step, ri)
	}
}

// TestRoomInfoRandomMemberships applies many random membership changes of
// a few users, local and remote, and compares with the context read from
// the final state.
func TestRoomInfoRandomMemberships(t *testing.T) {
	f := newRoomFixture(t)
	ri := f.room(message(t, "@alice:example.org", nil))
	rng := rand.New(rand.NewPCG(1, 2))
	memberships := []string{"join", "join", "join", "leave", "ban", "invite", "knock"}
	names := []string{"", "", "Pat", "Sam", "Alex"}
	for i := range 2000 {
		server := []string{"example.org", "remote.example"}[rng.IntN(2)]
		target := fmt.Sprintf("@u%d:%s", rng.IntN(20), server)
		ev := f.member(target, target, memberships[rng.IntN(len(memberships))], names[rng.IntN(len(names))])
		f.set(ev)
		if got := f.room(ev); got != ri {
			t.Fatalf("change %d: the room's context was read again, not updated", i)
		}
	}
	f.checkCurrent("after 2000 changes", ri)
}

// TestRoomInfoNotCurrent checks that a membership that is not (or no
// longer) the current state is not applied: the context is read again.
func TestRoomInfoNotCurrent(t *testing.T) {
	f := newRoomFixture(t)
	ri := f.room(message(t, "@alice:example.org", nil))

	// Bob's leave is handed over after his newer join was committed: a
	// later event queued behind, or catch-up handing an old event over.
	leave := f.member("@bob:example.org", "@bob:example.org", "leave", "")
	f.set(f.member("@bob:example.org", "@bob:example.org", "join", "Bob"))
	got := f.room(leave)
	if got == ri {
		t.Fatal("a membership that is not the current state was applied")
	}
	f.checkCurrent("superseded leave", got)

	// A member event that lost in state resolution, never current.
	got2 := f.room(f.member("@carol:remote.example", "@alice:example.org", "ban", ""))
	if got2 == got {
		t.Fatal("a membership missing from the current state was applied")
	}
	f.checkCurrent("resolved away", got2)
}

// TestRoomInfoMaxAge checks that a context is read again from the whole
// state after maxRoomInfoAge, in case state resolution changed members
// without a member event of each.
func TestRoomInfoMaxAge(t *testing.T) {
	f := newRoomFixture(t)
	ri := f.room(message(t, "@alice:example.org", nil))
	// A resolution drops Carol: no event of hers is handed over.
	delete(f.rooms.state, storage.StateKey{Type: "m.room.member", StateKey: "@carol:remote.example"})
	f.now = f.now.Add(maxRoomInfoAge)
	ev := f.member("@erin:example.org", "@erin:example.org", "join", "")
	f.set(ev)
	got := f.room(ev)
	if got == ri {
		t.Fatal("an old context was updated, not read again")
	}
	f.checkCurrent("after maxRoomInfoAge", got)
}

// TestResultKeepsRoomContext checks that what the push gateway reads of
// an event's room stays as the event saw it, though a later membership of
// the same batch updates the room's context in place.
func TestResultKeepsRoomContext(t *testing.T) {
	f := newRoomFixture(t)
	ctx := context.Background()
	r, err := f.sh.evaluate(ctx, job{ev: message(t, "@carol:remote.example", nil), pos: 1})
	if err != nil {
		t.Fatal(err)
	}
	rename := f.member("@carol:remote.example", "@carol:remote.example", "join", "Caroline")
	f.set(rename)
	if _, err := f.sh.evaluate(ctx, job{ev: rename, pos: 2}); err != nil {
		t.Fatal(err)
	}
	if r.senderName != "Carol" || r.roomName != "Lunch" {
		t.Fatalf("sender %q room %q, want Carol and Lunch", r.senderName, r.roomName)
	}
}
