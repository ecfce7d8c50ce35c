package federation_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
)

// TestServerACLAcrossServers: once a room's ACL denies hs2, hs1 refuses
// hs2's events for the room, and keeps accepting hs3's.
func TestServerACLAcrossServers(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test", "hs3.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	hs3 := n.start(t, "hs3.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	carol := fedUser(t, hs3, "carol")
	aliceSync := &syncer{t: t, cli: alice}
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cli := range []*mautrix.Client{bob, carol} {
		if _, err := cli.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.SendText(ctx, room.RoomID, "before the ACL"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("bob's message before the ACL", hasMessage(room.RoomID, "before the ACL"))

	if _, err := alice.SendStateEvent(ctx, room.RoomID, mevent.StateServerACL, "",
		map[string]any{"allow": []string{"*"}, "deny": []string{"hs2.test"}, "allow_ip_literals": false}); err != nil {
		t.Fatal(err)
	}
	// hs2 learns of the ACL too (it is in the room) but may still send; the
	// point is what hs1 accepts. Give the ACL time to reach hs2 and hs3.
	time.Sleep(500 * time.Millisecond)
	_, _ = bob.SendText(ctx, room.RoomID, "after the ACL")
	if _, err := carol.SendText(ctx, room.RoomID, "carol is still welcome"); err != nil {
		t.Fatal(err)
	}
	aliceSync.waitFor("carol's message", hasMessage(room.RoomID, "carol is still welcome"))
	// Wait until hs1 has answered hs2's transaction: hs2's queue for hs1
	// is empty once it has.
	deadline := time.Now().Add(20 * time.Second)
	for {
		queued, err := hs2.DB.OutboundCount(ctx, "hs1.test")
		if err != nil {
			t.Fatal(err)
		}
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hs2 still has %d events queued for hs1", queued)
		}
		time.Sleep(50 * time.Millisecond)
	}
	page, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range page.Chunk {
		if ev.Type == mevent.EventMessage {
			_ = ev.Content.ParseRaw(ev.Type)
			if ev.Content.AsMessage().Body == "after the ACL" {
				t.Fatal("hs1 accepted an event from a server the room's ACL denies")
			}
		}
	}
}
