package clientapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/users"
)

func testSharedSecret(t *testing.T, e *env, secret string) {
	admin := &synapseadmin.Client{Client: e.client()}
	resp, err := admin.SharedSecretRegister(ctx, secret, synapseadmin.ReqSharedSecretRegister{
		Username: "root", Password: "rootpw", Admin: true, Displayname: "The Admin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.UserID != "@root:localhost" || resp.AccessToken == "" || resp.DeviceID == "" {
		t.Fatalf("shared-secret registration: %+v", resp)
	}
	root := e.client()
	root.SetCredentials(resp.UserID, resp.AccessToken)
	if _, err := root.Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	dev, err := e.srv.Users.Authenticate(ctx, resp.AccessToken, "")
	if err != nil || !dev.IsAdmin {
		t.Fatalf("admin flag not set: %+v, %v", dev, err)
	}
	if p, _ := e.client().GetProfile(ctx, "@root:localhost"); p.DisplayName != "The Admin" {
		t.Fatalf("display name %q", p.DisplayName)
	}

	// A wrong MAC is refused and uses the nonce up: the right MAC cannot
	// follow on the same nonce.
	nonce, err := admin.GetRegisterNonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := synapseadmin.ReqSharedSecretRegister{Username: "eve", Password: "pw", Admin: true, Nonce: nonce}
	req.SHA1Checksum = req.Sign("wrong secret")
	status, body, _ := e.call("POST", "/_synapse/admin/v1/register", "", req)
	wantError(t, "wrong MAC", status, body, 403, "M_FORBIDDEN")
	req.SHA1Checksum = req.Sign(secret)
	status, body, _ = e.call("POST", "/_synapse/admin/v1/register", "", req)
	wantError(t, "replayed nonce", status, body, 403, "M_FORBIDDEN")
	// A made-up nonce is refused too.
	req.Nonce = "made-up"
	req.SHA1Checksum = req.Sign(secret)
	status, body, _ = e.call("POST", "/_synapse/admin/v1/register", "", req)
	wantError(t, "unknown nonce", status, body, 403, "M_FORBIDDEN")
	// The MAC covers the admin flag.
	nonce, _ = admin.GetRegisterNonce(ctx)
	req = synapseadmin.ReqSharedSecretRegister{Username: "eve", Password: "pw", Admin: false, Nonce: nonce}
	req.SHA1Checksum = req.Sign(secret)
	req.Admin = true
	status, body, _ = e.call("POST", "/_synapse/admin/v1/register", "", req)
	wantError(t, "admin flag flipped", status, body, 403, "M_FORBIDDEN")
	if _, err := e.client().GetProfile(ctx, "@eve:localhost"); err == nil {
		t.Fatal("refused registrations created an account")
	}
	// Missing fields, taken names, and inhibit_login.
	status, body, _ = e.call("POST", "/_synapse/admin/v1/register", "", map[string]any{"username": "x"})
	wantError(t, "missing fields", status, body, 400, "M_MISSING_PARAM")
	_, err = admin.SharedSecretRegister(ctx, secret, synapseadmin.ReqSharedSecretRegister{Username: "root", Password: "pw"})
	wantCode(t, "taken name", err, "M_USER_IN_USE")
	resp, err = admin.SharedSecretRegister(ctx, secret, synapseadmin.ReqSharedSecretRegister{Username: "Bot", Password: "pw", UserType: "bot", InhibitLogin: true})
	if err != nil || resp.UserID != "@bot:localhost" || resp.AccessToken != "" {
		t.Fatalf("inhibit_login: %+v, %v", resp, err)
	}
}

func TestProfile(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "pw")
		bob := e.register("bob", "pw")
		rec := &recorder{}
		e.srv.Users.SetHooks(users.Hooks{OnProfileChange: func(_ context.Context, u, n, a string) { rec.add(u + "|" + n + "|" + a) }})

		// The display name starts as the localpart.
		p, err := bob.GetProfile(ctx, "@alice:localhost")
		if err != nil || p.DisplayName != "alice" || !p.AvatarURL.IsEmpty() {
			t.Fatalf("initial profile %+v, %v", p, err)
		}
		if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
			t.Fatal(err)
		}
		avatar := id.ContentURI{Homeserver: "localhost", FileID: "abcdef"}
		if err := alice.SetAvatarURL(ctx, avatar); err != nil {
			t.Fatal(err)
		}
		if got := rec.get(); len(got) != 2 || got[0] != "@alice:localhost|Alice Liddell|" || got[1] != "@alice:localhost|Alice Liddell|mxc://localhost/abcdef" {
			t.Fatalf("OnProfileChange calls %q", got)
		}
		p, err = e.client().GetProfile(ctx, "@alice:localhost")
		if err != nil || p.DisplayName != "Alice Liddell" || p.AvatarURL != avatar {
			t.Fatalf("profile %+v, %v", p, err)
		}
		name, err := bob.GetDisplayName(ctx, "@alice:localhost")
		if err != nil || name.DisplayName != "Alice Liddell" {
			t.Fatalf("display name %+v, %v", name, err)
		}
		if url, err := bob.GetAvatarURL(ctx, "@alice:localhost"); err != nil || url != avatar {
			t.Fatalf("avatar %v, %v", url, err)
		}

		path := v3 + "/profile/@alice:localhost/displayname"
		status, body, _ := e.call("PUT", path, bob.AccessToken, map[string]any{"displayname": "Mallory"})
		wantError(t, "setting another user's name", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call("PUT", path, "", map[string]any{"displayname": "Mallory"})
		wantError(t, "setting a name without a token", status, body, 401, "M_MISSING_TOKEN")
		for what, tc := range map[string]struct {
			path   string
			body   any
			status int
			code   string
		}{
			"wrong type":       {path, map[string]any{"displayname": 42}, 400, "M_BAD_JSON"},
			"null":             {path, map[string]any{"displayname": nil}, 400, "M_BAD_JSON"},
			"missing key":      {path, map[string]any{"name": "x"}, 400, "M_MISSING_PARAM"},
			"not JSON":         {path, `{"displayname": "x"`, 400, "M_NOT_JSON"},
			"not an object":    {path, `["x"]`, 400, "M_BAD_JSON"},
			"bad avatar":       {v3 + "/profile/@alice:localhost/avatar_url", map[string]any{"avatar_url": "https://example.org/a.png"}, 400, "M_INVALID_PARAM"},
			"unsupported key":  {v3 + "/profile/@alice:localhost/m.tz", map[string]any{"m.tz": "Europe/London"}, 403, "M_FORBIDDEN"},
			"invalid key name": {v3 + "/profile/@alice:localhost/Bad-Key", map[string]any{"Bad-Key": "x"}, 400, "M_INVALID_PARAM"},
		} {
			status, body, _ := e.call("PUT", tc.path, alice.AccessToken, tc.body)
			wantError(t, what, status, body, tc.status, tc.code)
		}
		if got := rec.get(); len(got) != 2 {
			t.Fatalf("refused changes called the hook: %q", got)
		}
		if p, _ := e.client().GetProfile(ctx, "@alice:localhost"); p.DisplayName != "Alice Liddell" || p.AvatarURL != avatar {
			t.Fatalf("refused changes changed the profile: %+v", p)
		}

		status, body, _ = e.call("GET", v3+"/profile/@nobody:localhost", "", nil)
		wantError(t, "unknown user", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call("GET", v3+"/profile/@alice:elsewhere.org", "", nil)
		wantError(t, "remote user", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call("GET", v3+"/profile/@alice:localhost/m.tz", "", nil)
		wantError(t, "unset field", status, body, 404, "M_NOT_FOUND")

		// Deleting a field, and the r0 prefix.
		status, body, _ = e.call("DELETE", "/_matrix/client/r0/profile/@alice:localhost/avatar_url", alice.AccessToken, nil)
		wantOK(t, "delete avatar", status, body)
		status, body, _ = e.call("GET", v3+"/profile/@alice:localhost/avatar_url", "", nil)
		wantError(t, "deleted avatar", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call("GET", v3+"/profile/@alice:localhost", "", nil)
		if status != 200 || body["displayname"] != "Alice Liddell" || body["avatar_url"] != nil {
			t.Fatalf("profile after deleting the avatar: %v", body)
		}
		status, body, _ = e.call("DELETE", v3+"/profile/@alice:localhost/avatar_url", bob.AccessToken, nil)
		wantError(t, "deleting another user's field", status, body, 403, "M_FORBIDDEN")
	})
}

func TestAccountData(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "pw")
		bob := e.register("bob", "pw")
		rec := &recorder{}
		e.srv.Users.SetHooks(users.Hooks{NotifyAccountData: rec.add})
		room := id.RoomID("!room:localhost")
		start, err := e.srv.Users.CurrentAccountDataPos(ctx)
		if err != nil {
			t.Fatal(err)
		}

		var out map[string]any
		err = alice.GetAccountData(ctx, "org.example.settings", &out)
		wantCode(t, "unset account data", err, "M_NOT_FOUND")
		if err := alice.SetAccountData(ctx, "org.example.settings", map[string]any{"theme": "dark"}); err != nil {
			t.Fatal(err)
		}
		if err := alice.GetAccountData(ctx, "org.example.settings", &out); err != nil || out["theme"] != "dark" {
			t.Fatalf("account data %v, %v", out, err)
		}
		if err := alice.SetRoomAccountData(ctx, room, "org.example.room", map[string]any{"pinned": true}); err != nil {
			t.Fatal(err)
		}
		out = nil
		if err := alice.GetRoomAccountData(ctx, room, "org.example.room", &out); err != nil || out["pinned"] != true {
			t.Fatalf("room account data %v, %v", out, err)
		}
		// Global and room data are separate.
		err = alice.GetAccountData(ctx, "org.example.room", &out)
		wantCode(t, "room data read as global", err, "M_NOT_FOUND")
		if got := rec.get(); len(got) != 2 || got[0] != "@alice:localhost" {
			t.Fatalf("NotifyAccountData calls %q", got)
		}

		// What /sync gets.
		upto, _ := e.srv.Users.CurrentAccountDataPos(ctx)
		global, perRoom, err := e.srv.Users.AccountDataSince(ctx, "@alice:localhost", start, upto)
		if err != nil || len(global) != 1 || global[0].Type != "org.example.settings" || string(global[0].Content) != `{"theme":"dark"}` ||
			len(perRoom[room.String()]) != 1 || perRoom[room.String()][0].Type != "org.example.room" {
			t.Fatalf("account data since start: %+v %+v, %v", global, perRoom, err)
		}
		if err := alice.SetAccountData(ctx, "org.example.settings", map[string]any{"theme": "light"}); err != nil {
			t.Fatal(err)
		}
		now, _ := e.srv.Users.CurrentAccountDataPos(ctx)
		global, perRoom, _ = e.srv.Users.AccountDataSince(ctx, "@alice:localhost", upto, now)
		if len(global) != 1 || string(global[0].Content) != `{"theme":"light"}` || len(perRoom) != 0 {
			t.Fatalf("incremental account data: %+v %+v", global, perRoom)
		}
		if g, r, _ := e.srv.Users.AccountDataSince(ctx, "@bob:localhost", 0, now); len(g) != 0 || len(r) != 0 {
			t.Fatalf("bob sees alice's account data: %+v %+v", g, r)
		}

		// Refusals, none of which writes anything.
		user := v3 + "/user/@alice:localhost"
		for what, tc := range map[string]struct {
			method, path, token string
			body                any
			status              int
			code                string
		}{
			"another user's (get)":  {"GET", user + "/account_data/org.example.settings", bob.AccessToken, nil, 403, "M_FORBIDDEN"},
			"another user's (put)":  {"PUT", user + "/account_data/org.example.settings", bob.AccessToken, map[string]any{"theme": "evil"}, 403, "M_FORBIDDEN"},
			"another user's room":   {"PUT", user + "/rooms/!room:localhost/account_data/org.example.room", bob.AccessToken, map[string]any{}, 403, "M_FORBIDDEN"},
			"m.fully_read":          {"PUT", user + "/rooms/!room:localhost/account_data/m.fully_read", alice.AccessToken, map[string]any{"event_id": "$x"}, 405, "M_BAD_JSON"},
			"m.push_rules":          {"PUT", user + "/account_data/m.push_rules", alice.AccessToken, map[string]any{}, 405, "M_BAD_JSON"},
			"invalid room ID":       {"PUT", user + "/rooms/not-a-room/account_data/org.example.room", alice.AccessToken, map[string]any{}, 400, "M_INVALID_PARAM"},
			"invalid room ID (get)": {"GET", user + "/rooms/@alice:localhost/account_data/org.example.room", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
			"not JSON":              {"PUT", user + "/account_data/org.example.settings", alice.AccessToken, `{"theme": `, 400, "M_NOT_JSON"},
			"not an object":         {"PUT", user + "/account_data/org.example.settings", alice.AccessToken, `"dark"`, 400, "M_BAD_JSON"},
			"array":                 {"PUT", user + "/account_data/org.example.settings", alice.AccessToken, `[1]`, 400, "M_BAD_JSON"},
			"no token":              {"GET", user + "/account_data/org.example.settings", "", nil, 401, "M_MISSING_TOKEN"},
		} {
			status, body, _ := e.call(tc.method, tc.path, tc.token, tc.body)
			wantError(t, what, status, body, tc.status, tc.code)
		}
		if after, _ := e.srv.Users.CurrentAccountDataPos(ctx); after != now {
			t.Fatalf("refused requests moved the stream from %d to %d", now, after)
		}
		out = nil
		if err := alice.GetAccountData(ctx, "org.example.settings", &out); err != nil || out["theme"] != "light" {
			t.Fatalf("account data after refusals %v, %v", out, err)
		}
		// m.fully_read may still be read (it is not set yet).
		status, body, _ := e.call("GET", user+"/rooms/!room:localhost/account_data/m.fully_read", alice.AccessToken, nil)
		wantError(t, "unset m.fully_read", status, body, 404, "M_NOT_FOUND")
	})
}

func TestTags(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "pw")
		bob := e.register("bob", "pw")
		room := id.RoomID("!room:localhost")
		tags, err := alice.GetTags(ctx, room)
		if err != nil || len(tags.Tags) != 0 {
			t.Fatalf("no tags: %+v, %v", tags, err)
		}
		if err := alice.AddTag(ctx, room, event.RoomTagFavourite, 0.25); err != nil {
			t.Fatal(err)
		}
		if err := alice.AddTagWithCustomData(ctx, room, "u.work", map[string]any{}); err != nil {
			t.Fatal(err)
		}
		tags, err = alice.GetTags(ctx, room)
		if order, _ := tags.Tags[event.RoomTagFavourite].Order.Float64(); err != nil || len(tags.Tags) != 2 || order != 0.25 {
			t.Fatalf("tags %+v, %v", tags, err)
		}
		// Tags are the room's m.tag account data, which /sync delivers.
		var tagEvent struct {
			Tags map[string]map[string]any `json:"tags"`
		}
		if err := alice.GetRoomAccountData(ctx, room, "m.tag", &tagEvent); err != nil || len(tagEvent.Tags) != 2 {
			t.Fatalf("m.tag %+v, %v", tagEvent, err)
		}
		_, perRoom, _ := e.srv.Users.AccountDataSince(ctx, "@alice:localhost", 0, 1<<62)
		if evs := perRoom[room.String()]; len(evs) != 1 || evs[0].Type != "m.tag" {
			t.Fatalf("m.tag in the account data stream: %+v", perRoom)
		}

		if err := alice.RemoveTag(ctx, room, event.RoomTagFavourite); err != nil {
			t.Fatal(err)
		}
		if err := alice.RemoveTag(ctx, room, "u.never-set"); err != nil {
			t.Fatalf("removing a tag that is not there: %v", err)
		}
		tags, _ = alice.GetTags(ctx, room)
		if len(tags.Tags) != 1 {
			t.Fatalf("tags after removal %+v", tags)
		}

		base := v3 + "/user/@alice:localhost/rooms/!room:localhost/tags"
		status, body, _ := e.call("PUT", base+"/u.x", alice.AccessToken, map[string]any{"order": "first"})
		wantError(t, "order not a number", status, body, 400, "M_BAD_JSON")
		status, body, _ = e.call("PUT", base+"/u.x", alice.AccessToken, `[]`)
		wantError(t, "tag not an object", status, body, 400, "M_BAD_JSON")
		status, body, _ = e.call("PUT", base+"/u.x", bob.AccessToken, map[string]any{})
		wantError(t, "tagging for another user", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call("GET", base, bob.AccessToken, nil)
		wantError(t, "reading another user's tags", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call("PUT", v3+"/user/@alice:localhost/rooms/nope/tags/u.x", alice.AccessToken, map[string]any{})
		wantError(t, "invalid room", status, body, 400, "M_INVALID_PARAM")
		if tags, _ = alice.GetTags(ctx, room); len(tags.Tags) != 1 {
			t.Fatalf("refused requests changed the tags: %+v", tags)
		}
	})
}

func TestFilters(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "pw")
		bob := e.register("bob", "pw")
		f := &mautrix.Filter{
			Room: &mautrix.RoomFilter{
				Timeline: &mautrix.FilterPart{Limit: 20, Types: []event.Type{event.EventMessage}, LazyLoadMembers: true},
				State:    &mautrix.FilterPart{LazyLoadMembers: true},
				NotRooms: []id.RoomID{"!spam:localhost"},
			},
			Presence:    &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
			EventFields: []string{"type", "content"},
		}
		resp, err := alice.CreateFilter(ctx, f)
		if err != nil || resp.FilterID == "" || resp.FilterID[0] == '{' {
			t.Fatalf("create filter %+v, %v", resp, err)
		}
		again, _ := alice.CreateFilter(ctx, f)
		if again.FilterID != resp.FilterID {
			t.Fatalf("the same filter got IDs %s and %s", resp.FilterID, again.FilterID)
		}

		status, body, _ := e.call("GET", v3+"/user/@alice:localhost/filter/"+resp.FilterID, alice.AccessToken, nil)
		wantOK(t, "get filter", status, body)
		var back mautrix.Filter
		raw, _ := json.Marshal(body)
		_ = json.Unmarshal(raw, &back)
		want, _ := json.Marshal(f)
		got, _ := json.Marshal(&back)
		if string(got) != string(want) {
			t.Fatalf("filter round trip:\n got %s\nwant %s", got, want)
		}

		// Private to its user.
		status, body, _ = e.call("GET", v3+"/user/@alice:localhost/filter/"+resp.FilterID, bob.AccessToken, nil)
		wantError(t, "another user's filter", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call("GET", v3+"/user/@bob:localhost/filter/"+resp.FilterID, bob.AccessToken, nil)
		wantError(t, "another user's filter ID", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call("GET", v3+"/user/@alice:localhost/filter/xyz", alice.AccessToken, nil)
		wantError(t, "malformed filter ID", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call("POST", v3+"/user/@bob:localhost/filter", alice.AccessToken, map[string]any{})
		wantError(t, "uploading for another user", status, body, 403, "M_FORBIDDEN")

		for what, tc := range map[string]struct {
			body any
			code string
		}{
			"not JSON":         {`{"room": `, "M_NOT_JSON"},
			"limit wrong type": {map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": "ten"}}}, "M_BAD_JSON"},
			"types not a list": {map[string]any{"presence": map[string]any{"types": "m.presence"}}, "M_BAD_JSON"},
			"zero limit":       {map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 0}}}, "M_INVALID_PARAM"},
			"bad event_format": {map[string]any{"event_format": "xml"}, "M_INVALID_PARAM"},
			"bad room ID":      {map[string]any{"room": map[string]any{"rooms": []string{"#alias:localhost"}}}, "M_INVALID_PARAM"},
		} {
			status, body, _ := e.call("POST", v3+"/user/@alice:localhost/filter", alice.AccessToken, tc.body)
			wantError(t, what, status, body, 400, tc.code)
		}

		// What /sync and /messages use.
		loaded, err := e.srv.Users.LoadFilter(ctx, "@alice:localhost", resp.FilterID)
		if err != nil || loaded.Timeline().LimitOr(10, 100) != 20 || !loaded.State().LazyLoading() ||
			loaded.RoomFilter().AllowsRoom("!spam:localhost") || loaded.PresenceFilter().Allows("m.presence", "@bob:localhost") {
			t.Fatalf("loaded filter %+v, %v", loaded, err)
		}
		inline, err := e.srv.Users.LoadFilter(ctx, "@alice:localhost", `{"room":{"timeline":{"limit":5}}}`)
		if err != nil || inline.Timeline().LimitOr(10, 100) != 5 {
			t.Fatalf("inline filter %+v, %v", inline, err)
		}
		if none, err := e.srv.Users.LoadFilter(ctx, "@alice:localhost", ""); none != nil || err != nil {
			t.Fatalf("no filter: %+v, %v", none, err)
		}
		if _, err := e.srv.Users.LoadFilter(ctx, "@bob:localhost", resp.FilterID); err == nil {
			t.Fatal("bob loaded alice's filter")
		}
	})
}

func TestRateLimits(t *testing.T) {
	onEachEngine(t, func(c *config.Config) {
		c.RateLimits.Login = config.RateLimit{PerSecond: 0.01, Burst: 3}
		c.RateLimits.Registration = config.RateLimit{PerSecond: 0.01, Burst: 1}
	}, func(t *testing.T, e *env) {
		e.register("alice", "pw") // the registration's one token
		_, err := e.client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: "pw"})
		wantCode(t, "second registration", err, "M_LIMIT_EXCEEDED")

		login := map[string]any{"type": "m.login.password", "user": "alice", "password": "wrong"}
		for i := 0; i < 3; i++ {
			status, body, _ := e.call("POST", v3+"/login", "", login)
			wantError(t, fmt.Sprint("login ", i+1), status, body, 403, "M_FORBIDDEN")
		}
		status, body, hdr := e.call("POST", v3+"/login", "", login)
		wantError(t, "login over the limit", status, body, 429, "M_LIMIT_EXCEEDED")
		ms, _ := body["retry_after_ms"].(float64)
		if ms < 90_000 || ms > 100_000 {
			t.Fatalf("retry_after_ms %v, want about 100 s", body["retry_after_ms"])
		}
		if secs, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || secs < 90 || secs > 100 {
			t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
		}
		// The right password is refused too while the limit holds.
		status, body, _ = e.call("POST", v3+"/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "pw"})
		wantError(t, "right password over the limit", status, body, 429, "M_LIMIT_EXCEEDED")
	})
}

func TestBadInput(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "pw")
		for what, tc := range map[string]struct {
			method, path string
			token        bool
			body         any
			status       int
			code         string
		}{
			"login not JSON":         {"POST", "/login", false, `{"type": "m.login.password"`, 400, "M_NOT_JSON"},
			"login array":            {"POST", "/login", false, `[]`, 400, "M_BAD_JSON"},
			"login password number":  {"POST", "/login", false, map[string]any{"type": "m.login.password", "user": "alice", "password": 5}, 400, "M_BAD_JSON"},
			"login empty body":       {"POST", "/login", false, ``, 400, "M_NOT_JSON"},
			"register not JSON":      {"POST", "/register", false, `{"username": "mallory", "password": "x", "auth": {"type": "m.login.dummy"}`, 400, "M_NOT_JSON"},
			"register username type": {"POST", "/register", false, map[string]any{"username": 5, "password": "x", "auth": map[string]any{"type": "m.login.dummy"}}, 400, "M_BAD_JSON"},
			"register auth type":     {"POST", "/register", false, map[string]any{"username": "mallory", "password": "x", "auth": "dummy"}, 400, "M_BAD_JSON"},
			"register long password": {"POST", "/register", false, map[string]any{"username": "mallory", "password": string(make([]byte, 73))}, 400, "M_INVALID_PARAM"},
			"password not JSON":      {"POST", "/account/password", true, `{`, 400, "M_NOT_JSON"},
			"password wrong type":    {"POST", "/account/password", true, map[string]any{"new_password": true}, 400, "M_BAD_JSON"},
			"delete_devices type":    {"POST", "/delete_devices", true, map[string]any{"devices": "ALL"}, 400, "M_BAD_JSON"},
			"deactivate erase type":  {"POST", "/account/deactivate", true, map[string]any{"erase": "yes"}, 400, "M_BAD_JSON"},
			"unknown endpoint":       {"GET", "/no/such/endpoint", false, nil, 404, "M_UNRECOGNIZED"},
			"wrong method":           {"DELETE", "/login", false, nil, 405, "M_UNRECOGNIZED"},
		} {
			token := ""
			if tc.token {
				token = alice.AccessToken
			}
			status, body, _ := e.call(tc.method, v3+tc.path, token, tc.body)
			wantError(t, what, status, body, tc.status, tc.code)
		}
		// Nothing was written: mallory does not exist, alice's password and
		// devices are as they were.
		if avail, err := e.client().RegisterAvailable(ctx, "mallory"); err != nil || !avail.Available {
			t.Fatalf("mallory registered by a refused request: %v", err)
		}
		if _, err := e.login("alice", "pw", ""); err != nil {
			t.Fatalf("alice's password changed by a refused request: %v", err)
		}
		if _, err := alice.Whoami(ctx); err != nil {
			t.Fatalf("alice's device deleted by a refused request: %v", err)
		}
		if status, _, _ := e.call("GET", v3+"/account/whoami", alice.AccessToken, nil); status != http.StatusOK {
			t.Fatal("alice deactivated by a refused request")
		}
	})
}
