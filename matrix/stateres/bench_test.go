package stateres

import (
	"fmt"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

// mapProvider is the cheapest EventProvider: what a cache of parsed events
// in front of a database gives.
type mapProvider map[string]*event.Event

func (m mapProvider) Event(id string) (*event.Event, error) {
	if ev, ok := m[id]; ok {
		return ev, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrMissingEvent, id)
}

// largeRoom builds a room with about 10,000 state events, nearly all
// memberships, forked into two branches that disagree on 100 events: on
// one side Alice changes the power levels, kicks 30 users and 19 others
// rename themselves; on the other Bob changes the join rules, the 30
// kicked users rename themselves and 19 more users leave.
func largeRoom(tb testing.TB, v event.RoomVersion) (*testRoom, []StateMap) {
	r, b := newRoom(tb, v, map[string]int{bob: 50})
	b.send("bob-join", bob, "m.room.member", bob, member("join"))
	user := func(i int) string { return fmt.Sprintf("@u%04d:example.org", i) }
	for i := 0; len(b.state) < 10000; i++ {
		b.send(fmt.Sprintf("join-%04d", i), user(i), "m.room.member", user(i), member("join"))
	}
	a, c := b.fork(), b.fork()
	users := map[string]int{bob: 50, user(1): 50}
	if !r.info.PrivilegedCreators {
		users[alice] = 100
	}
	a.send("alice-pl", alice, "m.room.power_levels", "", powerLevelsContent(users))
	for i := 10; i < 40; i++ {
		a.send(fmt.Sprintf("kick-%04d", i), alice, "m.room.member", user(i), member("leave"))
	}
	for i := 100; i < 119; i++ {
		a.send(fmt.Sprintf("rename-%04d", i), user(i), "m.room.member", user(i), map[string]any{"membership": "join", "displayname": "x"})
	}
	c.send("bob-jr", bob, "m.room.join_rules", "", map[string]any{"join_rule": "invite"})
	for i := 10; i < 40; i++ {
		c.send(fmt.Sprintf("rename-%04d", i), user(i), "m.room.member", user(i), map[string]any{"membership": "join", "displayname": "y"})
	}
	for i := 200; i < 219; i++ {
		c.send(fmt.Sprintf("leave-%04d", i), user(i), "m.room.member", user(i), member("leave"))
	}
	return r, []StateMap{a.state, c.state}
}

// BenchmarkResolveV2Large resolves the large room with the real auth rules,
// walking the auth chains itself ("walk") or given them ("chains"), in a
// v2 room (10) and a v2.1 one (12).
func BenchmarkResolveV2Large(b *testing.B) {
	if !authrulesReady() {
		b.Skip("matrix/authrules does not implement the auth rules yet")
	}
	for _, v := range []event.RoomVersion{"10", "12"} {
		r, states := largeRoom(b, v)
		provider := mapProvider(r.events)
		chains := [][]string{r.fullAuthChain(states[0]), r.fullAuthChain(states[1])}
		for _, mode := range []string{"walk", "chains"} {
			b.Run(fmt.Sprintf("v%s/%s", v, mode), func(b *testing.B) {
				var ac [][]string
				if mode == "chains" {
					ac = chains
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Resolve(r.info, states, ac, provider); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The large room resolves to what its story says, so that the benchmark
// measures a resolution that does the work.
func TestLargeRoomResolution(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 10,000 events")
	}
	for _, impl := range authImpls {
		t.Run(impl.name, func(t *testing.T) {
			allowed := impl.allowed(t)
			for _, v := range []event.RoomVersion{"10", "12"} {
				r, states := largeRoom(t, v)
				got := r.resolve(allowed, states...)
				if len(got) < 9900 {
					t.Errorf("v%s: %d keys", v, len(got))
				}
				wantState(t, got, map[StateKey]string{
					plKey:                                 "$alice-pl",
					jrKey:                                 "$bob-jr",
					memberKey("@u0010:example.org"):       "$kick-0010",
					memberKey("@u0100:example.org"):       "$rename-0100",
					memberKey("@u0200:example.org"):       "$leave-0200",
					memberKey("@u0500:example.org"):       "$join-0500",
					{Type: "m.room.create", StateKey: ""}: r.createID,
				})
			}
		})
	}
}
