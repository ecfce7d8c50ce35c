package federation_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/hstest"
)

// reconnect points a client at its server's client API again: a restarted
// test server listens on a new client port (its federation address, which
// the other servers' static_hosts name, stays the same).
func reconnect(t *testing.T, cli *mautrix.Client, srv *hstest.Server) {
	t.Helper()
	u, err := url.Parse(srv.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	cli.HomeserverURL = u
}

// eventually retries check until it returns nil or the time is up.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// history pages /messages backwards from the end of the room until the
// server says there is nothing more (or max events were read), returning
// the events oldest first.
func history(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, max int) []*mevent.Event {
	t.Helper()
	var out []*mevent.Event
	from := ""
	for len(out) < max {
		resp, err := cli.Messages(context.Background(), roomID, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatalf("/messages: %v", err)
		}
		out = append(out, resp.Chunk...)
		if resp.End == "" || len(resp.Chunk) == 0 {
			break
		}
		from = resp.End
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// bodies lists the bodies of the m.room.message events among evs.
func bodies(evs []*mevent.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == mevent.EventMessage {
			_ = ev.Content.ParseRaw(ev.Type)
			out = append(out, ev.Content.AsMessage().Body)
		}
	}
	return out
}

// hasBodies checks that want appears in got in order (other messages may
// come between).
func hasBodies(got, want []string) error {
	i := 0
	for _, b := range got {
		if i < len(want) && b == want[i] {
			i++
		}
	}
	if i < len(want) {
		return fmt.Errorf("missing %q (and %d more) of %d messages; have %d messages", want[i], len(want)-i-1, len(want), len(got))
	}
	return nil
}

func sendTexts(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("%s %d", prefix, i)
		if _, err := cli.SendText(context.Background(), roomID, body); err != nil {
			t.Fatalf("send %q: %v", body, err)
		}
		out = append(out, body)
	}
	return out
}

// sharedRoom creates a public room of alice's that bob joins, and waits
// until alice's server has seen the join.
func sharedRoom(t *testing.T, alice, bob *mautrix.Client, via string) mid.RoomID {
	t.Helper()
	ctx := context.Background()
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{via}}); err != nil {
		t.Fatalf("remote join: %v", err)
	}
	waitMembership(t, alice, room.RoomID, bob.UserID, "join")
	return room.RoomID
}

// waitMembership waits until cli's server holds user's membership in the room.
func waitMembership(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, user mid.UserID, want string) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("%s's membership %s on %s", user, want, cli.UserID.Homeserver()), func() error {
		var m mevent.MemberEventContent
		if err := cli.StateEvent(context.Background(), roomID, mevent.StateMember, user.String(), &m); err != nil {
			return err
		}
		if string(m.Membership) != want {
			return fmt.Errorf("membership is %q", m.Membership)
		}
		return nil
	})
}

// A server restarted mid-conversation loses nothing: what was sent to it
// while it was down arrives after, and so does what it had queued for
// others when it stopped itself.
func TestFederationRestart(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	room := sharedRoom(t, alice, bob, "hs1.test")
	ctx := context.Background()

	// hs2 is down while alice talks: her server queues and retries.
	hs2.Stop()
	sent := sendTexts(t, alice, room, "while hs2 restarts", 5)
	hs2.Restart()
	reconnect(t, bob, hs2)
	eventually(t, 30*time.Second, "messages sent while hs2 was down", func() error {
		return hasBodies(bodies(history(t, bob, room, 100)), sent)
	})

	// The conversation goes on both ways.
	if _, err := bob.SendText(ctx, room, "bob is back"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob's message after his restart", func() error {
		return hasBodies(bodies(history(t, alice, room, 100)), []string{"bob is back"})
	})

	// The room's own server restarts while bob talks.
	hs1.Stop()
	sent = sendTexts(t, bob, room, "while hs1 restarts", 5)
	hs1.Restart()
	reconnect(t, alice, hs1)
	eventually(t, 30*time.Second, "messages sent while hs1 was down", func() error {
		return hasBodies(bodies(history(t, alice, room, 100)), sent)
	})

	// Both down in turn: hs1 queues for hs2, then stops with the queue
	// still full; the queue is in its database and is sent after hs1
	// starts again, without anything new being sent.
	hs2.Stop()
	sent = sendTexts(t, alice, room, "queued across a restart", 5)
	hs1.Stop()
	hs2.Restart()
	reconnect(t, bob, hs2)
	hs1.Restart()
	reconnect(t, alice, hs1)
	eventually(t, 30*time.Second, "a queue left by a stopped server", func() error {
		return hasBodies(bodies(history(t, bob, room, 100)), sent)
	})
}

// A server down for a while catches up: a short queue is delivered whole;
// a long one is cut to the latest events of each room, and the receiver
// fetches what lies between with get_missing_events.
func TestFederationCatchUp(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	room := sharedRoom(t, alice, bob, "hs1.test")
	ctx := context.Background()

	hs2.Stop()
	sent := sendTexts(t, alice, room, "short outage", 30)
	// Long enough for hs1 to have failed and backed off more than once.
	time.Sleep(3 * time.Second)
	hs2.Restart()
	reconnect(t, bob, hs2)
	eventually(t, 30*time.Second, "30 messages after an outage", func() error {
		return hasBodies(bodies(history(t, bob, room, 200)), sent)
	})

	// More than the catch-up threshold: hs1 sends only the latest events.
	hs2.Stop()
	long := sendTexts(t, alice, room, "long outage", 250)
	time.Sleep(2500 * time.Millisecond)
	hs2.Restart()
	reconnect(t, bob, hs2)
	eventually(t, 60*time.Second, "the latest message after a long outage", func() error {
		return hasBodies(bodies(history(t, bob, room, 1000)), long[len(long)-1:])
	})
	eventually(t, 30*time.Second, "every message of a long outage", func() error {
		return hasBodies(bodies(history(t, bob, room, 1000)), long)
	})

	// And the room still works both ways.
	if _, err := bob.SendText(ctx, room, "caught up"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob's message after catching up", func() error {
		return hasBodies(bodies(history(t, alice, room, 10)), []string{"caught up"})
	})
}

// Leave, kick, ban and unban across three servers: each server sees each
// change, and the change has its effect where it matters.
func TestMembershipAcrossServers(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test", "hs3.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	hs3 := n.start(t, "hs3.test", noLimits)
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	carol := fedUser(t, hs3, "carol")
	ctx := context.Background()
	room := sharedRoom(t, alice, bob, "hs1.test")
	if _, err := carol.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	waitMembership(t, alice, room, carol.UserID, "join")
	waitMembership(t, bob, room, carol.UserID, "join")

	everyoneSees := func(user mid.UserID, membership string) {
		t.Helper()
		for _, cli := range []*mautrix.Client{alice, bob, carol} {
			if cli.UserID == user && membership != "join" {
				continue // may no longer read the room's current state
			}
			waitMembership(t, cli, room, user, membership)
		}
	}

	// Bob leaves by himself; his server is no longer in the room.
	bobSync := &syncer{t: t, cli: bob}
	bobSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	everyoneSees(bob.UserID, "leave")
	bobSync.waitFor("the room in bob's leave section", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Leave[room]; return ok })

	// Meanwhile the room goes on without hs2.
	if _, err := alice.SendText(ctx, room, "said while bob was away"); err != nil {
		t.Fatal(err)
	}

	// Bob comes back, and sees what was said while he was away once his
	// server is back in the room.
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatalf("rejoin after leaving: %v", err)
	}
	everyoneSees(bob.UserID, "join")
	if _, err := bob.SendText(ctx, room, "bob again"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob's message after rejoining, on hs1 and hs3", func() error {
		return errors.Join(hasBodies(bodies(history(t, alice, room, 100)), []string{"bob again"}),
			hasBodies(bodies(history(t, carol, room, 100)), []string{"bob again"}))
	})

	// Alice kicks bob.
	if _, err := alice.KickUser(ctx, room, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "out"}); err != nil {
		t.Fatal(err)
	}
	everyoneSees(bob.UserID, "leave")

	// Bob may rejoin a public room after a kick; then alice bans him.
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatalf("rejoin after a kick: %v", err)
	}
	everyoneSees(bob.UserID, "join")
	if _, err := alice.BanUser(ctx, room, &mautrix.ReqBanUser{UserID: bob.UserID, Reason: "spam"}); err != nil {
		t.Fatal(err)
	}
	everyoneSees(bob.UserID, "ban")
	// Bob's own server too: before the ban reaches it, it still holds him
	// as joined, and a join is then a no-op that succeeds.
	eventually(t, 20*time.Second, "the ban on hs2", func() error {
		ev, err := hs2.Rooms.CurrentStateEvent(ctx, room.String(), "m.room.member", bob.UserID.String())
		if err != nil {
			return err
		}
		if m, _ := ev.Membership(); m != "ban" {
			return fmt.Errorf("hs2 holds bob's membership as %q", m)
		}
		return nil
	})

	// Banned: he can neither join nor send, and hears nothing more.
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err == nil {
		t.Fatal("a banned user joined again")
	}
	if _, err := bob.SendText(ctx, room, "banned but talking"); err == nil {
		t.Fatal("a banned user sent a message")
	}
	if _, err := alice.SendText(ctx, room, "not for bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "alice's message on hs3", func() error {
		return hasBodies(bodies(history(t, carol, room, 100)), []string{"not for bob"})
	})
	for _, cli := range []*mautrix.Client{alice, carol} {
		if err := hasBodies(bodies(history(t, cli, room, 200)), []string{"banned but talking"}); err == nil {
			t.Fatalf("%s sees a banned user's message", cli.UserID)
		}
	}

	// Carol (on a third server) may not unban; alice unbans, bob returns.
	if _, err := carol.UnbanUser(ctx, room, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err == nil {
		t.Fatal("an unprivileged user unbanned")
	}
	if _, err := alice.UnbanUser(ctx, room, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	everyoneSees(bob.UserID, "leave")
	if _, err := bob.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatalf("join after unban: %v", err)
	}
	everyoneSees(bob.UserID, "join")
	if _, err := alice.SendText(ctx, room, "welcome back bob"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "alice's message on hs2 after the unban", func() error {
		return hasBodies(bodies(history(t, bob, room, 100)), []string{"welcome back bob"})
	})
}
