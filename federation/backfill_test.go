package federation_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"
)

// A server that joins a room with history gets that history from the
// room's servers when a client pages back past the join: checked, stored
// before the join, in order, under the visibility rules, and never in
// /sync.
func TestBackfill(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test", "hs3.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	hs3 := n.start(t, "hs3.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	carol := fedUser(t, hs3, "carol")

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "With history"})
	if err != nil {
		t.Fatal(err)
	}
	before := sendTexts(t, alice, room.RoomID, "before bob", 45)
	// A state change in the middle of the history: events before it must
	// be checked against the state before it, not the state at the join.
	if _, err := alice.SendStateEvent(ctx, room.RoomID, mevent.StateTopic, "", &mevent.TopicEventContent{Topic: "history"}); err != nil {
		t.Fatal(err)
	}
	before = append(before, sendTexts(t, alice, room.RoomID, "still before bob", 5)...)

	bobSync := &syncer{t: t, cli: bob}
	bobSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	after := sendTexts(t, alice, room.RoomID, "after bob", 3)
	eventually(t, 20*time.Second, "messages after bob's join", func() error {
		return hasBodies(bodies(history(t, bob, room.RoomID, 10)), after)
	})
	// What /sync said before anything was backfilled.
	var synced []string
	bobSync.waitFor("the room in /sync", func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room.RoomID]
		if ok {
			synced = append(synced, bodies(jr.Timeline.Events)...)
		}
		return ok
	})

	// Paging back, 10 at a time, goes past the join to the room's creation.
	evs := pageBack(t, bob, room.RoomID, 10)
	got := bodies(evs)
	if err := hasBodies(got, append(append([]string{}, before...), after...)); err != nil {
		t.Fatalf("bob's history: %v (%d messages)", err, len(got))
	}
	if len(got) != len(before)+len(after) {
		t.Fatalf("%d messages, want %d (duplicates?)", len(got), len(before)+len(after))
	}
	if evs[0].Type != mevent.StateCreate {
		t.Fatalf("history starts with %s, not the creation", evs[0].Type)
	}
	var sawTopic bool
	for _, ev := range evs {
		sawTopic = sawTopic || ev.Type == mevent.StateTopic
	}
	if !sawTopic {
		t.Fatal("the topic change is not in the backfilled history")
	}

	// /sync is unaffected: nothing new in bob's incremental sync, and an
	// initial sync's timeline shows the latest events only.
	resp, err := bob.SyncRequest(ctx, 0, bobSync.since, "", false, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	if jr, ok := resp.Rooms.Join[room.RoomID]; ok && len(jr.Timeline.Events) > 0 {
		t.Fatalf("backfilled events in an incremental /sync: %v", bodies(jr.Timeline.Events))
	}
	initial, err := bob.SyncRequest(ctx, 0, "", "", true, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	if b := bodies(initial.Rooms.Join[room.RoomID].Timeline.Events); hasBodies(b, before[:1]) == nil {
		t.Fatalf("backfilled events in an initial /sync: %v", b)
	}

	// The conversation goes on after the backfill, both ways.
	if _, err := bob.SendText(ctx, room.RoomID, "bob read it all"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob's message on hs1", func() error {
		return hasBodies(bodies(history(t, alice, room.RoomID, 10)), []string{"bob read it all"})
	})
	if _, err := alice.SendText(ctx, room.RoomID, "good"); err != nil {
		t.Fatal(err)
	}
	bobSync.waitFor("alice's message after the backfill", hasMessage(room.RoomID, "good"))

	// A third server backfills from a server that itself backfilled.
	if _, err := carol.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs2.test"}}); err != nil {
		t.Fatal(err)
	}
	if err := hasBodies(bodies(pageBack(t, carol, room.RoomID, 25)), before); err != nil {
		t.Fatalf("carol's history: %v", err)
	}

	// With history visible to joined members only, a newcomer sees
	// nothing from before their join, backfilled or not.
	private, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat",
		InitialState: []*mevent.Event{{Type: mevent.StateHistoryVisibility, StateKey: strPtr(""),
			Content: mevent.Content{Parsed: &mevent.HistoryVisibilityEventContent{HistoryVisibility: mevent.HistoryVisibilityJoined}}}}})
	if err != nil {
		t.Fatal(err)
	}
	secret := sendTexts(t, alice, private.RoomID, "for members only", 5)
	if _, err := bob.JoinRoom(ctx, private.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies(pageBack(t, bob, private.RoomID, 10)) {
		for _, s := range secret {
			if b == s {
				t.Fatalf("bob sees %q from before his join", b)
			}
		}
	}
}

// pageBack reads a room's whole history the way a client scrolls up:
// pages of limit events, each from the last page's end token. Oldest
// first.
func pageBack(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, limit int) []*mevent.Event {
	t.Helper()
	var out []*mevent.Event
	from := ""
	for page := 0; page < 100; page++ {
		resp, err := cli.Messages(context.Background(), roomID, from, "", mautrix.DirectionBackward, nil, limit)
		if err != nil {
			t.Fatalf("/messages from %q: %v", from, err)
		}
		out = append(out, resp.Chunk...)
		if resp.End == "" {
			break
		}
		from = resp.End
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
