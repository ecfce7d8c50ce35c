package federation_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
)

// TestRestrictedJoinAcrossServers: a room on hs1 lets in members of
// another room; bob on hs2 cannot join it before joining that room and can
// after, with hs1 authorising the join (join_authorised_via_users_server).
func TestRestrictedJoinAcrossServers(t *testing.T) {
	_, _, alice, bob := twoServers(t)
	ctx := context.Background()
	aliceSync := &syncer{t: t, cli: alice}
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Agency space", RoomVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	empty := ""
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Staff only", RoomVersion: "10",
		InitialState: []*mevent.Event{{Type: mevent.StateJoinRules, StateKey: &empty, Content: mevent.Content{Raw: map[string]any{
			"join_rule": "restricted",
			"allow":     []any{map[string]any{"type": "m.room_membership", "room_id": space.RoomID.String()}},
		}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err == nil {
		t.Fatal("bob joined a restricted room without being in the allowed room")
	}
	if _, err := bob.JoinRoom(ctx, space.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatalf("restricted join as a member of the allowed room: %v", err)
	}
	if _, err := bob.SendText(ctx, room.RoomID, "in through the space"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("bob's message", hasMessage(room.RoomID, "in through the space"))
}
