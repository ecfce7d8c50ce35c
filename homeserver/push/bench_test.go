package push

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// fakeRooms serves a fixed current state.
type fakeRooms struct {
	state map[storage.StateKey]*event.Event
}

func (f fakeRooms) CurrentState(context.Context, string) (map[storage.StateKey]*event.Event, error) {
	return f.state, nil
}

func (f fakeRooms) CurrentStateEvent(_ context.Context, _, eventType, stateKey string) (*event.Event, error) {
	return f.state[storage.StateKey{Type: eventType, StateKey: stateKey}], nil
}

func (f fakeRooms) RoomVersion(context.Context, string) (event.RoomVersion, error) { return "11", nil }

func (f fakeRooms) FormatRows(context.Context, []*storage.EventRow, rooms.Viewer) ([]*rooms.ClientEvent, error) {
	return nil, nil
}

// defaultRuleStore gives every user the default rules.
type defaultRuleStore struct{}

func (defaultRuleStore) PushRules(context.Context, string) ([]byte, error) { return nil, nil }
func (defaultRuleStore) UpdatePushRules(context.Context, string, func([]byte) ([]byte, error)) error {
	return nil
}

// bigRoom is the state of a room with n local members, each with a
// display name, and power levels.
func bigRoom(tb testing.TB, n int) map[storage.StateKey]*event.Event {
	st := map[storage.StateKey]*event.Event{}
	creator := "@user0:example.org"
	st[storage.StateKey{Type: "m.room.create"}] = mkEvent(tb, map[string]any{"type": "m.room.create", "state_key": "", "sender": creator,
		"content": map[string]any{"room_version": "11"}})
	st[storage.StateKey{Type: "m.room.power_levels"}] = mkEvent(tb, map[string]any{"type": "m.room.power_levels", "state_key": "", "sender": creator,
		"content": map[string]any{"users": map[string]any{creator: 100}}})
	for i := range n {
		u := fmt.Sprintf("@user%d:example.org", i)
		st[storage.StateKey{Type: "m.room.member", StateKey: u}] = mkEvent(tb, map[string]any{"type": "m.room.member", "state_key": u,
			"sender": u, "content": map[string]any{"membership": "join", "displayname": fmt.Sprintf("User Number %d", i)}})
	}
	return st
}

// BenchmarkEvaluate500Members evaluates one event for the 499 members of a
// 500-member room other than its sender, with the default rules, as an
// evaluation worker does: rules from the per-user cache, the room's
// context from the shard's cache. One op is one event.
//
//	go test ./homeserver/push -run '^$' -bench Evaluate500Members -benchmem
func BenchmarkEvaluate500Members(b *testing.B) {
	s := New(Config{ServerName: "example.org", Rooms: fakeRooms{bigRoom(b, 500)}, Rules: defaultRuleStore{}})
	sh := s.shards[0]
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		content map[string]any
		notify  int
	}{
		{"message", map[string]any{"msgtype": "m.text", "body": "Hello everyone, lunch at noon?"}, 499},
		{"mention", map[string]any{"msgtype": "m.text", "body": "User Number 7: lunch?",
			"m.mentions": map[string]any{"user_ids": []string{"@user7:example.org"}}}, 499},
		{"notice", map[string]any{"msgtype": "m.notice", "body": "build passed"}, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			ev := message(b, "@user1:example.org", c.content)
			r, err := sh.evaluate(ctx, job{ev: ev, pos: 1}) // warms the caches
			if err != nil || len(r.notified) != c.notify {
				b.Fatalf("notified %d, want %d (%v)", len(r.notified), c.notify, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := sh.evaluate(ctx, job{ev: ev, pos: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// liveRooms is a room engine whose current state the test changes as the
// engine does: before it hands the event over. Like the engine's,
// CurrentState returns a copy.
type liveRooms struct {
	fakeRooms
}

func (f liveRooms) CurrentState(context.Context, string) (map[storage.StateKey]*event.Event, error) {
	return maps.Clone(f.state), nil
}

// BenchmarkRoomJoins builds a room of n members by n joins, each evaluated
// by a shard as it is added to the room: what creating a large room costs
// push. One op is the whole room; ns/join is the cost of one join. With
// local joiners every join is also evaluated for every local member
// (their rules); with remote joiners only the room's context is at stake.
//
//	go test ./homeserver/push -run '^$' -bench RoomJoins -benchtime 1x
func BenchmarkRoomJoins(b *testing.B) {
	for _, server := range []string{"remote.example", "example.org"} {
		for _, n := range []int{1000, 2500, 5000} {
			b.Run(fmt.Sprintf("%s/members=%d", server, n), func(b *testing.B) {
				benchmarkRoomJoins(b, server, n)
			})
		}
	}
}

func benchmarkRoomJoins(b *testing.B, server string, n int) {
	creator := "@creator:example.org"
	base := map[storage.StateKey]*event.Event{
		{Type: "m.room.create"}: mkEvent(b, map[string]any{"type": "m.room.create", "state_key": "", "sender": creator,
			"content": map[string]any{"room_version": "11"}}),
		{Type: "m.room.power_levels"}: mkEvent(b, map[string]any{"type": "m.room.power_levels", "state_key": "", "sender": creator,
			"content": map[string]any{"users": map[string]any{creator: 100}}}),
		{Type: "m.room.member", StateKey: creator}: mkEvent(b, map[string]any{"type": "m.room.member", "state_key": creator,
			"sender": creator, "content": map[string]any{"membership": "join"}}),
	}
	joins := make([]*event.Event, n)
	for i := range joins {
		u := fmt.Sprintf("@joiner%d:%s", i, server)
		joins[i] = mkEvent(b, map[string]any{"type": "m.room.member", "state_key": u, "sender": u,
			"content": map[string]any{"membership": "join", "displayname": fmt.Sprintf("Joiner %d", i)}})
	}
	rooms := &liveRooms{}
	s := New(Config{ServerName: "example.org", Rooms: rooms, Rules: defaultRuleStore{}})
	sh := s.shards[0]
	ctx := context.Background()
	for b.Loop() {
		clear(sh.rooms)
		rooms.state = maps.Clone(base)
		for i, ev := range joins {
			rooms.state[storage.StateKey{Type: "m.room.member", StateKey: *ev.StateKey()}] = ev
			if _, err := sh.evaluate(ctx, job{ev: ev, pos: int64(i + 1)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/join")
}
