package federation_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/users"
)

func init() { users.UseMinimumBcryptCostForTests() }

func noLimits(c *config.Config) { c.RateLimits = config.RateLimits{} }

// fedUser registers a user on srv and returns a logged-in client.
func fedUser(t *testing.T, srv *hstest.Server, name string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(srv.ClientURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: name, Password: "pw-" + name})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	return cli
}

// syncer follows a client's /sync stream.
type syncer struct {
	t     *testing.T
	cli   *mautrix.Client
	since string
}

// waitFor syncs until match finds what it wants or the time is up.
func (s *syncer) waitFor(what string, match func(*mautrix.RespSync) bool) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := s.cli.SyncRequest(context.Background(), 2000, s.since, "", false, mevent.PresenceOnline)
		if err != nil {
			s.t.Fatalf("sync: %v", err)
		}
		s.since = resp.NextBatch
		if match(resp) {
			return
		}
	}
	s.t.Fatalf("%s: not seen in /sync", what)
}

func hasMessage(roomID mid.RoomID, body string) func(*mautrix.RespSync) bool {
	return func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[roomID]
		if !ok {
			return false
		}
		for _, ev := range jr.Timeline.Events {
			if ev.Type == mevent.EventMessage {
				_ = ev.Content.ParseRaw(ev.Type)
				if ev.Content.AsMessage().Body == body {
					return true
				}
			}
		}
		return false
	}
}

func TestRoomsAcrossServers(t *testing.T) {
	_, hs2, alice, bob := twoServers(t)
	ctx := context.Background()
	carol := fedUser(t, hs2, "carol")
	aliceSync := &syncer{t: t, cli: alice}
	bobSync := &syncer{t: t, cli: bob}
	carolSync := &syncer{t: t, cli: carol}
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	bobSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	carolSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })

	// Bob on hs2 joins a public room on hs1 through an alias.
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Agencies", RoomAliasName: "agencies"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := bob.JoinRoom(ctx, "#agencies:hs1.test", nil); err != nil || j.RoomID != room.RoomID {
		t.Fatalf("remote join by alias: %v %v", j, err)
	}
	bobSync.waitFor("the joined room", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Join[room.RoomID]; return ok })
	aliceSync.waitFor("bob's join", func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room.RoomID]
		if !ok {
			return false
		}
		for _, ev := range jr.Timeline.Events {
			if ev.Type == mevent.StateMember && ev.GetStateKey() == bob.UserID.String() {
				return true
			}
		}
		return false
	})

	// Messages flow both ways.
	if _, err := alice.SendText(ctx, room.RoomID, "hello from hs1"); err != nil {
		t.Fatal(err)
	}
	bobSync.waitFor("alice's message", hasMessage(room.RoomID, "hello from hs1"))
	if _, err := bob.SendText(ctx, room.RoomID, "hello from hs2"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("bob's message", hasMessage(room.RoomID, "hello from hs2"))

	// The room's state is the same on both servers.
	var nameOn2 mevent.RoomNameEventContent
	if err := bob.StateEvent(ctx, room.RoomID, mevent.StateRoomName, "", &nameOn2); err != nil || nameOn2.Name != "Agencies" {
		t.Fatalf("room name on hs2: %q %v", nameOn2.Name, err)
	}

	// Invite across servers: alice invites carol to a private room.
	private, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Secret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.InviteUser(ctx, private.RoomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
		t.Fatalf("remote invite: %v", err)
	}
	carolSync.waitFor("the invite", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Invite[private.RoomID]; return ok })
	if _, err := carol.JoinRoom(ctx, private.RoomID.String(), nil); err != nil {
		t.Fatalf("joining after a remote invite: %v", err)
	}
	if _, err := carol.SendText(ctx, private.RoomID, "thanks for the invite"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("carol's message", hasMessage(private.RoomID, "thanks for the invite"))

	// The other direction: a room on hs2 that alice joins.
	room2, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.JoinRoom(ctx, room2.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs2.test"}}); err != nil {
		t.Fatalf("join a v10 room on hs2: %v", err)
	}
	if _, err := bob.SendText(ctx, room2.RoomID, "v10 works"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("the v10 room's message", hasMessage(room2.RoomID, "v10 works"))

	// Kick across servers: alice kicks bob from her room.
	if _, err := alice.KickUser(ctx, room.RoomID, &mautrix.ReqKickUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	bobSync.waitFor("the kick", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Leave[room.RoomID]; return ok })
}
