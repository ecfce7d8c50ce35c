package clientapi_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
)

// The event IDs of room version 3 are standard base64 and may hold "/",
// which clients send percent-encoded inside one path segment. Endpoints
// taking an event ID in the path must find the event.
func TestEventIDsWithSlashesInPaths(t *testing.T) {
	srv := hstest.Start(t, hstest.Options{Configure: func(c *config.Config) { c.RateLimits = config.RateLimits{} }})
	ctx := context.Background()
	alice := roomUser(t, srv, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "3"})
	if err != nil {
		t.Fatal(err)
	}
	// About half of all v3 event IDs hold a slash.
	var slashed mid.EventID
	for i := 0; i < 64 && slashed == ""; i++ {
		resp, err := alice.SendText(ctx, room.RoomID, fmt.Sprintf("message %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(resp.EventID.String(), "/") {
			slashed = resp.EventID
		}
	}
	if slashed == "" {
		t.Fatal("no event ID with a slash in 64 messages")
	}
	ev, err := alice.GetEvent(ctx, room.RoomID, slashed)
	if err != nil || ev.ID != slashed {
		t.Fatalf("GET /event/%s: %v %v", url.PathEscape(slashed.String()), ev, err)
	}
	if c, err := alice.Context(ctx, room.RoomID, slashed, nil, 1); err != nil || c.Event.ID != slashed {
		t.Fatalf("/context: %v", err)
	}
	if _, err := alice.GetRelations(ctx, room.RoomID, slashed, &mautrix.ReqGetRelations{}); err != nil {
		t.Fatalf("/relations: %v", err)
	}
	if _, err := alice.RedactEvent(ctx, room.RoomID, slashed); err != nil {
		t.Fatalf("/redact: %v", err)
	}
	ev, err = alice.GetEvent(ctx, room.RoomID, slashed)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ev.Content.Raw["body"]; ok {
		t.Fatalf("the redacted event still has its body: %v", ev.Content.Raw)
	}
}
