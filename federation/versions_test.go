package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mid "maunium.net/go/mautrix/id"
)

// Every room version (1-12) works across servers in both directions:
// make_join/send_join, messages both ways, an invite (invite v2), and
// make_leave/send_leave. The versions differ in event ID format, redaction
// and auth rules, state resolution and (12) room IDs.
func TestEveryRoomVersionAcrossServers(t *testing.T) {
	_, _, alice, bob := twoServers(t)
	ctx := context.Background()
	for v := 1; v <= 12; v++ {
		version := mid.RoomVersion(fmt.Sprint(v))
		for _, dir := range []struct {
			name            string
			creator, joiner *mautrix.Client
			creatorServer   string
		}{{"hs2 joins hs1's room", alice, bob, "hs1.test"}, {"hs1 joins hs2's room", bob, alice, "hs2.test"}} {
			t.Run("v"+string(version)+" "+dir.name, func(t *testing.T) {
				creator, joiner := dir.creator, dir.joiner
				room, err := creator.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: version})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := joiner.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{dir.creatorServer}}); err != nil {
					t.Fatalf("join: %v", err)
				}
				waitMembership(t, creator, room.RoomID, joiner.UserID, "join")
				if _, err := joiner.SendText(ctx, room.RoomID, "from the joiner"); err != nil {
					t.Fatal(err)
				}
				if _, err := creator.SendText(ctx, room.RoomID, "from the creator"); err != nil {
					t.Fatal(err)
				}
				for _, cli := range []*mautrix.Client{creator, joiner} {
					eventually(t, 20*time.Second, "both messages on "+cli.UserID.Homeserver(), func() error {
						// Sent at about the same time from two servers:
						// either order is right.
						got := bodies(history(t, cli, room.RoomID, 100))
						if err := hasBodies(got, []string{"from the joiner"}); err != nil {
							return err
						}
						return hasBodies(got, []string{"from the creator"})
					})
				}
				if _, err := joiner.LeaveRoom(ctx, room.RoomID); err != nil {
					t.Fatalf("leave: %v", err)
				}
				waitMembership(t, creator, room.RoomID, joiner.UserID, "leave")
				// Invited back into a private room of the same version.
				private, err := creator.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: version,
					Invite: []mid.UserID{joiner.UserID}})
				if err != nil {
					t.Fatalf("create with a remote invite: %v", err)
				}
				eventually(t, 20*time.Second, "the invite", func() error {
					_, err := joiner.JoinRoom(ctx, private.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{dir.creatorServer}})
					return err
				})
				waitMembership(t, creator, private.RoomID, joiner.UserID, "join")
			})
		}
	}
}
