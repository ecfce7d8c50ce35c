package federation_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
)

// TestKnockAcrossServers: bob on hs2 knocks on a knockable room on hs1,
// alice sees the knock and invites him, and he joins.
func TestKnockAcrossServers(t *testing.T) {
	_, _, alice, bob := twoServers(t)
	ctx := context.Background()
	aliceSync := &syncer{t: t, cli: alice}
	bobSync := &syncer{t: t, cli: bob}
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	bobSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Knock first",
		InitialState: []*mevent.Event{{Type: mevent.StateJoinRules, StateKey: new(string),
			Content: mevent.Content{Raw: map[string]any{"join_rule": "knock"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.KnockRoom(ctx, room.RoomID.String(), &mautrix.ReqKnockRoom{Via: []string{"hs1.test"}, Reason: "let me in"}); err != nil {
		t.Fatalf("remote knock: %v", err)
	}
	bobSync.waitFor("the knocked room", func(r *mautrix.RespSync) bool { _, ok := r.Rooms.Knock[room.RoomID]; return ok })
	aliceSync.waitFor("bob's knock", func(r *mautrix.RespSync) bool {
		jr, ok := r.Rooms.Join[room.RoomID]
		if !ok {
			return false
		}
		for _, ev := range jr.Timeline.Events {
			if ev.Type == mevent.StateMember && ev.GetStateKey() == bob.UserID.String() {
				_ = ev.Content.ParseRaw(ev.Type)
				if ev.Content.AsMember().Membership == mevent.MembershipKnock {
					return true
				}
			}
		}
		return false
	})
	if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatalf("joining after the knock was answered: %v", err)
	}
	if _, err := bob.SendText(ctx, room.RoomID, "thanks for letting me in"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("bob's message", hasMessage(room.RoomID, "thanks for letting me in"))
}
