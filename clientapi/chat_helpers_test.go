package clientapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"
)

// Helpers of the chat tests (relations, directories, search, upgrades,
// reports, server notices).

const chatV1 = "/_matrix/client/v1"

// chatRoom creates a room as cli with the given request and returns its ID.
func chatRoom(t *testing.T, cli *mautrix.Client, req *mautrix.ReqCreateRoom) mid.RoomID {
	t.Helper()
	resp, err := cli.CreateRoom(ctx, req)
	if err != nil {
		t.Fatalf("creating a room: %v", err)
	}
	return resp.RoomID
}

// chatJoin joins cli to a room.
func chatJoin(t *testing.T, cli *mautrix.Client, roomID mid.RoomID) {
	t.Helper()
	if _, err := cli.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatalf("%s joining %s: %v", cli.UserID, roomID, err)
	}
}

// chatSend sends an event and returns its ID.
func chatSend(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, eventType string, content map[string]any) mid.EventID {
	t.Helper()
	resp, err := cli.SendMessageEvent(ctx, roomID, mevent.NewEventType(eventType), content)
	if err != nil {
		t.Fatalf("%s sending %s: %v", cli.UserID, eventType, err)
	}
	return resp.EventID
}

// chatText sends a text message.
func chatText(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, body string) mid.EventID {
	t.Helper()
	return chatSend(t, cli, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body})
}

// chatRel sends a message related to parent.
func chatRel(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, relType string, parent mid.EventID, body string) mid.EventID {
	t.Helper()
	content := map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": relType, "event_id": parent}}
	if relType == "m.replace" {
		content["m.new_content"] = map[string]any{"msgtype": "m.text", "body": body}
	}
	return chatSend(t, cli, roomID, "m.room.message", content)
}

// chatGet is an authenticated GET answered with 200.
func chatGet(t *testing.T, e *env, cli *mautrix.Client, path string) map[string]any {
	t.Helper()
	status, body, _ := e.call(http.MethodGet, path, cli.AccessToken, nil)
	wantOK(t, "GET "+path, status, body)
	return body
}

// chatPost is an authenticated POST answered with 200.
func chatPost(t *testing.T, e *env, cli *mautrix.Client, path string, req any) map[string]any {
	t.Helper()
	status, body, _ := e.call(http.MethodPost, path, cli.AccessToken, req)
	wantOK(t, "POST "+path, status, body)
	return body
}

// dig walks nested JSON objects; nil when a key is missing.
func chatDig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// list reads a JSON array.
func chatList(v any) []any {
	l, _ := v.([]any)
	return l
}

// chatIDs lists the event_id of each event of a JSON array.
func chatIDs(v any) []string {
	var out []string
	for _, ev := range chatList(v) {
		id, _ := chatDig(ev, "event_id").(string)
		out = append(out, id)
	}
	return out
}

// chatFind returns the event with the ID from a JSON array.
func chatFind(v any, eventID mid.EventID) map[string]any {
	for _, ev := range chatList(v) {
		if chatDig(ev, "event_id") == string(eventID) {
			m, _ := ev.(map[string]any)
			return m
		}
	}
	return nil
}

func chatSameIDs(got []string, want ...mid.EventID) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != string(want[i]) {
			return false
		}
	}
	return true
}

func chatEscape(s any) string { return url.PathEscape(fmt.Sprint(s)) }

// chatRoomPath is the v3 path of a room's endpoint.
func chatRoomPath(roomID mid.RoomID, rest string) string {
	return v3 + "/rooms/" + chatEscape(roomID) + rest
}

// chatIndexed waits until the server's event indexes hold everything sent
// so far: GET /relations waits for them. Bundled aggregations read the
// relations index without waiting (the relations listener fills it before
// a send is answered); tests call this first anyway, so that what they
// check does not depend on that ordering.
func chatIndexed(t *testing.T, e *env, cli *mautrix.Client, roomID mid.RoomID, eventID mid.EventID) {
	t.Helper()
	chatGet(t, e, cli, chatV1+"/rooms/"+chatEscape(roomID)+"/relations/"+chatEscape(eventID)+"?limit=1")
}
