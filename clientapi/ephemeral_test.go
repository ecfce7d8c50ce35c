package clientapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/receipts"
	"github.com/parley-chat/parley/storage"
)

// ephFollower follows one client's /sync stream.
type ephFollower struct {
	t        *testing.T
	cli      *mautrix.Client
	since    string
	presence mevent.Presence
	// all holds every response, to check that something never appeared.
	all []*mautrix.RespSync
}

func follow(t *testing.T, cli *mautrix.Client) *ephFollower {
	t.Helper()
	f := &ephFollower{t: t, cli: cli}
	f.sync(0)
	return f
}

func (f *ephFollower) sync(timeoutMS int) *mautrix.RespSync {
	f.t.Helper()
	resp, err := f.cli.SyncRequest(ctx, timeoutMS, f.since, "", false, f.presence)
	if err != nil {
		f.t.Fatalf("sync: %v", err)
	}
	f.since = resp.NextBatch
	f.all = append(f.all, resp)
	return resp
}

// waitFor syncs until match accepts a response.
func (f *ephFollower) waitFor(what string, match func(*mautrix.RespSync) bool) *mautrix.RespSync {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if r := f.sync(1000); match(r) {
			return r
		}
	}
	f.t.Fatalf("%s: not seen in /sync", what)
	return nil
}

// ephemeralOf lists the contents of a joined room's ephemeral events of a
// type.
func ephemeralOf(r *mautrix.RespSync, roomID mid.RoomID, typ string) []json.RawMessage {
	jr, ok := r.Rooms.Join[roomID]
	if !ok {
		return nil
	}
	var out []json.RawMessage
	for _, ev := range jr.Ephemeral.Events {
		if ev.Type.Type == typ {
			out = append(out, ev.Content.VeryRaw)
		}
	}
	return out
}

// typingIs matches a response whose m.typing in the room lists exactly users.
func typingIs(roomID mid.RoomID, users ...mid.UserID) func(*mautrix.RespSync) bool {
	return func(r *mautrix.RespSync) bool {
		evs := ephemeralOf(r, roomID, "m.typing")
		if len(evs) == 0 {
			return false
		}
		var c mevent.TypingEventContent
		if json.Unmarshal(evs[len(evs)-1], &c) != nil {
			return false
		}
		return slices.Equal(c.UserIDs, users) || len(users) == 0 && len(c.UserIDs) == 0
	}
}

// receiptEntry is one receipt as an m.receipt event shows it.
type receiptEntry struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id"`
}

// receiptsOf merges the m.receipt events of a room: event ID → receipt
// type → user ID → receipt.
func receiptsOf(r *mautrix.RespSync, roomID mid.RoomID) map[string]map[string]map[string]receiptEntry {
	out := map[string]map[string]map[string]receiptEntry{}
	for _, raw := range ephemeralOf(r, roomID, "m.receipt") {
		var c map[string]map[string]map[string]receiptEntry
		if json.Unmarshal(raw, &c) != nil {
			continue
		}
		for ev, byType := range c {
			if out[ev] == nil {
				out[ev] = map[string]map[string]receiptEntry{}
			}
			for typ, byUser := range byType {
				if out[ev][typ] == nil {
					out[ev][typ] = map[string]receiptEntry{}
				}
				for u, rec := range byUser {
					out[ev][typ][u] = rec
				}
			}
		}
	}
	return out
}

func hasReceipt(roomID mid.RoomID, eventID mid.EventID, typ string, user mid.UserID, thread string) func(*mautrix.RespSync) bool {
	return func(r *mautrix.RespSync) bool {
		rec, ok := receiptsOf(r, roomID)[eventID.String()][typ][user.String()]
		return ok && rec.ThreadID == thread && rec.TS > 0
	}
}

// anyPrivateReceipt reports whether any response showed an m.read.private
// receipt of user.
func anyPrivateReceipt(rs []*mautrix.RespSync, roomID mid.RoomID, user mid.UserID) bool {
	for _, r := range rs {
		for _, byType := range receiptsOf(r, roomID) {
			if _, ok := byType["m.read.private"][user.String()]; ok {
				return true
			}
		}
	}
	return false
}

// presenceIn returns the content of user's last m.presence event.
func presenceIn(r *mautrix.RespSync, user mid.UserID) (map[string]any, bool) {
	var out map[string]any
	for _, ev := range r.Presence.Events {
		if ev.Type.Type == "m.presence" && ev.Sender == user {
			out = nil
			if json.Unmarshal(ev.Content.VeryRaw, &out) != nil {
				return nil, false
			}
		}
	}
	return out, out != nil
}

func roomPath(roomID mid.RoomID, rest string) string {
	return v3 + "/rooms/" + url.PathEscape(roomID.String()) + rest
}

// sharedRoom has alice create a public room that bob joins.
func sharedRoom(t *testing.T, alice, bob *mautrix.Client) mid.RoomID {
	t.Helper()
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), nil); err != nil {
		t.Fatal(err)
	}
	return room.RoomID
}

func TestTypingNotifications(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		room := sharedRoom(t, alice, bob)
		bobSync := follow(t, bob)

		if _, err := alice.UserTyping(ctx, room, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		bobSync.waitFor("alice typing", typingIs(room, alice.UserID))
		// A fresh initial sync shows who is typing now.
		if r := follow(t, bob).all[0]; !typingIs(room, alice.UserID)(r) {
			t.Fatalf("initial sync: typing %s", ephemeralOf(r, room, "m.typing"))
		}
		if _, err := alice.UserTyping(ctx, room, false, 0); err != nil {
			t.Fatal(err)
		}
		bobSync.waitFor("alice stopped typing", typingIs(room))

		// Typing expires on its own.
		if _, err := alice.UserTyping(ctx, room, true, time.Second); err != nil {
			t.Fatal(err)
		}
		bobSync.waitFor("alice typing again", typingIs(room, alice.UserID))
		bobSync.waitFor("alice's typing expiring", typingIs(room))

		// Leaving the room ends one's typing.
		if _, err := bob.UserTyping(ctx, room, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		aliceSync := follow(t, alice)
		if !typingIs(room, bob.UserID)(aliceSync.all[0]) {
			t.Fatalf("alice's initial sync: %s", ephemeralOf(aliceSync.all[0], room, "m.typing"))
		}
		if _, err := bob.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("bob's typing ending with his leave", typingIs(room))

		// Only for oneself, only in a joined room, with a well-formed body.
		path := roomPath(room, "/typing/"+url.PathEscape(bob.UserID.String()))
		status, body, _ := e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"typing": true})
		wantError(t, "typing as someone else", status, body, http.StatusForbidden, "M_FORBIDDEN")
		_, err := carol.UserTyping(ctx, room, true, time.Second)
		wantCode(t, "typing in a room one is not in", err, "M_FORBIDDEN")
		path = roomPath(room, "/typing/"+url.PathEscape(alice.UserID.String()))
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"timeout": 1000})
		wantError(t, "typing without typing", status, body, http.StatusBadRequest, "M_BAD_JSON")
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"typing": true, "timeout": -1})
		wantError(t, "negative timeout", status, body, http.StatusBadRequest, "M_INVALID_PARAM")
		// The r0 prefix works too.
		status, body, _ = e.call(http.MethodPut, "/_matrix/client/r0/rooms/"+url.PathEscape(room.String())+"/typing/"+url.PathEscape(alice.UserID.String()),
			alice.AccessToken, map[string]any{"typing": false})
		wantOK(t, "typing under r0", status, body)
	})
}

func TestReceipts(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		room := sharedRoom(t, alice, bob)
		send := func(body string) mid.EventID {
			t.Helper()
			r, err := alice.SendText(ctx, room, body)
			if err != nil {
				t.Fatal(err)
			}
			return r.EventID
		}
		m1, m2, m3 := send("one"), send("two"), send("three")
		var hooked recorder
		e.srv.Receipts.SetHooks(receipts.Hooks{OnReceipt: func(roomID, userID string) { hooked.add(roomID + " " + userID) }})
		aliceSync, bobSync := follow(t, alice), follow(t, bob)

		if err := bob.SendReceipt(ctx, room, m2, mevent.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("bob's read receipt", hasReceipt(room, m2, "m.read", bob.UserID, ""))
		if got := hooked.get(); !slices.Contains(got, room.String()+" "+bob.UserID.String()) {
			t.Fatalf("OnReceipt calls: %v", got)
		}

		// A private receipt reaches its owner only.
		if err := bob.SendReceipt(ctx, room, m3, mevent.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatal(err)
		}
		bobSync.waitFor("bob's private receipt", hasReceipt(room, m3, "m.read.private", bob.UserID, ""))
		aliceSync.sync(0)
		if anyPrivateReceipt(aliceSync.all, room, bob.UserID) {
			t.Fatal("alice was shown bob's private receipt")
		}
		// Initial syncs show the latest receipts, private ones to their
		// owner only.
		if r := follow(t, alice).all[0]; !hasReceipt(room, m2, "m.read", bob.UserID, "")(r) || anyPrivateReceipt([]*mautrix.RespSync{r}, room, bob.UserID) {
			t.Fatalf("alice's initial sync: %v", receiptsOf(r, room))
		}
		if r := follow(t, bob).all[0]; !hasReceipt(room, m3, "m.read.private", bob.UserID, "")(r) || !hasReceipt(room, m2, "m.read", bob.UserID, "")(r) {
			t.Fatalf("bob's initial sync: %v", receiptsOf(r, room))
		}

		// The push rules' view: the later of the two, with its position.
		latest, pos, err := e.srv.Receipts.LatestReadReceipt(ctx, room.String(), bob.UserID.String())
		if err != nil || latest != m3.String() || pos <= 0 {
			t.Fatalf("LatestReadReceipt: %s %d %v", latest, pos, err)
		}
		// A receipt behind the stored one is accepted and ignored.
		if err := bob.SendReceipt(ctx, room, m1, mevent.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		if r := follow(t, alice).all[0]; !hasReceipt(room, m2, "m.read", bob.UserID, "")(r) {
			t.Fatalf("a backwards receipt moved the marker: %v", receiptsOf(r, room))
		}
		if none, pos, err := e.srv.Receipts.LatestReadReceipt(ctx, room.String(), carol.UserID.String()); none != "" || pos != 0 || err != nil {
			t.Fatalf("LatestReadReceipt without receipts: %q %d %v", none, pos, err)
		}

		// Threaded receipts: in a thread and in the main timeline.
		root := send("thread root")
		reply, err := alice.SendMessageEvent(ctx, room, mevent.EventMessage, map[string]any{
			"msgtype": "m.text", "body": "in the thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.SendReceipt(ctx, room, reply.EventID, mevent.ReceiptTypeRead, &mautrix.ReqSendReceipt{ThreadID: root.String()}); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("bob's thread receipt", hasReceipt(room, reply.EventID, "m.read", bob.UserID, root.String()))
		if err := bob.SendReceipt(ctx, room, root, mevent.ReceiptTypeRead, &mautrix.ReqSendReceipt{ThreadID: "main"}); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("bob's main timeline receipt", hasReceipt(room, root, "m.read", bob.UserID, "main"))
		// The unthreaded receipt is a separate marker: still there.
		if r := follow(t, alice).all[0]; !hasReceipt(room, m2, "m.read", bob.UserID, "")(r) ||
			!hasReceipt(room, reply.EventID, "m.read", bob.UserID, root.String())(r) {
			t.Fatalf("initial sync after threaded receipts: %v", receiptsOf(r, room))
		}

		receiptPath := func(typ string, ev mid.EventID) string {
			return roomPath(room, "/receipt/"+typ+"/"+url.PathEscape(ev.String()))
		}
		for _, c := range []struct {
			what       string
			typ        string
			event      mid.EventID
			body       any
			status     int
			errcode    string
			withClient *mautrix.Client
		}{
			{"a thread reply in main", "m.read", reply.EventID, map[string]any{"thread_id": "main"}, 400, "M_INVALID_PARAM", bob},
			{"an empty thread ID", "m.read", m2, map[string]any{"thread_id": ""}, 400, "M_INVALID_PARAM", bob},
			{"a thread ID that is not a string", "m.read", m2, map[string]any{"thread_id": 5}, 400, "M_INVALID_PARAM", bob},
			{"an unknown receipt type", "m.bogus", m2, map[string]any{}, 400, "M_INVALID_PARAM", bob},
			{"m.fully_read with a thread", "m.fully_read", m2, map[string]any{"thread_id": "main"}, 400, "M_INVALID_PARAM", bob},
			{"an unknown event", "m.read", "$nope", map[string]any{}, 404, "M_NOT_FOUND", bob},
			{"a room one is not in", "m.read", m2, map[string]any{}, 403, "M_FORBIDDEN", carol},
		} {
			status, body, _ := e.call(http.MethodPost, receiptPath(c.typ, c.event), c.withClient.AccessToken, c.body)
			wantError(t, c.what, status, body, c.status, c.errcode)
		}
		// Clients that send no body at all are served.
		status, body, _ := e.call(http.MethodPost, receiptPath("m.read", m3), bob.AccessToken, nil)
		wantOK(t, "a receipt without a body", status, body)
	})
}

func TestReadMarkers(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob := e.register("alice", "pw-alice"), e.register("bob", "pw-bob")
		room := sharedRoom(t, alice, bob)
		var ids []mid.EventID
		for _, body := range []string{"one", "two", "three"} {
			r, err := alice.SendText(ctx, room, body)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.EventID)
		}
		aliceSync, bobSync := follow(t, alice), follow(t, bob)
		fullyRead := func() string {
			t.Helper()
			var c struct {
				EventID string `json:"event_id"`
			}
			if err := bob.GetRoomAccountData(ctx, room, "m.fully_read", &c); err != nil {
				t.Fatal(err)
			}
			return c.EventID
		}

		if err := bob.SetReadMarkers(ctx, room, &mautrix.ReqSetReadMarkers{FullyRead: ids[0], Read: ids[1], ReadPrivate: ids[2]}); err != nil {
			t.Fatal(err)
		}
		bobSync.waitFor("the fully read marker", func(r *mautrix.RespSync) bool {
			jr, ok := r.Rooms.Join[room]
			if !ok {
				return false
			}
			for _, ev := range jr.AccountData.Events {
				var c struct {
					EventID string `json:"event_id"`
				}
				if ev.Type.Type == "m.fully_read" && json.Unmarshal(ev.Content.VeryRaw, &c) == nil && c.EventID == ids[0].String() {
					return true
				}
			}
			return false
		})
		if got := fullyRead(); got != ids[0].String() {
			t.Fatalf("m.fully_read: %s", got)
		}
		aliceSync.waitFor("bob's read receipt from /read_markers", hasReceipt(room, ids[1], "m.read", bob.UserID, ""))
		if latest, _, _ := e.srv.Receipts.LatestReadReceipt(ctx, room.String(), bob.UserID.String()); latest != ids[2].String() {
			t.Fatalf("private receipt from /read_markers: latest is %s", latest)
		}

		// m.fully_read through the receipt endpoint, then never backwards.
		if err := bob.SendReceipt(ctx, room, ids[2], "m.fully_read", nil); err != nil {
			t.Fatal(err)
		}
		if got := fullyRead(); got != ids[2].String() {
			t.Fatalf("m.fully_read through /receipt: %s", got)
		}
		if err := bob.SetReadMarkers(ctx, room, &mautrix.ReqSetReadMarkers{FullyRead: ids[0]}); err != nil {
			t.Fatal(err)
		}
		if got := fullyRead(); got != ids[2].String() {
			t.Fatalf("m.fully_read moved backwards to %s", got)
		}

		// The event must belong to the room; clients cannot set the marker
		// as plain account data.
		other, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		elsewhere, err := alice.SendText(ctx, other.RoomID, "elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		status, body, _ := e.call(http.MethodPost, roomPath(room, "/read_markers"), bob.AccessToken, map[string]any{"m.fully_read": elsewhere.EventID})
		wantError(t, "a marker on another room's event", status, body, http.StatusNotFound, "M_NOT_FOUND")
		path := v3 + "/user/" + url.PathEscape(bob.UserID.String()) + "/rooms/" + url.PathEscape(room.String()) + "/account_data/m.fully_read"
		status, body, _ = e.call(http.MethodPut, path, bob.AccessToken, map[string]any{"event_id": ids[0]})
		wantError(t, "setting m.fully_read directly", status, body, http.StatusMethodNotAllowed, "M_BAD_JSON")
	})
}

func TestPresence(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		room := sharedRoom(t, alice, bob)

		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: mevent.PresenceOnline, StatusMsg: "hacking"}); err != nil {
			t.Fatal(err)
		}
		p, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || p.Presence != mevent.PresenceOnline || p.StatusMsg != "hacking" || !p.CurrentlyActive {
			t.Fatalf("bob reads alice's presence: %+v %v", p, err)
		}
		if p, err := alice.GetOwnPresence(ctx); err != nil || p.Presence != mevent.PresenceOnline {
			t.Fatalf("own presence: %+v %v", p, err)
		}
		_, err = carol.GetPresence(ctx, alice.UserID)
		wantCode(t, "a stranger reads alice's presence", err, "M_FORBIDDEN")
		status, body, _ := e.call(http.MethodGet, v3+"/presence/"+url.PathEscape(carol.UserID.String())+"/status", carol.AccessToken, nil)
		wantOK(t, "presence of someone who never set any", status, body)
		if body["presence"] != "offline" {
			t.Fatalf("presence never set: %v", body)
		}

		// /sync shows presence to those who share a room, and to oneself.
		bobSync := &ephFollower{t: t, cli: bob, presence: mevent.PresenceOffline}
		r := bobSync.sync(0)
		if c, ok := presenceIn(r, alice.UserID); !ok || c["presence"] != "online" || c["status_msg"] != "hacking" || c["last_active_ago"] == nil {
			t.Fatalf("bob's initial sync: alice's presence %v", c)
		}
		carolSync := follow(t, carol)
		if c, ok := presenceIn(carolSync.all[0], alice.UserID); ok {
			t.Fatalf("carol was shown alice's presence: %v", c)
		}
		if c, ok := presenceIn(carolSync.all[0], carol.UserID); !ok || c["presence"] != "online" {
			t.Fatalf("carol's own presence after syncing: %v", c)
		}

		// set_presence=unavailable marks the user idle.
		aliceSync := follow(t, alice)
		idle := &ephFollower{t: t, cli: bob, presence: mevent.PresenceUnavailable}
		idle.sync(0)
		aliceSync.waitFor("bob unavailable", func(r *mautrix.RespSync) bool {
			c, ok := presenceIn(r, bob.UserID)
			return ok && c["presence"] == "unavailable"
		})
		// Someone who comes to share a room shows up.
		if _, err := carol.JoinRoom(ctx, room.String(), nil); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("carol's presence after her join", func(r *mautrix.RespSync) bool {
			c, ok := presenceIn(r, carol.UserID)
			return ok && c["presence"] == "online"
		})
		// Sending a message is activity: it brings bob back online.
		if _, err := bob.SendText(ctx, room, "back"); err != nil {
			t.Fatal(err)
		}
		aliceSync.waitFor("bob online again", func(r *mautrix.RespSync) bool {
			c, ok := presenceIn(r, bob.UserID)
			return ok && c["presence"] == "online" && c["currently_active"] == true
		})

		path := v3 + "/presence/" + url.PathEscape(bob.UserID.String()) + "/status"
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"presence": "online"})
		wantError(t, "setting someone else's presence", status, body, http.StatusForbidden, "M_FORBIDDEN")
		path = v3 + "/presence/" + url.PathEscape(alice.UserID.String()) + "/status"
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"presence": "busy"})
		wantError(t, "an unknown presence", status, body, http.StatusBadRequest, "M_INVALID_PARAM")
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"status_msg": "no presence"})
		wantError(t, "no presence", status, body, http.StatusBadRequest, "M_BAD_JSON")
		status, body, _ = e.call(http.MethodGet, v3+"/presence/not-a-user/status", alice.AccessToken, nil)
		wantError(t, "a malformed user ID", status, body, http.StatusBadRequest, "M_INVALID_PARAM")
	})
}

func TestPresenceDisabled(t *testing.T) {
	onEachEngine(t, func(c *config.Config) { c.Presence.Enabled = false }, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		room := sharedRoom(t, alice, bob)
		aliceSync := follow(t, alice)

		// Updates are accepted and ignored; everyone reads as offline,
		// strangers included (there is nothing to hide).
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: mevent.PresenceOnline, StatusMsg: "here"}); err != nil {
			t.Fatal(err)
		}
		for _, reader := range []*mautrix.Client{alice, bob, carol} {
			status, body, _ := e.call(http.MethodGet, v3+"/presence/"+url.PathEscape(alice.UserID.String())+"/status", reader.AccessToken, nil)
			wantOK(t, "presence when disabled", status, body)
			if len(body) != 1 || body["presence"] != "offline" {
				t.Fatalf("presence when disabled: %v", body)
			}
		}
		// Requests are still checked.
		status, body, _ := e.call(http.MethodPut, v3+"/presence/"+url.PathEscape(bob.UserID.String())+"/status", alice.AccessToken, map[string]any{"presence": "online"})
		wantError(t, "someone else's presence when disabled", status, body, http.StatusForbidden, "M_FORBIDDEN")

		// Syncing, idling and sending leave no trace.
		(&ephFollower{t: t, cli: bob, presence: mevent.PresenceUnavailable}).sync(0)
		if _, err := bob.SendText(ctx, room, "hello"); err != nil {
			t.Fatal(err)
		}
		r := aliceSync.waitFor("bob's message", func(r *mautrix.RespSync) bool {
			jr, ok := r.Rooms.Join[room]
			return ok && len(jr.Timeline.Events) > 0
		})
		for _, r := range append(aliceSync.all, r) {
			if len(r.Presence.Events) != 0 {
				t.Fatalf("presence events while disabled: %v", r.Presence.Events)
			}
		}
		var rows int
		if err := e.srv.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM presence`).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("presence rows while disabled: %d %v", rows, err)
		}
		if pos, err := e.srv.DB.StreamPosition(ctx, storage.StreamPresence); err != nil || pos != 0 {
			t.Fatalf("presence stream while disabled: %d %v", pos, err)
		}
	})
}
