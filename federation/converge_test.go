package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
)

// Both servers write to one room at the same time: messages, and state
// changes of the same keys from both sides, so the room's history forks
// and each server resolves the forks as the other's events arrive. Once
// both have seen everything, they hold the same state and the same
// messages.
func TestConcurrentWritesConverge(t *testing.T) {
	hs1, hs2, alice, bob := twoServers(t)
	ctx := context.Background()
	room := sharedRoom(t, alice, bob, "hs1.test")
	// Bob may change the room's state too.
	var pl mevent.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, room, mevent.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.Users[bob.UserID] = 100
	if _, err := alice.SendStateEvent(ctx, room, mevent.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob's power on hs2", func() error {
		var got mevent.PowerLevelsEventContent
		if err := bob.StateEvent(ctx, room, mevent.StatePowerLevels, "", &got); err != nil {
			return err
		}
		if got.Users[bob.UserID] != 100 {
			return fmt.Errorf("bob's power is %d", got.Users[bob.UserID])
		}
		return nil
	})

	const rounds = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent []string
	for _, cli := range []*mautrix.Client{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := cli.UserID.Localpart()
			for i := 0; i < rounds; i++ {
				body := fmt.Sprintf("%s %d", name, i)
				if _, err := cli.SendText(ctx, room, body); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sent = append(sent, body)
				mu.Unlock()
				if i%5 == 0 {
					// The same keys from both sides.
					if _, err := cli.SendStateEvent(ctx, room, mevent.StateTopic, "", map[string]any{"topic": body}); err != nil {
						t.Error(err)
						return
					}
					if _, err := cli.SendStateEvent(ctx, room, mevent.NewEventType("org.parley.test.shared"), "k",
						map[string]any{"by": body}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Each side writes last once, seen by the other: its event's
	// prev_events merge every fork it holds.
	for _, step := range []struct {
		from, to *mautrix.Client
		body     string
	}{{alice, bob, "alice merges"}, {bob, alice, "bob merges"}} {
		if _, err := step.from.SendText(ctx, room, step.body); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, step.body+" on "+step.to.UserID.Homeserver(), func() error {
			return hasBodies(bodies(history(t, step.to, room, 1000)), []string{step.body})
		})
	}
	eventually(t, 30*time.Second, "the same state on both servers", func() error {
		s1, err := hs1.Rooms.CurrentState(ctx, room.String())
		if err != nil {
			return err
		}
		s2, err := hs2.Rooms.CurrentState(ctx, room.String())
		if err != nil {
			return err
		}
		if len(s1) != len(s2) {
			return fmt.Errorf("hs1 holds %d state events, hs2 %d", len(s1), len(s2))
		}
		for k, ev := range s1 {
			if o := s2[k]; o == nil || o.EventID() != ev.EventID() {
				return fmt.Errorf("%s %q differs: hs1 %s, hs2 %v", k.Type, k.StateKey, ev.EventID(), o)
			}
		}
		return nil
	})
	// The test is only worth its name if the history forked: some events
	// of hs1 merge several forward extremities.
	merges := 0
	for _, ev := range history(t, alice, room, 1000) {
		row, err := hs1.DB.GetEvent(ctx, ev.ID.String())
		if err != nil {
			t.Fatal(err)
		}
		var pe struct {
			PrevEvents []json.RawMessage `json:"prev_events"`
		}
		_ = json.Unmarshal([]byte(row.JSON), &pe)
		if len(pe.PrevEvents) > 1 {
			merges++
		}
	}
	t.Logf("%d events of hs1 merge forks", merges)
	if merges == 0 {
		t.Fatal("the history never forked")
	}
	for _, cli := range []*mautrix.Client{alice, bob} {
		got := map[string]bool{}
		for _, b := range bodies(history(t, cli, room, 1000)) {
			got[b] = true
		}
		for _, b := range sent {
			if !got[b] {
				t.Errorf("%s never saw %q", cli.UserID.Homeserver(), b)
			}
		}
	}
}
