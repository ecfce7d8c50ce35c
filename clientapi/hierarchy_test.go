package clientapi_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
)

func TestSpaceHierarchy(t *testing.T) {
	srv := hstest.Start(t, hstest.Options{Configure: func(c *config.Config) { c.RateLimits = config.RateLimits{} }})
	ctx := context.Background()
	alice := roomUser(t, srv, "alice")
	bob := roomUser(t, srv, "bob")
	space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Agency",
		CreationContent: map[string]any{"type": "m.space"}})
	if err != nil {
		t.Fatal(err)
	}
	public, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Lobby"})
	if err != nil {
		t.Fatal(err)
	}
	private, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Board"})
	if err != nil {
		t.Fatal(err)
	}
	removed, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Old"})
	if err != nil {
		t.Fatal(err)
	}
	child := func(roomID string, content map[string]any) {
		if _, err := alice.SendStateEvent(ctx, space.RoomID, mevent.StateSpaceChild, roomID, content); err != nil {
			t.Fatal(err)
		}
	}
	child(public.RoomID.String(), map[string]any{"via": []string{"localhost"}, "suggested": true, "order": "a"})
	child(private.RoomID.String(), map[string]any{"via": []string{"localhost"}, "order": "b"})
	child(removed.RoomID.String(), map[string]any{}) // no via: not a child

	get := func(cli *mautrix.Client, query string) (int, map[string]any) {
		return roomHTTP(t, "GET", srv.ClientURL+"/_matrix/client/v1/rooms/"+url.PathEscape(space.RoomID.String())+"/hierarchy?"+query, cli.AccessToken, nil)
	}
	names := func(body map[string]any) []string {
		var out []string
		rooms, _ := body["rooms"].([]any)
		for _, r := range rooms {
			m := r.(map[string]any)
			out = append(out, fmt.Sprint(m["name"]))
		}
		return out
	}
	status, body := get(bob, "")
	if status != 200 || fmt.Sprint(names(body)) != "[Agency Lobby]" {
		t.Fatalf("bob's view: %d %v", status, names(body))
	}
	root := body["rooms"].([]any)[0].(map[string]any)
	if root["room_type"] != "m.space" || len(root["children_state"].([]any)) != 2 {
		t.Fatalf("root entry: %v", root)
	}
	if _, body := get(alice, ""); fmt.Sprint(names(body)) != "[Agency Lobby Board]" {
		t.Fatalf("alice's view: %v", names(body))
	}
	if _, body := get(alice, "suggested_only=true"); fmt.Sprint(names(body)) != "[Agency Lobby]" {
		t.Fatalf("suggested only: %v", names(body))
	}
	if _, body := get(alice, "max_depth=0"); fmt.Sprint(names(body)) != "[Agency]" {
		t.Fatalf("max_depth 0: %v", names(body))
	}
	status, page1 := get(alice, "limit=2")
	next, _ := page1["next_batch"].(string)
	if status != 200 || len(names(page1)) != 2 || next == "" {
		t.Fatalf("first page: %d %v", status, page1)
	}
	if _, page2 := get(alice, "limit=2&from="+url.QueryEscape(next)); fmt.Sprint(names(page2)) != "[Board]" || page2["next_batch"] != nil {
		t.Fatalf("second page: %v", page2)
	}
	if status, body := get(alice, "limit=2&max_depth=1&from="+url.QueryEscape(next)); status != 400 || body["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("changed max_depth between pages: %d %v", status, body)
	}
	status, body = roomHTTP(t, "GET", srv.ClientURL+"/_matrix/client/v1/rooms/"+url.PathEscape(private.RoomID.String())+"/hierarchy", bob.AccessToken, nil)
	if status != 403 || body["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("a private room's hierarchy for an outsider: %d %v", status, body)
	}
}
