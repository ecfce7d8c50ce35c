package clientapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage/storagetest"
)

func init() { users.UseMinimumBcryptCostForTests() }

// roomUser registers a user on srv with the m.login.dummy flow and returns
// a logged-in mautrix client.
func roomUser(t testing.TB, srv *hstest.Server, name string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(srv.ClientURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: name, Password: "password-" + name})
	if err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
	return cli
}

// roomHTTP sends a raw request and decodes the JSON answer.
func roomHTTP(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func errcode(err error) string {
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.RespError != nil {
		return herr.RespError.ErrCode
	}
	return ""
}

func TestRoomsOverHTTP(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			srv := hstest.Start(t, hstest.Options{DSN: e.DSN, Configure: func(c *config.Config) {
				c.RateLimits.MessageSending.PerSecond = 1000
				c.RateLimits.MessageSending.Burst = 1000
			}})
			testRoomsOverHTTP(t, srv)
		})
	}
}

func testRoomsOverHTTP(t *testing.T, srv *hstest.Server) {
	ctx := context.Background()
	alice := roomUser(t, srv, "alice")
	bob := roomUser(t, srv, "bob")
	carol := roomUser(t, srv, "carol")

	// Each preset creates a usable room.
	for _, preset := range []string{"private_chat", "trusted_private_chat", "public_chat"} {
		r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: preset, Name: preset})
		if err != nil {
			t.Fatalf("createRoom %s: %v", preset, err)
		}
		var jr mevent.JoinRulesEventContent
		if err := alice.StateEvent(ctx, r.RoomID, mevent.StateJoinRules, "", &jr); err != nil {
			t.Fatal(err)
		}
		want := mevent.JoinRuleInvite
		if preset == "public_chat" {
			want = mevent.JoinRulePublic
		}
		if jr.JoinRule != want {
			t.Fatalf("%s: join rule %s", preset, jr.JoinRule)
		}
	}

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Project", Topic: "plans",
		RoomAliasName: "project", Invite: []mid.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	roomID := room.RoomID
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomAliasName: "project"}); errcode(err) != "M_ROOM_IN_USE" {
		t.Fatalf("duplicate alias: %v", err)
	}
	// Carol is not invited: she cannot join, read or send.
	if _, err := carol.JoinRoom(ctx, roomID.String(), nil); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("uninvited join: %v", err)
	}
	if _, err := carol.SendText(ctx, roomID, "intrusion"); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("outsider send: %v", err)
	}
	if _, err := carol.State(ctx, roomID); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("outsider state: %v", err)
	}

	// Bob's sync shows the invite; he joins by alias.
	bsync, err := bob.SyncRequest(ctx, 0, "", "", false, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := bsync.Rooms.Invite[roomID]; !ok {
		t.Fatalf("no invite in bob's sync: %+v", bsync.Rooms)
	}
	if j, err := bob.JoinRoom(ctx, "#project:localhost", nil); err != nil || j.RoomID != roomID {
		t.Fatalf("join by alias: %v %v", j, err)
	}
	since := bsync.NextBatch

	// Long-poll: bob waits, alice speaks, bob's sync returns it.
	type syncResult struct {
		resp *mautrix.RespSync
		err  error
	}
	waiting := make(chan syncResult, 1)
	go func() {
		r, err := bob.SyncRequest(ctx, 20000, since, "", false, mevent.PresenceOnline)
		waiting <- syncResult{r, err}
	}()
	// The first long-poll returns at once with bob's join; poll again.
	first := <-waiting
	if first.err != nil {
		t.Fatal(first.err)
	}
	since = first.resp.NextBatch
	go func() {
		r, err := bob.SyncRequest(ctx, 20000, since, "", false, mevent.PresenceOnline)
		waiting <- syncResult{r, err}
	}()
	time.Sleep(100 * time.Millisecond)
	sent, err := alice.SendText(ctx, roomID, "hello bob")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-waiting:
		if res.err != nil {
			t.Fatal(res.err)
		}
		tl := res.resp.Rooms.Join[roomID].Timeline.Events
		if len(tl) != 1 || tl[0].ID != sent.EventID {
			t.Fatalf("long-poll timeline %+v", tl)
		}
		since = res.resp.NextBatch
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll did not wake")
	}

	// 100 messages between the two, then paginate back and forward.
	for i := 0; i < 100; i++ {
		cli := alice
		if i%2 == 1 {
			cli = bob
		}
		if _, err := cli.SendText(ctx, roomID, fmt.Sprintf("message %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var bodies []string
	from := ""
	for pages := 0; pages < 30; pages++ {
		page, err := bob.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 17)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Chunk {
			if ev.Type == mevent.EventMessage {
				_ = ev.Content.ParseRaw(ev.Type)
				bodies = append(bodies, ev.Content.AsMessage().Body)
			}
		}
		if page.End == "" {
			break
		}
		from = page.End
	}
	if len(bodies) != 101 || bodies[0] != "message 99" || bodies[100] != "hello bob" {
		t.Fatalf("back-paginated %d messages: first %q last %q", len(bodies), bodies[0], bodies[len(bodies)-1])
	}
	fwd, err := bob.Messages(ctx, roomID, "", "", mautrix.DirectionForward, nil, 5)
	if err != nil || len(fwd.Chunk) != 5 || fwd.Chunk[0].Type != mevent.StateCreate {
		t.Fatalf("forward pagination from the start: %v %+v", err, fwd)
	}

	// Incremental sync after the burst is limited, with a prev_batch.
	inc, err := bob.SyncRequest(ctx, 0, since, "", false, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	jr := inc.Rooms.Join[roomID]
	if !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" || len(jr.Timeline.Events) == 0 {
		t.Fatalf("incremental sync after 100 messages: limited=%v prev=%q n=%d", jr.Timeline.Limited, jr.Timeline.PrevBatch, len(jr.Timeline.Events))
	}
	since = inc.NextBatch

	// Idempotent resend with the same transaction ID.
	txn := mautrix.ReqSendEvent{TransactionID: "txn-1"}
	r1, err := alice.SendMessageEvent(ctx, roomID, mevent.EventMessage, map[string]any{"msgtype": "m.text", "body": "once"}, txn)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := alice.SendMessageEvent(ctx, roomID, mevent.EventMessage, map[string]any{"msgtype": "m.text", "body": "once"}, txn)
	if err != nil || r2.EventID != r1.EventID {
		t.Fatalf("resend gave %v (%v), want %s", r2, err, r1.EventID)
	}

	// State: topic write and read, full state.
	if _, err := alice.SendStateEvent(ctx, roomID, mevent.StateTopic, "", map[string]string{"topic": "new plans"}); err != nil {
		t.Fatal(err)
	}
	var topic mevent.TopicEventContent
	if err := bob.StateEvent(ctx, roomID, mevent.StateTopic, "", &topic); err != nil || topic.Topic != "new plans" {
		t.Fatalf("topic %q %v", topic.Topic, err)
	}
	// Bob has power 0: he may not change the name.
	if _, err := bob.SendStateEvent(ctx, roomID, mevent.StateRoomName, "", map[string]string{"name": "mine"}); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("unprivileged state change: %v", err)
	}

	// Redaction.
	if _, err := alice.RedactEvent(ctx, roomID, r1.EventID); err != nil {
		t.Fatal(err)
	}
	red, err := bob.GetEvent(ctx, roomID, r1.EventID)
	if err != nil || len(red.Content.Raw) != 0 || red.Unsigned.RedactedBecause == nil {
		t.Fatalf("redacted event: %+v %v", red, err)
	}

	// Members and joined members.
	jm, err := alice.JoinedMembers(ctx, roomID)
	if err != nil || len(jm.Joined) != 2 {
		t.Fatalf("joined members: %+v %v", jm, err)
	}

	// Kick, ban, unban, leave, forget.
	if _, err := alice.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	kicked, err := bob.SyncRequest(ctx, 0, since, "", false, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := kicked.Rooms.Leave[roomID]; !ok {
		t.Fatalf("kick not in bob's sync: %+v", kicked.Rooms)
	}
	if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, roomID.String(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, roomID.String(), nil); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("banned user rejoined: %v", err)
	}
	if _, err := alice.UnbanUser(ctx, roomID, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.ForgetRoom(ctx, roomID); err != nil {
		t.Fatalf("forget after leaving: %v", err)
	}
	if _, err := alice.ForgetRoom(ctx, roomID); err == nil {
		t.Fatal("forgot a room while joined")
	}

	// Aliases.
	if _, err := alice.CreateAlias(ctx, "#other:localhost", roomID); err != nil {
		t.Fatal(err)
	}
	if res, err := carol.ResolveAlias(ctx, "#other:localhost"); err != nil || res.RoomID != roomID {
		t.Fatalf("resolve alias: %v %v", res, err)
	}
	if _, err := carol.DeleteAlias(ctx, "#other:localhost"); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("stranger deleted alias: %v", err)
	}
	if _, err := alice.DeleteAlias(ctx, "#other:localhost"); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.ResolveAlias(ctx, "#other:localhost"); errcode(err) != "M_NOT_FOUND" {
		t.Fatalf("deleted alias resolves: %v", err)
	}

	// Bad input gets the right error and writes nothing.
	base := srv.ClientURL + "/_matrix/client/v3/rooms/" + roomID.String()
	tok := alice.AccessToken
	before, _ := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 1)
	for _, tc := range []struct {
		name, method, url, body, errcode string
		status                           int
	}{
		{"malformed JSON", "PUT", base + "/send/m.room.message/bad1", "{nope", "M_NOT_JSON", 400},
		{"not an object", "PUT", base + "/send/m.room.message/bad2", "[1,2]", "M_BAD_JSON", 400},
		{"wrong type", "POST", srv.ClientURL + "/_matrix/client/v3/createRoom", `{"name": 5}`, "M_BAD_JSON", 400},
		{"unknown room", "PUT", srv.ClientURL + "/_matrix/client/v3/rooms/!nope:localhost/send/m.room.message/bad3", `{"body":"x"}`, "M_FORBIDDEN", 403},
		{"oversized event", "PUT", base + "/send/m.room.message/bad4", `{"body":"` + strings.Repeat("x", 70000) + `"}`, "M_TOO_LARGE", 413},
		{"bad room version", "POST", srv.ClientURL + "/_matrix/client/v3/createRoom", `{"room_version": "99"}`, "M_UNSUPPORTED_ROOM_VERSION", 400},
		{"bad dir", "GET", base + "/messages?dir=x", "", "M_INVALID_PARAM", 400},
	} {
		status, body := roomHTTP(t, tc.method, tc.url, tok, tc.body)
		if status != tc.status || body["errcode"] != tc.errcode {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, body, tc.status, tc.errcode)
		}
	}
	if status, body := roomHTTP(t, "PUT", base+"/send/m.room.message/x", "bad-token", `{"body":"x"}`); status != 401 || body["errcode"] != "M_UNKNOWN_TOKEN" {
		t.Errorf("bad token: %d %v", status, body)
	}
	after, _ := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 1)
	if before.Chunk[0].ID != after.Chunk[0].ID {
		t.Fatal("a refused request wrote an event")
	}

	// The r0 prefix and the access_token query parameter work too.
	status, body := roomHTTP(t, "GET", srv.ClientURL+"/_matrix/client/r0/joined_rooms?access_token="+tok, "", nil)
	if status != 200 || len(body["joined_rooms"].([]any)) < 4 {
		t.Fatalf("r0 joined_rooms: %d %v", status, body)
	}

	// A restart keeps everything, and the same sync token continues.
	srv.Restart()
	alice.HomeserverURL, _ = alice.HomeserverURL.Parse(srv.ClientURL)
	bob.HomeserverURL, _ = bob.HomeserverURL.Parse(srv.ClientURL)
	if _, err := bob.JoinRoom(ctx, "#project:localhost", nil); errcode(err) != "M_FORBIDDEN" {
		t.Fatalf("after restart, bob (unbanned, not invited) joined an invite-only room: %v", err)
	}
	mark := kicked.NextBatch
	afterRestart, err := alice.SendText(ctx, roomID, "after restart")
	if err != nil {
		t.Fatal(err)
	}
	as, err := alice.SyncRequest(ctx, 0, mark, "", false, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range as.Rooms.Join[roomID].Timeline.Events {
		found = found || ev.ID == afterRestart.EventID
	}
	if !found {
		t.Fatal("sync with a token from before the restart misses a new event")
	}
}

func TestSendAndCreateRoomAreRateLimited(t *testing.T) {
	srv := hstest.Start(t, hstest.Options{Configure: func(c *config.Config) {
		c.RateLimits.MessageSending.PerSecond, c.RateLimits.MessageSending.Burst = 0.01, 3
		c.RateLimits.RoomCreation.PerSecond, c.RateLimits.RoomCreation.Burst = 0.01, 1
	}})
	ctx := context.Background()
	alice := roomUser(t, srv, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{}); errcode(err) != "M_LIMIT_EXCEEDED" {
		t.Fatalf("second room: %v, want M_LIMIT_EXCEEDED", err)
	}
	var status int
	var body map[string]any
	for i := 0; i < 4; i++ {
		status, body = roomHTTP(t, "PUT", fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/rl%d", srv.ClientURL, room.RoomID, i),
			alice.AccessToken, `{"msgtype":"m.text","body":"x"}`)
	}
	if status != 429 || body["errcode"] != "M_LIMIT_EXCEEDED" || body["retry_after_ms"] == nil {
		t.Fatalf("fourth send: %d %v", status, body)
	}
}
