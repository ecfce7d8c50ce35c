package clientapi_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
)

// An organisation federating with servers that lack the newest room
// version sets default_room_version: new rooms get it, and /capabilities
// tells clients so.
func TestConfiguredDefaultRoomVersion(t *testing.T) {
	srv := hstest.Start(t, hstest.Options{Configure: func(c *config.Config) {
		c.RateLimits = config.RateLimits{}
		c.DefaultRoomVersion = "10"
	}})
	ctx := context.Background()
	alice := roomUser(t, srv, "alice")
	caps, err := alice.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if caps.RoomVersions == nil || caps.RoomVersions.Default != "10" || caps.RoomVersions.Available["12"] != "stable" {
		t.Fatalf("m.room_versions: %+v", caps.RoomVersions)
	}
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	var create mevent.CreateEventContent
	if err := alice.StateEvent(ctx, room.RoomID, mevent.StateCreate, "", &create); err != nil {
		t.Fatal(err)
	}
	if create.RoomVersion != "10" {
		t.Fatalf("room version %q, want the configured 10", create.RoomVersion)
	}
}
