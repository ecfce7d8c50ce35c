package clientapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
)

// TestIgnoredUsers checks that an ignored user's messages leave the
// ignorer's timelines (their state events stay) and their invites are not
// shown, from the next request on.
func TestIgnoredUsers(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		carol := e.register("carol", "password-carol")
		room := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		chatJoin(t, bob, room)
		chatJoin(t, carol, room)
		fromBob := chatText(t, bob, room, "bob speaking")
		fromCarol := chatText(t, carol, room, "carol speaking")
		root := chatText(t, alice, room, "alice's thread")
		chatRel(t, bob, room, "m.thread", root, "bob in the thread")
		chatRel(t, carol, room, "m.thread", root, "carol in the thread")

		chatIndexed(t, e, alice, room, root)
		if err := alice.SetAccountData(ctx, "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{string(bob.UserID): map[string]any{}}}); err != nil {
			t.Fatal(err)
		}
		msgs := chatGet(t, e, alice, chatRoomPath(room, "/messages?dir=b&limit=50"))
		if chatFind(msgs["chunk"], fromBob) != nil || chatFind(msgs["chunk"], fromCarol) == nil {
			t.Fatalf("/messages: bob's message shown or carol's missing: %v", chatIDs(msgs["chunk"]))
		}
		bobJoined := false
		for _, ev := range chatList(msgs["chunk"]) {
			bobJoined = bobJoined || (chatDig(ev, "type") == "m.room.member" && chatDig(ev, "state_key") == string(bob.UserID))
		}
		if !bobJoined {
			t.Fatal("/messages: bob's state events must stay")
		}
		filter := url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`)
		sync := chatGet(t, e, alice, v3+"/sync?filter="+filter)
		tl := chatDig(sync, "rooms", "join", string(room), "timeline", "events")
		if chatFind(tl, fromBob) != nil || chatFind(tl, fromCarol) == nil {
			t.Fatalf("/sync: %v", chatIDs(tl))
		}
		// Nor do bob's replies count in aggregations.
		if c := chatDig(chatFind(tl, root), "unsigned", "m.relations", "m.thread", "count"); c != float64(1) {
			t.Fatalf("thread count with bob ignored: %v", c)
		}
		// carol still sees bob.
		msgs = chatGet(t, e, carol, chatRoomPath(room, "/messages?dir=b&limit=50"))
		if chatFind(msgs["chunk"], fromBob) == nil {
			t.Fatal("carol does not see bob")
		}

		// Invites from bob do not show; carol's do.
		next := sync["next_batch"].(string)
		fromBobRoom := chatRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []mid.UserID{alice.UserID}})
		fromCarolRoom := chatRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []mid.UserID{alice.UserID}})
		later := chatText(t, bob, room, "bob again")
		sync = chatGet(t, e, alice, v3+"/sync?timeout=0&since="+url.QueryEscape(next))
		if chatDig(sync, "rooms", "invite", string(fromBobRoom)) != nil || chatDig(sync, "rooms", "invite", string(fromCarolRoom)) == nil {
			t.Fatalf("invites: %v", chatDig(sync, "rooms", "invite"))
		}
		if chatFind(chatDig(sync, "rooms", "join", string(room), "timeline", "events"), later) != nil {
			t.Fatal("incremental /sync shows bob's message")
		}
		initial := chatGet(t, e, alice, v3+"/sync")
		if chatDig(initial, "rooms", "invite", string(fromBobRoom)) != nil {
			t.Fatal("initial /sync shows bob's invite")
		}

		// Un-ignored, bob is back from the next request on.
		if err := alice.SetAccountData(ctx, "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{}}); err != nil {
			t.Fatal(err)
		}
		msgs = chatGet(t, e, alice, chatRoomPath(room, "/messages?dir=b&limit=50"))
		if chatFind(msgs["chunk"], fromBob) == nil || chatFind(msgs["chunk"], later) == nil {
			t.Fatal("bob's messages are still hidden after un-ignoring him")
		}
	})
}

// TestRoomUpgrade upgrades a room and checks both rooms.
func TestRoomUpgrade(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		old := chatRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public", Preset: "public_chat", RoomVersion: "10",
			Name: "Old times", Topic: "Before the upgrade", RoomAliasName: "upgraded"})
		chatJoin(t, bob, old)
		if _, err := alice.SendStateEvent(ctx, old, mevent.StateHistoryVisibility, "", map[string]any{"history_visibility": "world_readable"}); err != nil {
			t.Fatal(err)
		}
		chatText(t, alice, old, "last words")

		upgrade := func(cli *mautrix.Client, roomID mid.RoomID, version string) (int, map[string]any) {
			status, body, _ := e.call(http.MethodPost, chatRoomPath(roomID, "/upgrade"), cli.AccessToken, map[string]any{"new_version": version})
			return status, body
		}
		status, body := upgrade(bob, old, "12")
		wantError(t, "an upgrade without power", status, body, 403, "M_FORBIDDEN")
		status, body = upgrade(alice, old, "99")
		wantError(t, "an unknown version", status, body, 400, "M_UNSUPPORTED_ROOM_VERSION")
		status, body = upgrade(alice, old, "12")
		wantOK(t, "upgrade", status, body)
		newRoom := mid.RoomID(body["replacement_room"].(string))

		// The old room: tombstoned and silenced.
		var tomb mevent.TombstoneEventContent
		if err := bob.StateEvent(ctx, old, mevent.StateTombstone, "", &tomb); err != nil || tomb.ReplacementRoom != newRoom {
			t.Fatalf("tombstone: %+v %v", tomb, err)
		}
		if _, err := bob.SendText(ctx, old, "still here?"); err == nil {
			t.Fatal("bob can still talk in the old room")
		}

		// The new room: predecessor, version and state.
		var create mevent.CreateEventContent
		if err := alice.StateEvent(ctx, newRoom, mevent.StateCreate, "", &create); err != nil {
			t.Fatal(err)
		}
		if create.Predecessor == nil || create.Predecessor.RoomID != old || create.RoomVersion != "12" {
			t.Fatalf("create: %+v", create)
		}
		var name mevent.RoomNameEventContent
		var topic mevent.TopicEventContent
		var hist mevent.HistoryVisibilityEventContent
		var rules mevent.JoinRulesEventContent
		var pl mevent.PowerLevelsEventContent
		for _, s := range []struct {
			t mevent.Type
			v any
		}{{mevent.StateRoomName, &name}, {mevent.StateTopic, &topic}, {mevent.StateHistoryVisibility, &hist}, {mevent.StateJoinRules, &rules}, {mevent.StatePowerLevels, &pl}} {
			if err := alice.StateEvent(ctx, newRoom, s.t, "", s.v); err != nil {
				t.Fatalf("%s: %v", s.t.Type, err)
			}
		}
		if name.Name != "Old times" || topic.Topic != "Before the upgrade" || hist.HistoryVisibility != "world_readable" || rules.JoinRule != "public" {
			t.Fatalf("copied state: %q %q %q %q", name.Name, topic.Topic, hist.HistoryVisibility, rules.JoinRule)
		}
		if _, listed := pl.Users[alice.UserID]; listed {
			t.Fatalf("a room version 12 creator in the power levels: %v", pl.Users)
		}
		// The alias and the directory listing moved.
		alias, err := bob.ResolveAlias(ctx, "#upgraded:localhost")
		if err != nil || alias.RoomID != newRoom {
			t.Fatalf("alias: %+v %v", alias, err)
		}
		dir, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{})
		if err != nil || len(dir.Chunk) != 1 || dir.Chunk[0].RoomID != newRoom || dir.Chunk[0].CanonicalAlias != "#upgraded:localhost" {
			t.Fatalf("directory: %+v %v", dir, err)
		}
		// bob moves over and talks.
		chatJoin(t, bob, newRoom)
		chatText(t, bob, newRoom, "hello, new room")

		// Back to version 11: the upgrader is listed again.
		status, body = upgrade(alice, newRoom, "11")
		wantOK(t, "second upgrade", status, body)
		third := mid.RoomID(body["replacement_room"].(string))
		var pl3 mevent.PowerLevelsEventContent
		if err := alice.StateEvent(ctx, third, mevent.StatePowerLevels, "", &pl3); err != nil || pl3.Users[alice.UserID] != 100 {
			t.Fatalf("power levels after upgrading to 11: %+v %v", pl3.Users, err)
		}
	})
}

// TestReports covers reporting events, rooms and users, and the admin list.
func TestReports(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		if _, err := e.srv.Users.Register(ctx, "root", "password-root", true); err != nil {
			t.Fatal(err)
		}
		admin, err := e.login("root", "password-root", "")
		if err != nil {
			t.Fatal(err)
		}
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		carol := e.register("carol", "password-carol")
		room := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		chatJoin(t, bob, room)
		rude := chatText(t, alice, room, "something rude")

		if err := bob.ReportEvent(ctx, room, rude, "this makes me sad"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, "reporting from outside the room", carol.ReportEvent(ctx, room, rude, "nosy"), "M_NOT_FOUND")
		wantCode(t, "reporting an unknown event", bob.ReportEvent(ctx, room, "$nope", "?"), "M_NOT_FOUND")
		if err := carol.ReportRoom(ctx, room, "a bad room"); err != nil {
			t.Fatalf("a room report needs no membership: %v", err)
		}
		wantCode(t, "reporting an unknown room", carol.ReportRoom(ctx, "!nope:localhost", "?"), "M_NOT_FOUND")
		status, body, _ := e.call(http.MethodPost, v3+"/users/"+url.PathEscape(string(alice.UserID))+"/report", carol.AccessToken, map[string]any{"reason": "spam"})
		wantOK(t, "a user report", status, body)
		status, body, _ = e.call(http.MethodPost, v3+"/users/"+url.PathEscape("@ghost:localhost")+"/report", carol.AccessToken, map[string]any{"reason": "boo"})
		wantError(t, "reporting an unknown user", status, body, 404, "M_NOT_FOUND")

		status, body, _ = e.call(http.MethodGet, "/_parley/admin/v1/reports", bob.AccessToken, nil)
		wantError(t, "reports for a non-admin", status, body, 403, "M_FORBIDDEN")
		list := chatGet(t, e, admin, "/_parley/admin/v1/reports")
		reports := chatList(list["reports"])
		if len(reports) != 3 || list["total"] != float64(3) {
			t.Fatalf("reports: %v", list)
		}
		// Newest first: the user report, the room report, the event report.
		if chatDig(reports[0], "target_user_id") != string(alice.UserID) || chatDig(reports[1], "room_id") != string(room) ||
			chatDig(reports[2], "event_id") != string(rude) || chatDig(reports[2], "target_user_id") != string(alice.UserID) ||
			chatDig(reports[2], "reason") != "this makes me sad" || chatDig(reports[2], "reporter") != string(bob.UserID) {
			t.Fatalf("reports: %v", reports)
		}
		page := chatGet(t, e, admin, "/_parley/admin/v1/reports?limit=2")
		if len(chatList(page["reports"])) != 2 || page["next_token"] == nil {
			t.Fatalf("a page of reports: %v", page)
		}
		rest := chatGet(t, e, admin, "/_parley/admin/v1/reports?limit=2&from="+page["next_token"].(string))
		if r := chatList(rest["reports"]); len(r) != 1 || chatDig(r[0], "event_id") != string(rude) {
			t.Fatalf("the next page of reports: %v", rest)
		}
	})
}

// TestServerNotices sends notices through the admin API.
func TestServerNotices(t *testing.T) {
	onEachEngine(t, func(c *config.Config) { c.ServerNotices.Enabled = true }, func(t *testing.T, e *env) {
		if _, err := e.srv.Users.Register(ctx, "root", "password-root", true); err != nil {
			t.Fatal(err)
		}
		admin, err := e.login("root", "password-root", "")
		if err != nil {
			t.Fatal(err)
		}
		alice := e.register("alice", "password-alice")
		notice := func(token, user string) (int, map[string]any) {
			status, body, _ := e.call(http.MethodPost, "/_parley/admin/v1/send_server_notice", token, map[string]any{
				"user_id": user, "content": map[string]any{"msgtype": "m.server_notice", "body": "maintenance tonight",
					"server_notice_type": "m.server_notice.usage_limit_reached"}})
			return status, body
		}
		status, body := notice(alice.AccessToken, string(alice.UserID))
		wantError(t, "a notice from a non-admin", status, body, 403, "M_FORBIDDEN")
		status, body = notice(admin.AccessToken, "@ghost:localhost")
		wantError(t, "a notice to nobody", status, body, 404, "M_NOT_FOUND")
		status, body = notice(admin.AccessToken, string(alice.UserID))
		wantOK(t, "a notice", status, body)
		first := body["event_id"].(string)

		sync := chatGet(t, e, alice, v3+"/sync")
		invites, _ := chatDig(sync, "rooms", "invite").(map[string]any)
		if len(invites) != 1 {
			t.Fatalf("invites: %v", invites)
		}
		var roomID string
		for id := range invites {
			roomID = id
		}
		named := false
		for _, ev := range chatList(chatDig(invites[roomID], "invite_state", "events")) {
			named = named || (chatDig(ev, "type") == "m.room.name" && chatDig(ev, "content", "name") == "Server Notices")
		}
		if !named {
			t.Fatalf("the notices room's invite: %v", invites[roomID])
		}
		tags, err := alice.GetTags(ctx, mid.RoomID(roomID))
		if _, ok := tags.Tags["m.server_notice"]; err != nil || !ok {
			t.Fatalf("tags: %+v %v", tags, err)
		}
		chatJoin(t, alice, mid.RoomID(roomID))
		status, body = notice(admin.AccessToken, string(alice.UserID))
		wantOK(t, "a second notice", status, body)
		ev, err := alice.GetEvent(ctx, mid.RoomID(roomID), mid.EventID(body["event_id"].(string)))
		if err != nil || ev.Sender != "@notices:localhost" || !strings.Contains(string(ev.Content.VeryRaw), "maintenance") {
			t.Fatalf("the second notice went elsewhere: %+v %v", ev, err)
		}
		if _, err := alice.GetEvent(ctx, mid.RoomID(roomID), mid.EventID(first)); err != nil {
			t.Fatalf("the first notice: %v", err)
		}
		// Users cannot write in it.
		if _, err := alice.SendText(ctx, mid.RoomID(roomID), "hello?"); err == nil {
			t.Fatal("alice can write in her notices room")
		}
	})
}

// TestServerNoticesDisabled: off by default.
func TestServerNoticesDisabled(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		if _, err := e.srv.Users.Register(ctx, "root", "password-root", true); err != nil {
			t.Fatal(err)
		}
		admin, err := e.login("root", "password-root", "")
		if err != nil {
			t.Fatal(err)
		}
		status, body, _ := e.call(http.MethodPost, "/_parley/admin/v1/send_server_notice", admin.AccessToken,
			map[string]any{"user_id": "@root:localhost", "content": map[string]any{"body": "x"}})
		wantError(t, "a notice while disabled", status, body, 400, "M_UNKNOWN")
	})
}
