package clientapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"github.com/parley-chat/parley/homeserver/config"
)

// Push: push rules, unread counts, /notifications and pushers, on real
// servers of both engines.

// pushTestConfig lets pushers reach the test gateway on loopback.
func pushTestConfig(c *config.Config) { c.Push.AllowPrivateAddresses = true }

// pushRoom creates a private room as creator, with the others invited and
// joined, and returns its ID.
func pushRoom(t *testing.T, creator *mautrix.Client, name string, others ...*mautrix.Client) mid.RoomID {
	t.Helper()
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Name: name}
	for _, o := range others {
		req.Invite = append(req.Invite, o.UserID)
	}
	resp, err := creator.CreateRoom(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if _, err := o.JoinRoomByID(ctx, resp.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	return resp.RoomID
}

// pushSend sends an event and returns its ID.
func pushSend(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, eventType string, content map[string]any) mid.EventID {
	t.Helper()
	resp, err := cli.SendMessageEvent(ctx, roomID, mevent.NewEventType(eventType), content)
	if err != nil {
		t.Fatal(err)
	}
	return resp.EventID
}

func pushText(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, body string) mid.EventID {
	t.Helper()
	return pushSend(t, cli, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body})
}

// pushSync makes a raw /sync request (timeout 0) and returns the body and
// its next_batch.
func pushSync(t *testing.T, e *env, cli *mautrix.Client, since, filter string) (map[string]any, string) {
	t.Helper()
	q := url.Values{"timeout": {"0"}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	status, body, _ := e.call(http.MethodGet, v3+"/sync?"+q.Encode(), cli.AccessToken, nil)
	if status != http.StatusOK {
		t.Fatalf("sync: %d %v", status, body)
	}
	next, _ := body["next_batch"].(string)
	return body, next
}

// joinedRoom is a room's section of a sync body, or nil.
func joinedRoom(body map[string]any, roomID mid.RoomID) map[string]any {
	rooms, _ := body["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	jr, _ := join[string(roomID)].(map[string]any)
	return jr
}

// unread returns a room's notification and highlight counts in a sync
// body; ok is false when the room has none.
func unread(body map[string]any, roomID mid.RoomID) (notif, highlight int, ok bool) {
	un, ok := joinedRoom(body, roomID)["unread_notifications"].(map[string]any)
	if !ok {
		return 0, 0, false
	}
	n, _ := un["notification_count"].(float64)
	h, _ := un["highlight_count"].(float64)
	return int(n), int(h), true
}

func wantUnread(t *testing.T, body map[string]any, roomID mid.RoomID, notif, highlight int) {
	t.Helper()
	n, h, ok := unread(body, roomID)
	if !ok || n != notif || h != highlight {
		t.Fatalf("unread counts of %s: %d/%d (present %v), want %d/%d", roomID, n, h, ok, notif, highlight)
	}
}

// streamPos is an event's stream position (for MarkRead).
func streamPos(t *testing.T, e *env, eventID mid.EventID) int64 {
	t.Helper()
	row, err := e.srv.DB.GetEvent(ctx, string(eventID))
	if err != nil {
		t.Fatal(err)
	}
	return row.StreamPos
}

func TestUnreadCounts(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		group := pushRoom(t, alice, "Group", bob, carol)
		direct := pushRoom(t, bob, "", alice)
		_, since := pushSync(t, e, alice, "", "")

		// A group message notifies; the counts come in the same response
		// as the event.
		pushText(t, bob, group, "hello all")
		body, since := pushSync(t, e, alice, since, "")
		wantUnread(t, body, group, 1, 0)
		// The sender's own counts do not move.
		bobBody, _ := pushSync(t, e, bob, "", "")
		wantUnread(t, bobBody, group, 0, 0)

		// A mention highlights.
		mention := pushSend(t, bob, group, "m.room.message", map[string]any{"msgtype": "m.text", "body": "alice: look",
			"m.mentions": map[string]any{"user_ids": []string{string(alice.UserID)}}})
		body, since = pushSync(t, e, alice, since, "")
		wantUnread(t, body, group, 2, 1)

		// Notices do not notify; edits and reactions neither.
		pushSend(t, bob, group, "m.room.message", map[string]any{"msgtype": "m.notice", "body": "bot says"})
		pushSend(t, bob, group, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": mention, "key": "👍"}})
		// A one-to-one room notifies every message, encrypted ones too.
		pushText(t, bob, direct, "psst")
		pushSend(t, bob, direct, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "sender_key": "k", "device_id": "D", "session_id": "s"})
		body, since = pushSync(t, e, alice, since, "")
		wantUnread(t, body, direct, 2, 0)
		wantUnread(t, body, group, 2, 1)

		// An initial sync has the counts of every room, and the push rules.
		full, _ := pushSync(t, e, alice, "", "")
		wantUnread(t, full, group, 2, 1)
		wantUnread(t, full, direct, 2, 0)
		ad, _ := full["account_data"].(map[string]any)["events"].([]any)
		found := false
		for _, ev := range ad {
			if m := ev.(map[string]any); m["type"] == "m.push_rules" {
				found = m["content"].(map[string]any)["global"] != nil
			}
		}
		if !found {
			t.Fatalf("no m.push_rules in the initial sync: %v", ad)
		}

		// MarkRead (what the receipts hook calls) at the mention leaves
		// nothing unread in the group; the change comes on its own.
		if err := e.srv.Push.MarkRead(ctx, string(group), string(alice.UserID), streamPos(t, e, mention)); err != nil {
			t.Fatal(err)
		}
		body, since = pushSync(t, e, alice, since, "")
		wantUnread(t, body, group, 0, 0)
		if _, _, ok := unread(body, direct); ok {
			t.Fatalf("the direct room's counts did not change but came: %v", joinedRoom(body, direct))
		}

		// A read receipt through the API clears the direct room.
		last := pushText(t, bob, direct, "still there?")
		body, since = pushSync(t, e, alice, since, "")
		wantUnread(t, body, direct, 3, 0)
		if err := alice.SendReceipt(ctx, direct, last, mevent.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		body, since = pushSync(t, e, alice, since, "")
		wantUnread(t, body, direct, 0, 0)

		// Sending a message reads the room up to it.
		pushText(t, bob, group, "one")
		pushText(t, bob, group, "two")
		body, since = pushSync(t, e, alice, since, "")
		wantUnread(t, body, group, 2, 0)
		pushText(t, alice, group, "reading")
		body, _ = pushSync(t, e, alice, since, "")
		wantUnread(t, body, group, 0, 0)

		// The counts survive a restart.
		pushText(t, bob, group, "three")
		e.srv.Restart()
		body, _ = pushSync(t, e, alice, "", "")
		wantUnread(t, body, group, 1, 0)
	})
}

func TestUnreadThreadCounts(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		room := pushRoom(t, alice, "Threads", bob, carol)
		root := pushText(t, bob, room, "root")
		reply := pushSend(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		pushSend(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "mention in thread",
			"m.mentions":   map[string]any{"user_ids": []string{string(alice.UserID)}},
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		split := `{"room":{"timeline":{"unread_thread_notifications":true}}}`
		body, _ := pushSync(t, e, alice, "", split)
		wantUnread(t, body, room, 1, 0) // the main timeline: the root
		threads, _ := joinedRoom(body, room)["unread_thread_notifications"].(map[string]any)
		th, _ := threads[string(root)].(map[string]any)
		if th["notification_count"] != 2.0 || th["highlight_count"] != 1.0 {
			t.Fatalf("thread counts %v", threads)
		}
		// Without the filter, the room's total.
		body, _ = pushSync(t, e, alice, "", "")
		wantUnread(t, body, room, 3, 1)
		if _, ok := joinedRoom(body, room)["unread_thread_notifications"]; ok {
			t.Fatal("thread counts without the filter asking")
		}
		// A threaded receipt clears its thread only.
		if err := e.srv.Push.MarkReadThread(ctx, string(room), string(alice.UserID), string(root), streamPos(t, e, reply)); err != nil {
			t.Fatal(err)
		}
		body, _ = pushSync(t, e, alice, "", split)
		th, _ = joinedRoom(body, room)["unread_thread_notifications"].(map[string]any)[string(root)].(map[string]any)
		if th["notification_count"] != 1.0 || th["highlight_count"] != 1.0 {
			t.Fatalf("thread counts after a threaded receipt %v", th)
		}
		wantUnread(t, body, room, 1, 0)
	})
}

func TestKeywordAndDisplayNameRules(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
			t.Fatal(err)
		}
		room := pushRoom(t, bob, "Rules", alice, carol)
		highlight := []*pushrules.PushAction{{Action: pushrules.ActionNotify}, {Action: pushrules.ActionSetTweak, Tweak: pushrules.TweakHighlight, Value: true}}
		if err := alice.PutPushRule(ctx, "global", pushrules.ContentRule, "cake", &mautrix.ReqPutPushRule{Pattern: "cake*", Actions: highlight}); err != nil {
			t.Fatal(err)
		}
		if err := alice.PutPushRule(ctx, "global", pushrules.OverrideRule, "my-name", &mautrix.ReqPutPushRule{Actions: highlight,
			Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindContainsDisplayName}}}); err != nil {
			t.Fatal(err)
		}
		// A sender rule that silences carol.
		if err := alice.PutPushRule(ctx, "global", pushrules.SenderRule, string(carol.UserID), &mautrix.ReqPutPushRule{Actions: []*pushrules.PushAction{}}); err != nil {
			t.Fatal(err)
		}
		pushText(t, bob, room, "who wants cakes?")
		pushText(t, bob, room, "ALICE LIDDELL, come here")
		pushText(t, bob, room, "pancakes and alice") // neither a word starting with cake nor the whole name
		pushText(t, carol, room, "hello from carol") // the sender rule silences her
		body, _ := pushSync(t, e, alice, "", "")
		wantUnread(t, body, room, 3, 2)
		status, list, _ := e.call(http.MethodGet, v3+"/notifications?only=highlight", alice.AccessToken, nil)
		ns, _ := list["notifications"].([]any)
		if status != http.StatusOK || len(ns) != 2 {
			t.Fatalf("highlights: %d %v", status, list)
		}
		bodies := []string{}
		for _, n := range ns {
			ev := n.(map[string]any)["event"].(map[string]any)
			bodies = append(bodies, ev["content"].(map[string]any)["body"].(string))
		}
		if !slices.Equal(bodies, []string{"ALICE LIDDELL, come here", "who wants cakes?"}) {
			t.Fatalf("highlighted %v", bodies)
		}
	})
}

func TestNotificationsList(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice, bob := e.register("alice", "pw-alice"), e.register("bob", "pw-bob")
		room := pushRoom(t, bob, "List", alice)
		var ids []mid.EventID
		for i := range 5 {
			ids = append(ids, pushText(t, bob, room, fmt.Sprintf("message %d", i)))
		}
		pushSync(t, e, alice, "", "") // waits for the evaluation
		if err := e.srv.Push.MarkRead(ctx, string(room), string(alice.UserID), streamPos(t, e, ids[1])); err != nil {
			t.Fatal(err)
		}
		var got []string
		var reads []bool
		from := ""
		for pages := 0; pages < 5; pages++ {
			path := v3 + "/notifications?limit=2"
			if from != "" {
				path += "&from=" + url.QueryEscape(from)
			}
			status, body, _ := e.call(http.MethodGet, path, alice.AccessToken, nil)
			if status != http.StatusOK {
				t.Fatalf("notifications: %d %v", status, body)
			}
			for _, n := range body["notifications"].([]any) {
				m := n.(map[string]any)
				ev := m["event"].(map[string]any)
				if _, has := ev["room_id"]; has || m["room_id"] != string(room) || m["ts"].(float64) <= 0 {
					t.Fatalf("notification %v", m)
				}
				if acts := m["actions"].([]any); len(acts) < 1 || acts[0] != "notify" {
					t.Fatalf("actions %v", acts)
				}
				got = append(got, ev["event_id"].(string))
				reads = append(reads, m["read"].(bool))
			}
			next, _ := body["next_token"].(string)
			if next == "" {
				break
			}
			from = next
		}
		// The five messages, newest first, then alice's invite to the room
		// (.m.rule.invite_for_me).
		want := []string{string(ids[4]), string(ids[3]), string(ids[2]), string(ids[1]), string(ids[0])}
		if len(got) != 6 || !slices.Equal(got[:5], want) || !slices.Equal(reads, []bool{false, false, false, true, true, true}) {
			t.Fatalf("listed %v read %v, want %v", got, reads, want)
		}
		if status, body, _ := e.call(http.MethodGet, v3+"/notifications?from=bogus", alice.AccessToken, nil); status != http.StatusBadRequest {
			t.Fatalf("bad token: %d %v", status, body)
		}
	})
}

func TestPushRulesAPI(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice := e.register("alice", "pw-alice")
		_, since := pushSync(t, e, alice, "", "")
		rs, err := alice.GetPushRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Override) != 10 || rs.Override[0].RuleID != ".m.rule.master" || rs.Override[0].Enabled || !rs.Override[0].Default ||
			len(rs.Underride) != 5 || rs.Underride[3].RuleID != ".m.rule.message" {
			t.Fatalf("default rules: %+v", rs)
		}
		notify := []*pushrules.PushAction{{Action: pushrules.ActionNotify}}
		put := func(id, before, after string) {
			t.Helper()
			if err := alice.PutPushRule(ctx, "global", pushrules.OverrideRule, id, &mautrix.ReqPutPushRule{Before: before, After: after, Actions: notify,
				Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "content.body", Pattern: id}}}); err != nil {
				t.Fatalf("put %s: %v", id, err)
			}
		}
		put("one", "", "")
		put("two", "", "") // newest first
		put("three", "", "two")
		put("zero", "two", "") // before two
		rs, _ = alice.GetPushRules(ctx)
		var order []string
		for _, r := range rs.Override[:6] {
			order = append(order, r.RuleID)
		}
		if !slices.Equal(order, []string{".m.rule.master", "zero", "two", "three", "one", ".m.rule.suppress_notices"}) {
			t.Fatalf("order %v", order)
		}
		r, err := alice.GetPushRule(ctx, "global", pushrules.OverrideRule, "three")
		if err != nil || r.Default || !r.Enabled || len(r.Conditions) != 1 || r.Conditions[0].Pattern != "three" {
			t.Fatalf("get %+v %v", r, err)
		}
		if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, "three", false); err != nil {
			t.Fatal(err)
		}
		status, body, _ := e.call(http.MethodGet, v3+"/pushrules/global/override/three/enabled", alice.AccessToken, nil)
		if status != http.StatusOK || body["enabled"] != false {
			t.Fatalf("enabled: %d %v", status, body)
		}
		// Server-default rules can be disabled and given other actions.
		if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, ".m.rule.master", true); err != nil {
			t.Fatal(err)
		}
		if err := alice.PutPushRuleActions(ctx, "global", pushrules.UnderrideRule, ".m.rule.message", []*pushrules.PushAction{}); err != nil {
			t.Fatal(err)
		}
		status, body, _ = e.call(http.MethodGet, v3+"/pushrules/global/underride/.m.rule.message/actions", alice.AccessToken, nil)
		if acts, ok := body["actions"].([]any); status != http.StatusOK || !ok || len(acts) != 0 {
			t.Fatalf("actions: %d %v", status, body)
		}
		if err := alice.DeletePushRule(ctx, "global", pushrules.OverrideRule, "two"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.GetPushRule(ctx, "global", pushrules.OverrideRule, "two"); errcode(err) != "M_NOT_FOUND" {
			t.Fatalf("deleted rule: %v", err)
		}
		// The r0 prefix works too.
		if status, body, _ := e.call(http.MethodGet, "/_matrix/client/r0/pushrules/", alice.AccessToken, nil); status != http.StatusOK || body["global"] == nil {
			t.Fatalf("r0: %d %v", status, body)
		}

		// Errors.
		for _, c := range []struct {
			method, path string
			body         any
			status       int
			code         string
		}{
			{"GET", "/pushrules/global/override/nope", nil, 404, "M_NOT_FOUND"},
			{"DELETE", "/pushrules/global/override/nope", nil, 404, "M_NOT_FOUND"},
			{"PUT", "/pushrules/global/override/nope/enabled", map[string]any{"enabled": true}, 404, "M_NOT_FOUND"},
			{"PUT", "/pushrules/global/override/nope/actions", map[string]any{"actions": []any{}}, 404, "M_NOT_FOUND"},
			{"GET", "/pushrules/global/nonsense/x", nil, 400, "M_INVALID_PARAM"},
			{"GET", "/pushrules/device/override/x", nil, 400, "M_INVALID_PARAM"},
			{"PUT", "/pushrules/global/override/.m.rule.mine", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
			{"PUT", "/pushrules/global/override/.m.rule.master", map[string]any{"actions": []any{}, "conditions": []any{}}, 400, "M_INVALID_PARAM"},
			{"PUT", "/pushrules/global/override/x?before=missing", map[string]any{"actions": []any{}}, 400, "M_UNKNOWN"},
			{"PUT", "/pushrules/global/override/x?after=.m.rule.master", map[string]any{"actions": []any{}}, 400, "M_INVALID_PARAM"},
			{"PUT", "/pushrules/global/override/x", map[string]any{"conditions": []any{}}, 400, "M_MISSING_PARAM"},
			{"PUT", "/pushrules/global/content/x", map[string]any{"actions": []any{"notify"}}, 400, "M_MISSING_PARAM"},
			{"PUT", "/pushrules/global/override/x", map[string]any{"actions": []any{"explode"}}, 400, "M_INVALID_PARAM"},
			{"PUT", "/pushrules/global/override/x", map[string]any{"actions": "notify"}, 400, "M_BAD_JSON"},
			{"PUT", "/pushrules/global/override/one/enabled", map[string]any{}, 400, "M_MISSING_PARAM"},
			{"DELETE", "/pushrules/global/override/.m.rule.master", nil, 400, "M_INVALID_PARAM"},
		} {
			status, body, _ := e.call(c.method, v3+c.path, alice.AccessToken, c.body)
			wantError(t, c.method+" "+c.path, status, body, c.status, c.code)
		}

		// The changes come to /sync as m.push_rules account data.
		body, _ = pushSync(t, e, alice, since, "")
		var content map[string]any
		for _, ev := range body["account_data"].(map[string]any)["events"].([]any) {
			if m := ev.(map[string]any); m["type"] == "m.push_rules" {
				content = m["content"].(map[string]any)
			}
		}
		global, _ := content["global"].(map[string]any)
		override, _ := global["override"].([]any)
		if len(override) != 13 || override[0].(map[string]any)["enabled"] != true || override[1].(map[string]any)["rule_id"] != "zero" {
			t.Fatalf("m.push_rules in sync: %v", content)
		}
		// Clients cannot write it through the account data API.
		status, body, _ = e.call(http.MethodPut, v3+"/user/"+url.PathEscape(string(alice.UserID))+"/account_data/m.push_rules", alice.AccessToken, map[string]any{"global": map[string]any{}})
		if status < 400 {
			t.Fatalf("account data write of m.push_rules: %d %v", status, body)
		}
	})
}

// gatewayRequest is what the test push gateway received.
type gatewayRequest struct {
	Notification struct {
		EventID           string          `json:"event_id"`
		RoomID            string          `json:"room_id"`
		Type              string          `json:"type"`
		Sender            string          `json:"sender"`
		SenderDisplayName string          `json:"sender_display_name"`
		RoomName          string          `json:"room_name"`
		Prio              string          `json:"prio"`
		Content           json.RawMessage `json:"content"`
		Counts            map[string]int  `json:"counts"`
		Devices           []struct {
			AppID     string                     `json:"app_id"`
			PushKey   string                     `json:"pushkey"`
			PushKeyTS int64                      `json:"pushkey_ts"`
			Data      map[string]json.RawMessage `json:"data"`
			Tweaks    map[string]json.RawMessage `json:"tweaks"`
		} `json:"devices"`
	} `json:"notification"`
}

// testGateway is a push gateway on loopback that records what it receives
// and rejects the pushkeys in reject.
type testGateway struct {
	*httptest.Server
	got    chan gatewayRequest
	reject chan string
}

func newTestGateway(t *testing.T) *testGateway {
	g := &testGateway{got: make(chan gatewayRequest, 100), reject: make(chan string, 10)}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var req gatewayRequest
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != http.MethodPost || json.Unmarshal(raw, &req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		rejected := []string{}
		select {
		case key := <-g.reject:
			rejected = append(rejected, key)
		default:
		}
		g.got <- req
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"rejected": rejected})
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *testGateway) next(t *testing.T) gatewayRequest {
	t.Helper()
	select {
	case r := <-g.got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the push gateway got nothing")
		return gatewayRequest{}
	}
}

func TestPushGateway(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		gw := newTestGateway(t)
		alice, bob := e.register("alice", "pw-alice"), e.register("bob", "pw-bob")
		if err := bob.SetDisplayName(ctx, "Bob the Builder"); err != nil {
			t.Fatal(err)
		}
		room := pushRoom(t, bob, "Mission Control", alice)
		pushSync(t, e, alice, "", "") // the invite is evaluated before the pusher exists
		kind := mautrix.PusherKindHTTP
		if err := alice.SetPusher(ctx, &mautrix.Pusher{AppID: "org.example.app", PushKey: "key-1", Kind: &kind,
			AppDisplayName: "App", DeviceDisplayName: "Phone", Language: "en",
			Data: mautrix.PusherData{"url": gw.URL + "/_matrix/push/v1/notify", "custom": "kept"}}); err != nil {
			t.Fatal(err)
		}
		ps, err := alice.GetPushers(ctx)
		if err != nil || len(ps.Pushers) != 1 || ps.Pushers[0].PushKey != "key-1" || ps.Pushers[0].Data.URL() == "" {
			t.Fatalf("pushers %+v %v", ps, err)
		}

		ev := pushText(t, bob, room, "I'm floating in a most peculiar way")
		req := gw.next(t).Notification
		if req.EventID != string(ev) || req.RoomID != string(room) || req.Type != "m.room.message" || req.Sender != string(bob.UserID) ||
			req.SenderDisplayName != "Bob the Builder" || req.RoomName != "Mission Control" || req.Prio != "high" ||
			req.Counts["unread"] != 1 || len(req.Content) == 0 {
			t.Fatalf("notification %+v", req)
		}
		d := req.Devices
		if len(d) != 1 || d[0].AppID != "org.example.app" || d[0].PushKey != "key-1" || d[0].PushKeyTS <= 0 ||
			string(d[0].Data["custom"]) != `"kept"` || d[0].Data["url"] != nil || string(d[0].Tweaks["sound"]) != `"default"` {
			t.Fatalf("devices %+v", d)
		}

		// event_id_only sends no content; bob's own events are never pushed
		// to him.
		if err := alice.SetPusher(ctx, &mautrix.Pusher{AppID: "org.example.app", PushKey: "key-1", Kind: &kind,
			AppDisplayName: "App", DeviceDisplayName: "Phone", Language: "en",
			Data: mautrix.PusherData{"url": gw.URL + "/_matrix/push/v1/notify", "format": "event_id_only"}}); err != nil {
			t.Fatal(err)
		}
		pushText(t, alice, room, "reply (not pushed to alice)")
		ev = pushText(t, bob, room, "second")
		req = gw.next(t).Notification
		if req.EventID != string(ev) || req.RoomID != string(room) || req.Type != "" || req.Sender != "" || req.Content != nil ||
			req.Counts["unread"] != 1 || string(req.Devices[0].Data["format"]) != `"event_id_only"` {
			t.Fatalf("event_id_only notification %+v", req)
		}

		// A rejected pushkey removes the pusher.
		gw.reject <- "key-1"
		pushText(t, bob, room, "third")
		gw.next(t)
		deadline := time.Now().Add(10 * time.Second)
		for {
			ps, err := alice.GetPushers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps.Pushers) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rejected pusher is still there: %+v", ps.Pushers)
			}
			time.Sleep(20 * time.Millisecond)
		}
		pushText(t, bob, room, "fourth")
		pushSync(t, e, alice, "", "") // the evaluation is done
		select {
		case r := <-gw.got:
			t.Fatalf("pushed after the pusher was removed: %+v", r)
		case <-time.After(300 * time.Millisecond):
		}
	})
}

func TestPushersAPI(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice, bob := e.register("alice", "pw-alice"), e.register("bob", "pw-bob")
		good := func() map[string]any {
			return map[string]any{"kind": "http", "app_id": "org.example", "pushkey": "pk", "app_display_name": "A",
				"device_display_name": "D", "lang": "en", "data": map[string]any{"url": "https://push.example.org/_matrix/push/v1/notify"}}
		}
		set := func(cli *mautrix.Client, body map[string]any) (int, map[string]any) {
			status, resp, _ := e.call(http.MethodPost, v3+"/pushers/set", cli.AccessToken, body)
			return status, resp
		}
		if status, body := set(alice, good()); status != http.StatusOK {
			t.Fatalf("set: %d %v", status, body)
		}
		// Bob registers the same pushkey: without append it moves to him.
		if status, body := set(bob, good()); status != http.StatusOK {
			t.Fatalf("set: %d %v", status, body)
		}
		if ps, _ := alice.GetPushers(ctx); len(ps.Pushers) != 0 {
			t.Fatalf("alice kept a pusher bob took: %+v", ps.Pushers)
		}
		withAppend := good()
		withAppend["append"] = true
		if status, _ := set(alice, withAppend); status != http.StatusOK {
			t.Fatal(status)
		}
		if ps, _ := bob.GetPushers(ctx); len(ps.Pushers) != 1 {
			t.Fatalf("append removed bob's pusher: %+v", ps.Pushers)
		}
		del := map[string]any{"kind": nil, "app_id": "org.example", "pushkey": "pk"}
		if status, body := set(alice, del); status != http.StatusOK {
			t.Fatalf("delete: %d %v", status, body)
		}
		if ps, _ := alice.GetPushers(ctx); len(ps.Pushers) != 0 {
			t.Fatalf("deleted pusher still listed: %+v", ps.Pushers)
		}
		bad := func(change func(map[string]any)) map[string]any {
			b := good()
			change(b)
			return b
		}
		for _, c := range []struct {
			name string
			body map[string]any
			code string
		}{
			{"no kind", bad(func(b map[string]any) { delete(b, "kind") }), "M_MISSING_PARAM"},
			{"no pushkey", bad(func(b map[string]any) { delete(b, "pushkey") }), "M_MISSING_PARAM"},
			{"no lang", bad(func(b map[string]any) { delete(b, "lang") }), "M_MISSING_PARAM"},
			{"no data", bad(func(b map[string]any) { delete(b, "data") }), "M_MISSING_PARAM"},
			{"no url", bad(func(b map[string]any) { b["data"] = map[string]any{} }), "M_INVALID_PARAM"},
			{"wrong path", bad(func(b map[string]any) { b["data"] = map[string]any{"url": "https://gw/notify"} }), "M_INVALID_PARAM"},
			{"not http", bad(func(b map[string]any) { b["data"] = map[string]any{"url": "ftp://gw/_matrix/push/v1/notify"} }), "M_INVALID_PARAM"},
			{"bad format", bad(func(b map[string]any) {
				b["data"] = map[string]any{"url": "https://gw/_matrix/push/v1/notify", "format": "full"}
			}), "M_INVALID_PARAM"},
			{"email", bad(func(b map[string]any) { b["kind"] = "email" }), "M_INVALID_PARAM"},
			{"long pushkey", bad(func(b map[string]any) { b["pushkey"] = string(make([]byte, 513)) }), "M_INVALID_PARAM"},
			{"kind number", bad(func(b map[string]any) { b["kind"] = 1 }), "M_BAD_JSON"},
		} {
			status, body := set(alice, c.body)
			wantError(t, c.name, status, body, http.StatusBadRequest, c.code)
		}
	})
}

// TestPushGatewayPrivateAddressRefused checks that by default pushers
// cannot reach loopback: the pusher is accepted, the delivery refused.
func TestPushGatewayPrivateAddressRefused(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		gw := newTestGateway(t)
		alice, bob := e.register("alice", "pw-alice"), e.register("bob", "pw-bob")
		room := pushRoom(t, bob, "", alice)
		kind := mautrix.PusherKindHTTP
		if err := alice.SetPusher(ctx, &mautrix.Pusher{AppID: "a", PushKey: "k", Kind: &kind, AppDisplayName: "A",
			DeviceDisplayName: "D", Language: "en", Data: mautrix.PusherData{"url": gw.URL + "/_matrix/push/v1/notify"}}); err != nil {
			t.Fatal(err)
		}
		pushText(t, bob, room, "hi")
		pushSync(t, e, alice, "", "")
		select {
		case r := <-gw.got:
			t.Fatalf("delivered to a loopback gateway: %+v", r)
		case <-time.After(500 * time.Millisecond):
		}
	})
}

// TestPushAfterRestart checks that events handed to the push service as
// the server stops are evaluated after it starts again, once: counts are
// exact and the gateway hears of each event once.
func TestPushAfterRestart(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		gw := newTestGateway(t)
		alice, bob := e.register("alice", "pw-alice"), e.register("bob", "pw-bob")
		room := pushRoom(t, bob, "", alice)
		pushSync(t, e, alice, "", "")
		kind := mautrix.PusherKindHTTP
		if err := alice.SetPusher(ctx, &mautrix.Pusher{AppID: "a", PushKey: "k", Kind: &kind, AppDisplayName: "A",
			DeviceDisplayName: "D", Language: "en", Data: mautrix.PusherData{"url": gw.URL + "/_matrix/push/v1/notify"}}); err != nil {
			t.Fatal(err)
		}
		sent := map[string]bool{}
		for i := range 6 {
			// Raw requests: the server's address changes at each restart.
			path := fmt.Sprintf("%s/rooms/%s/send/m.room.message/restart%d", v3, url.PathEscape(string(room)), i)
			status, body, _ := e.call(http.MethodPut, path, bob.AccessToken, map[string]any{"msgtype": "m.text", "body": "hi"})
			if status != http.StatusOK {
				t.Fatalf("send: %d %v", status, body)
			}
			sent[body["event_id"].(string)] = true
			e.srv.Restart()
			synced, _ := pushSync(t, e, alice, "", "")
			wantUnread(t, synced, room, i+1, 0)
		}
		pushed := map[string]int{}
		deadline := time.After(10 * time.Second)
		for len(pushed) < len(sent) {
			select {
			case r := <-gw.got:
				pushed[r.Notification.EventID]++
			case <-deadline:
				t.Fatalf("pushed %v, sent %v", pushed, sent)
			}
		}
		select {
		case r := <-gw.got:
			pushed[r.Notification.EventID]++
		case <-time.After(300 * time.Millisecond):
		}
		for id, n := range pushed {
			if !sent[id] || n != 1 {
				t.Fatalf("pushed %v, sent %v", pushed, sent)
			}
		}
	})
}

func TestPushIgnoredUsersAndLoggedOutDevices(t *testing.T) {
	onEachEngine(t, pushTestConfig, func(t *testing.T, e *env) {
		alice, bob, carol := e.register("alice", "pw-alice"), e.register("bob", "pw-bob"), e.register("carol", "pw-carol")
		room := pushRoom(t, bob, "Ignore", alice, carol)
		pushText(t, carol, room, "before")
		body, since := pushSync(t, e, alice, "", "")
		wantUnread(t, body, room, 1, 0)
		// Ignoring carol takes effect at once, although alice's rules
		// were in use a moment ago.
		if err := alice.SetAccountData(ctx, "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{string(carol.UserID): map[string]any{}}}); err != nil {
			t.Fatal(err)
		}
		pushText(t, carol, room, "ignored")
		pushText(t, bob, room, "not ignored")
		body, _ = pushSync(t, e, alice, since, "")
		wantUnread(t, body, room, 2, 0)

		// Logging a device out removes the pushers it set.
		kind := mautrix.PusherKindHTTP
		if err := alice.SetPusher(ctx, &mautrix.Pusher{AppID: "a", PushKey: "k", Kind: &kind, AppDisplayName: "A",
			DeviceDisplayName: "D", Language: "en", Data: mautrix.PusherData{"url": "https://gw.example.org/_matrix/push/v1/notify"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if ps, err := e.srv.DB.Pushers(ctx, string(alice.UserID)); err != nil || len(ps) != 0 {
			t.Fatalf("pushers after logout: %+v %v", ps, err)
		}
	})
}
