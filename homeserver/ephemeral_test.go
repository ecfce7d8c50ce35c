package homeserver_test

import (
	"context"
	"encoding/json"
	"slices"
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

func registerOn(t *testing.T, srv *hstest.Server, name string) *mautrix.Client {
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

// syncUntil follows a client's /sync stream until match accepts a response.
func syncUntil(t *testing.T, cli *mautrix.Client, since *string, what string, match func(*mautrix.RespSync) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cli.SyncRequest(context.Background(), 1000, *since, "", false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		*since = resp.NextBatch
		if match(resp) {
			return
		}
	}
	t.Fatalf("%s: not seen in /sync", what)
}

func ephemeralContents(r *mautrix.RespSync, roomID mid.RoomID, typ string) []json.RawMessage {
	var out []json.RawMessage
	if jr, ok := r.Rooms.Join[roomID]; ok {
		for _, ev := range jr.Ephemeral.Events {
			if ev.Type.Type == typ {
				out = append(out, ev.Content.VeryRaw)
			}
		}
	}
	return out
}

// TestEphemeralAcrossServers: typing, receipts and presence of a user on
// hs1 reach a user on hs2 through EDUs, and a receipt goes back.
func TestEphemeralAcrossServers(t *testing.T) {
	n := hstest.NewNetwork(t, "hs1.test", "hs2.test")
	noLimits := func(c *config.Config) { c.RateLimits = config.RateLimits{} }
	hs1 := n.Start(t, "hs1.test", noLimits)
	hs2 := n.Start(t, "hs2.test", noLimits)
	ctx := context.Background()
	alice, bob := registerOn(t, hs1, "alice"), registerOn(t, hs2, "bob")

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatalf("remote join: %v", err)
	}
	var aliceSince, bobSince string
	syncUntil(t, alice, &aliceSince, "bob's join", func(r *mautrix.RespSync) bool {
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
	syncUntil(t, bob, &bobSince, "the joined room", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Join[room.RoomID]; return ok })

	// Typing on hs1 shows on hs2, and so does its end.
	if _, err := alice.UserTyping(ctx, room.RoomID, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	typing := func(want ...mid.UserID) func(*mautrix.RespSync) bool {
		return func(r *mautrix.RespSync) bool {
			evs := ephemeralContents(r, room.RoomID, "m.typing")
			var c mevent.TypingEventContent
			return len(evs) > 0 && json.Unmarshal(evs[len(evs)-1], &c) == nil && slices.Equal(c.UserIDs, want)
		}
	}
	syncUntil(t, bob, &bobSince, "alice typing, on hs2", typing(alice.UserID))
	if _, err := alice.UserTyping(ctx, room.RoomID, false, 0); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, &bobSince, "alice no longer typing, on hs2", typing())

	// A read receipt each way; a private one stays home.
	receipt := func(eventID mid.EventID, user mid.UserID, typ string) func(*mautrix.RespSync) bool {
		return func(r *mautrix.RespSync) bool {
			for _, raw := range ephemeralContents(r, room.RoomID, "m.receipt") {
				var c map[string]map[string]map[string]struct {
					TS int64 `json:"ts"`
				}
				if json.Unmarshal(raw, &c) == nil && c[eventID.String()][typ][user.String()].TS > 0 {
					return true
				}
			}
			return false
		}
	}
	msg, err := bob.SendText(ctx, room.RoomID, "hello from hs2")
	if err != nil {
		t.Fatal(err)
	}
	syncUntil(t, alice, &aliceSince, "bob's message", func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room.RoomID]
		return ok && slices.ContainsFunc(jr.Timeline.Events, func(ev *mevent.Event) bool { return ev.ID == msg.EventID })
	})
	if err := alice.SendReceipt(ctx, room.RoomID, msg.EventID, mevent.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, &bobSince, "alice's receipt, on hs2", receipt(msg.EventID, alice.UserID, "m.read"))
	reply, err := alice.SendText(ctx, room.RoomID, "hello from hs1")
	if err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, &bobSince, "alice's reply", func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room.RoomID]
		return ok && slices.ContainsFunc(jr.Timeline.Events, func(ev *mevent.Event) bool { return ev.ID == reply.EventID })
	})
	if err := bob.SendReceipt(ctx, room.RoomID, reply.EventID, mevent.ReceiptTypeReadPrivate, nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendReceipt(ctx, room.RoomID, reply.EventID, mevent.ReceiptTypeRead, &mautrix.ReqSendReceipt{ThreadID: "main"}); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, alice, &aliceSince, "bob's receipt, on hs1", receipt(reply.EventID, bob.UserID, "m.read"))
	if rows := countReceipts(t, hs1, bob.UserID.String(), "m.read.private"); rows != 0 {
		t.Fatalf("bob's private receipt reached hs1 (%d rows)", rows)
	}

	// Presence set on hs1 shows on hs2.
	if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: mevent.PresenceOnline, StatusMsg: "federating"}); err != nil {
		t.Fatal(err)
	}
	syncUntil(t, bob, &bobSince, "alice's presence, on hs2", func(r *mautrix.RespSync) bool {
		for _, ev := range r.Presence.Events {
			var c mevent.PresenceEventContent
			if ev.Sender == alice.UserID && json.Unmarshal(ev.Content.VeryRaw, &c) == nil && c.StatusMessage == "federating" {
				return true
			}
		}
		return false
	})
	if p, err := bob.GetPresence(ctx, alice.UserID); err != nil || p.Presence != mevent.PresenceOnline || p.StatusMsg != "federating" {
		t.Fatalf("alice's presence read on hs2: %+v %v", p, err)
	}
}

func countReceipts(t *testing.T, srv *hstest.Server, userID, typ string) int {
	t.Helper()
	var n int
	if err := srv.DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM receipts WHERE user_id = $1 AND receipt_type = $2`, userID, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
