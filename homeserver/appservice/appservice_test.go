package appservice_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver"
	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

const v3 = "/_matrix/client/v3"

// call makes a raw client API request and decodes the answer.
func call(t *testing.T, srv *hstest.Server, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, srv.ClientURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: not a JSON object: %q", method, path, raw)
	}
	return resp.StatusCode, m
}

func wantError(t *testing.T, what string, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["errcode"] != wantCode {
		t.Fatalf("%s: %d %v, want %d %s", what, status, body, wantStatus, wantCode)
	}
}

// TestBridge runs a conversation between a bridge's ghost and an ordinary
// user, then takes the bridge down, makes it fail, and restarts the
// homeserver, checking that every message reaches the bridge once and in
// order.
func TestBridge(t *testing.T) {
	t.Parallel()
	for _, eng := range storagetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			b, reg := newBridge(t)
			srv := startServer(t, eng.DSN, reg, nil)
			b.connect(srv.ClientURL)
			b.start()
			bot := b.as.BotIntent()

			// The bridge checks the way back, as bridges do when they start.
			if resp, err := bot.AppservicePing(ctx, bridgeID, "startup"); err != nil || resp.DurationMS < 0 {
				t.Fatalf("ping: %+v %v", resp, err)
			}
			who, err := bot.Whoami(ctx)
			if err != nil || who.UserID != "@testbot:localhost" || who.DeviceID != "" {
				t.Fatalf("the bot's whoami: %+v %v", who, err)
			}

			alice := register(t, srv, "alice")
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Bridged chat"})
			if err != nil {
				t.Fatal(err)
			}
			room := created.RoomID
			// The ghost does not exist yet: the homeserver asks the bridge,
			// which registers it, and the invite goes through.
			ghostID := id.UserID("@_test_bob:localhost")
			if _, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: ghostID}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the ghost's invite", func() bool {
				for _, ev := range b.received() {
					if ev.RoomID == room && ev.Type == event.StateMember && ev.GetStateKey() == string(ghostID) &&
						ev.Content.AsMember().Membership == event.MembershipInvite {
						return true
					}
				}
				return false
			})
			ghost := b.as.Intent(ghostID)
			if err := ghost.EnsureJoined(ctx, room); err != nil {
				t.Fatal(err)
			}
			sent, err := ghost.SendText(ctx, room, "hello from the bridge")
			if err != nil {
				t.Fatal(err)
			}
			s, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceOnline)
			if err != nil {
				t.Fatal(err)
			}
			seen := false
			for _, ev := range s.Rooms.Join[room].Timeline.Events {
				seen = seen || ev.ID == sent.EventID && ev.Sender == ghostID
			}
			if !seen {
				t.Fatal("alice does not see the ghost's message")
			}
			if _, err := alice.SendText(ctx, room, "hi bob"); err != nil {
				t.Fatal(err)
			}
			b.waitForTexts(t, room, "hello from the bridge", "hi bob")
			for _, ev := range b.received() {
				if ev.ID == sent.EventID && ev.Unsigned.TransactionID == "" {
					t.Error("the ghost's own message came back without its transaction ID")
				}
			}

			// The bridge goes down; messages wait for it.
			b.stop()
			for i := 1; i <= 5; i++ {
				if _, err := alice.SendText(ctx, room, fmt.Sprintf("while down %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "a failed delivery", func() bool { return pending(srv) })
			b.start()
			if _, err := bot.AppservicePing(ctx, bridgeID, "back"); err != nil {
				t.Fatal(err)
			}
			b.waitForTexts(t, room, "while down 1", "while down 2", "while down 3", "while down 4", "while down 5")

			// The bridge answers 500: the transaction is sent again under
			// the same ID.
			b.setFailing(true)
			before := len(b.txnIDsSeen())
			if _, err := alice.SendText(ctx, room, "flaky"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a failed transaction", func() bool { return len(b.txnIDsSeen()) > before })
			failed := b.txnIDsSeen()[before]
			b.setFailing(false)
			b.waitForTexts(t, room, "flaky")
			if n := count(b.txnIDsSeen(), failed); n < 2 {
				t.Fatalf("transaction %s was sent %d times; want it retried under the same ID (%v)", failed, n, b.txnIDsSeen())
			}

			// The homeserver restarts while the bridge is down: the
			// undelivered transaction and the queue survive.
			b.stop()
			for _, m := range []string{"before restart 1", "before restart 2"} {
				if _, err := alice.SendText(ctx, room, m); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "a failed delivery before the restart", func() bool { return pending(srv) })
			srv.Config.ListenClient = strings.TrimPrefix(srv.ClientURL, "http://") // same port: clients keep their URL
			srv.Restart()
			if _, err := alice.SendText(ctx, room, "after restart"); err != nil {
				t.Fatal(err)
			}
			b.start()
			if _, err := bot.AppservicePing(ctx, bridgeID, "after restart"); err != nil {
				t.Fatal(err)
			}
			b.waitForTexts(t, room, "before restart 1", "before restart 2", "after restart")
			waitFor(t, "an empty queue", func() bool {
				q, err := srv.DB.AppServiceQueue(ctx, bridgeID, 10)
				return err == nil && len(q) == 0 && !pending(srv)
			})
			all := b.texts(room)
			want := []string{"hello from the bridge", "hi bob", "while down 1", "while down 2", "while down 3", "while down 4",
				"while down 5", "flaky", "before restart 1", "before restart 2", "after restart"}
			if !slices.Equal(all, want) {
				t.Fatalf("the bridge received %q, want %q", all, want)
			}
		})
	}
}

func pending(srv *hstest.Server) bool {
	_, err := srv.DB.PendingAppServiceTxn(ctx, bridgeID)
	return !errors.Is(err, storage.ErrNotFound)
}

func (b *bridge) txnIDsSeen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.txnIDs...)
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// loggerRegistration is a second service: no URL (it receives nothing),
// a non-exclusive namespace, and rate limits.
const loggerRegistration = `id: logger
url: null
as_token: as_token_of_the_logger
hs_token: hs_token_of_the_logger
sender_localpart: loggerbot
namespaces:
  users:
    - regex: "@log_.*:localhost"
      exclusive: false
`

// TestAppServiceAPI covers the rest of the application service API with
// the same bridge: namespaces and identity assertion, registration and
// login, user and alias queries, ping errors, rate limits, third-party
// lookups, network directories and ephemeral data.
func TestAppServiceAPI(t *testing.T) {
	t.Parallel()
	b, reg := newBridge(t)
	logger := filepath.Join(t.TempDir(), "logger.yaml")
	if err := os.WriteFile(logger, []byte(loggerRegistration), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "", reg, func(c *config.Config) {
		c.AppServiceConfigFiles = append(c.AppServiceConfigFiles, logger)
		c.RateLimits.MessageSending = config.RateLimit{PerSecond: 0.001, Burst: 3}
	})
	b.connect(srv.ClientURL)
	b.start()
	bot := b.as.BotIntent()
	alice := register(t, srv, "alice")
	as := bridgeAS

	t.Run("exclusive namespaces", func(t *testing.T) {
		cli, _ := mautrix.NewClient(srv.ClientURL, "", "")
		_, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "_test_eve", Password: "pw"})
		if errcode(err) != "M_EXCLUSIVE" {
			t.Fatalf("registering in an exclusive namespace: %v", err)
		}
		status, body := call(t, srv, "GET", v3+"/register/available?username=_TEST_eve", "", nil)
		wantError(t, "availability", status, body, 400, "M_EXCLUSIVE")
		// A non-exclusive namespace does not stop anyone.
		register(t, srv, "log_alice")

		r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		status, body = call(t, srv, "PUT", v3+"/directory/room/"+url.PathEscape("#_test_mine:localhost"), alice.AccessToken,
			map[string]string{"room_id": string(r.RoomID)})
		wantError(t, "alias in an exclusive namespace", status, body, 400, "M_EXCLUSIVE")
		_, err = alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomAliasName: "_test_mine"})
		if errcode(err) != "M_EXCLUSIVE" {
			t.Fatalf("createRoom with an exclusive alias: %v", err)
		}
		// The bridge may.
		if _, err := bot.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomAliasName: "_test_bots"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("identity assertion", func(t *testing.T) {
		status, body := call(t, srv, "GET", v3+"/account/whoami?user_id="+url.QueryEscape("@alice:localhost"), as, nil)
		wantError(t, "acting as a user outside the namespace", status, body, 403, "M_EXCLUSIVE")
		status, body = call(t, srv, "GET", v3+"/account/whoami?user_id="+url.QueryEscape("@_test_nobody:localhost"), as, nil)
		wantError(t, "acting as an unregistered ghost", status, body, 403, "M_FORBIDDEN")
		status, body = call(t, srv, "GET", v3+"/account/whoami?user_id="+url.QueryEscape("@someone:elsewhere.org"), as, nil)
		wantError(t, "acting as a remote user", status, body, 403, "M_FORBIDDEN")
		// The service cannot register outside its namespace either.
		status, body = call(t, srv, "POST", v3+"/register", as, map[string]any{"type": "m.login.application_service", "username": "mallory", "inhibit_login": true})
		wantError(t, "registering outside the namespace", status, body, 400, "M_EXCLUSIVE")
		status, body = call(t, srv, "POST", v3+"/register", "wrong", map[string]any{"type": "m.login.application_service", "username": "_test_x"})
		wantError(t, "registering with a wrong token", status, body, 401, "M_UNKNOWN_TOKEN")
		status, body = call(t, srv, "POST", v3+"/register", "", map[string]any{"type": "m.login.application_service", "username": "_test_x"})
		wantError(t, "registering without a token", status, body, 401, "M_MISSING_TOKEN")

		// Registration without inhibit_login logs the ghost in.
		status, body = call(t, srv, "POST", v3+"/register", as, map[string]any{"type": "m.login.application_service", "username": "_test_dave"})
		if status != 200 || body["user_id"] != "@_test_dave:localhost" || body["access_token"] == nil {
			t.Fatalf("registering a ghost: %d %v", status, body)
		}
		status, body = call(t, srv, "GET", v3+"/account/whoami", body["access_token"].(string), nil)
		if status != 200 || body["user_id"] != "@_test_dave:localhost" {
			t.Fatalf("the ghost's own token: %d %v", status, body)
		}
		// Login as a ghost, then act as its device (device masquerading).
		status, body = call(t, srv, "POST", v3+"/login", as, map[string]any{"type": "m.login.application_service",
			"identifier": map[string]string{"type": "m.id.user", "user": "_test_dave"}, "device_id": "DAVEPHONE"})
		if status != 200 || body["device_id"] != "DAVEPHONE" {
			t.Fatalf("application service login: %d %v", status, body)
		}
		q := "?user_id=" + url.QueryEscape("@_test_dave:localhost")
		status, body = call(t, srv, "GET", v3+"/account/whoami"+q+"&device_id=DAVEPHONE", as, nil)
		if status != 200 || body["device_id"] != "DAVEPHONE" {
			t.Fatalf("device masquerading: %d %v", status, body)
		}
		status, body = call(t, srv, "GET", v3+"/account/whoami"+q+"&org.matrix.msc3202.device_id=DAVEPHONE", as, nil)
		if status != 200 || body["device_id"] != "DAVEPHONE" {
			t.Fatalf("device masquerading (MSC3202): %d %v", status, body)
		}
		status, body = call(t, srv, "GET", v3+"/account/whoami"+q+"&device_id=NOPE", as, nil)
		wantError(t, "an unknown device", status, body, 400, "M_UNKNOWN_DEVICE")
		status, body = call(t, srv, "POST", v3+"/login", as, map[string]any{"type": "m.login.application_service",
			"identifier": map[string]string{"type": "m.id.user", "user": "alice"}})
		wantError(t, "logging in outside the namespace", status, body, 400, "M_EXCLUSIVE")
		status, body = call(t, srv, "GET", v3+"/login", "", nil)
		if !strings.Contains(fmt.Sprint(body["flows"]), "m.login.application_service") {
			t.Fatalf("login flows: %d %v", status, body)
		}
	})

	t.Run("rate limits", func(t *testing.T) {
		r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		ghost := b.as.Intent("@_test_fast:localhost")
		if err := ghost.EnsureJoined(ctx, r.RoomID); err != nil {
			t.Fatal(err)
		}
		if err := bot.EnsureJoined(ctx, r.RoomID); err != nil {
			t.Fatal(err)
		}
		// rate_limited: false, and the sender never is.
		for i := 0; i < 6; i++ {
			for _, c := range []*mautrix.Client{ghost.Client, bot.Client} {
				c.DefaultHTTPRetries = 0
				if _, err := c.SendText(ctx, r.RoomID, "fast"); err != nil {
					t.Fatalf("message %d of %s: %v", i, c.UserID, err)
				}
			}
		}
		// The logger's users are rate limited, like alice.
		status, body := call(t, srv, "POST", v3+"/register", "as_token_of_the_logger",
			map[string]any{"type": "m.login.application_service", "username": "log_1", "inhibit_login": true})
		if status != 200 {
			t.Fatalf("logger registration: %d %v", status, body)
		}
		logUser := "?user_id=" + url.QueryEscape("@log_1:localhost")
		if status, body := call(t, srv, "POST", v3+"/join/"+url.PathEscape(string(r.RoomID))+logUser, "as_token_of_the_logger", map[string]any{}); status != 200 {
			t.Fatalf("logger join: %d %v", status, body)
		}
		limited := false
		for i := 0; i < 6 && !limited; i++ {
			status, body := call(t, srv, "PUT", v3+"/rooms/"+url.PathEscape(string(r.RoomID))+"/send/m.room.message/l"+fmt.Sprint(i)+logUser,
				"as_token_of_the_logger", map[string]string{"msgtype": "m.text", "body": "slow"})
			limited = status == 429 && body["errcode"] == "M_LIMIT_EXCEEDED"
		}
		if !limited {
			t.Fatal("a rate-limited service's user was not limited")
		}
	})

	t.Run("queries", func(t *testing.T) {
		// A profile look-up of an unknown ghost asks the bridge.
		p, err := alice.GetProfile(ctx, "@_test_carol:localhost")
		if err != nil || p.DisplayName != "_test_carol" {
			t.Fatalf("profile of a queried ghost: %+v %v", p, err)
		}
		status, body := call(t, srv, "GET", v3+"/profile/"+url.PathEscape("@nobody:localhost"), alice.AccessToken, nil)
		wantError(t, "profile outside the namespaces", status, body, 404, "M_NOT_FOUND")

		// Joining an unknown alias in the namespace: the bridge creates
		// the portal room.
		joined, err := alice.JoinRoom(ctx, "#_test_lobby:localhost", nil)
		if err != nil {
			t.Fatalf("joining a portal by alias: %v", err)
		}
		var name event.RoomNameEventContent
		if err := alice.StateEvent(ctx, joined.RoomID, event.StateRoomName, "", &name); err != nil || name.Name != "Portal _test_lobby" {
			t.Fatalf("portal name: %+v %v", name, err)
		}
		status, body = call(t, srv, "GET", v3+"/directory/room/"+url.PathEscape("#_test_other:localhost"), "", nil)
		if status != 200 || body["room_id"] == "" {
			t.Fatalf("resolving a queried alias: %d %v", status, body)
		}
		status, body = call(t, srv, "GET", v3+"/directory/room/"+url.PathEscape("#nothing:localhost"), "", nil)
		wantError(t, "an alias outside the namespaces", status, body, 404, "M_NOT_FOUND")
	})

	t.Run("ping", func(t *testing.T) {
		if _, err := bot.AppservicePing(ctx, bridgeID, "t1"); err != nil {
			t.Fatal(err)
		}
		status, body := call(t, srv, "POST", "/_matrix/client/v1/appservice/logger/ping", as, map[string]string{})
		wantError(t, "ping as another service", status, body, 403, "M_FORBIDDEN")
		status, body = call(t, srv, "POST", "/_matrix/client/v1/appservice/"+bridgeID+"/ping", alice.AccessToken, map[string]string{})
		wantError(t, "ping as a user", status, body, 403, "M_FORBIDDEN")
		status, body = call(t, srv, "POST", "/_matrix/client/v1/appservice/logger/ping", "as_token_of_the_logger", map[string]string{})
		wantError(t, "ping without a URL", status, body, 400, "M_URL_NOT_SET")

		b.setWrongToken(true)
		status, body = call(t, srv, "POST", "/_matrix/client/v1/appservice/"+bridgeID+"/ping", as, map[string]string{"transaction_id": "t2"})
		b.setWrongToken(false)
		wantError(t, "ping with the wrong hs_token", status, body, 502, "M_BAD_STATUS")
		if body["status"] != float64(401) || !strings.Contains(fmt.Sprint(body["body"]), "M_UNKNOWN_TOKEN") {
			t.Fatalf("bad status details: %v", body)
		}

		b.stop()
		status, body = call(t, srv, "POST", "/_matrix/client/v1/appservice/"+bridgeID+"/ping", as, map[string]string{})
		b.start()
		wantError(t, "ping while the bridge is down", status, body, 502, "M_CONNECTION_FAILED")
	})

	t.Run("third-party lookups", func(t *testing.T) {
		status, body := call(t, srv, "GET", v3+"/thirdparty/protocols", alice.AccessToken, nil)
		proto, _ := body["testproto"].(map[string]any)
		insts, _ := proto["instances"].([]any)
		if status != 200 || len(insts) != 1 || insts[0].(map[string]any)["instance_id"] != "testbridge|net1" {
			t.Fatalf("protocols: %d %v", status, body)
		}
		status, body = call(t, srv, "GET", v3+"/thirdparty/protocol/testproto", alice.AccessToken, nil)
		if status != 200 || body["user_fields"] == nil {
			t.Fatalf("protocol: %d %v", status, body)
		}
		status, body = call(t, srv, "GET", v3+"/thirdparty/protocol/nope", alice.AccessToken, nil)
		wantError(t, "unknown protocol", status, body, 404, "M_NOT_FOUND")

		req, _ := http.NewRequest("GET", srv.ClientURL+v3+"/thirdparty/location/testproto?channel=%23chat&access_token="+alice.AccessToken, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var locs []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&locs)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(locs) != 1 || locs[0]["alias"] != "#_test_chat:localhost" {
			t.Fatalf("location lookup: %d %v", resp.StatusCode, locs)
		}
		b.mu.Lock()
		forwarded := b.lookups[len(b.lookups)-1]
		b.mu.Unlock()
		if forwarded != "channel=%23chat" {
			t.Fatalf("the bridge was asked %q: fields only, never the caller's token", forwarded)
		}
		status, body = call(t, srv, "GET", v3+"/thirdparty/user/testproto?nick=x", alice.AccessToken, nil)
		wantError(t, "no user found", status, body, 404, "M_NOT_FOUND")
		status, body = call(t, srv, "GET", v3+"/thirdparty/location", alice.AccessToken, nil)
		wantError(t, "reverse lookup without alias", status, body, 400, "M_MISSING_PARAM")
	})

	t.Run("network directory", func(t *testing.T) {
		r, err := bot.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		path := v3 + "/directory/list/appservice/net1/" + url.PathEscape(string(r.RoomID))
		if status, body := call(t, srv, "PUT", path, as, map[string]string{"visibility": "public"}); status != 200 {
			t.Fatalf("publishing: %d %v", status, body)
		}
		rooms, err := srv.AppServices.PublishedRooms(ctx, appservice.InstanceID(bridgeID, "net1"))
		if err != nil || len(rooms) != 1 || rooms[0] != string(r.RoomID) {
			t.Fatalf("published rooms: %v %v", rooms, err)
		}
		status, body := call(t, srv, "PUT", path, alice.AccessToken, map[string]string{"visibility": "public"})
		wantError(t, "publishing as a user", status, body, 403, "M_FORBIDDEN")
		status, body = call(t, srv, "PUT", v3+"/directory/list/appservice/net1/"+url.PathEscape("!nope:localhost"), as, map[string]string{"visibility": "public"})
		wantError(t, "publishing an unknown room", status, body, 404, "M_NOT_FOUND")
		if status, body := call(t, srv, "PUT", path, as, map[string]string{"visibility": "private"}); status != 200 {
			t.Fatalf("unpublishing: %d %v", status, body)
		}
		if rooms, _ := srv.AppServices.PublishedRooms(ctx, ""); len(rooms) != 0 {
			t.Fatalf("published after unpublishing: %v", rooms)
		}
	})

	t.Run("ephemeral data", func(t *testing.T) {
		r, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.as.Intent("@_test_ivy:localhost").EnsureJoined(ctx, r.RoomID); err != nil {
			t.Fatal(err)
		}
		// Alice really types and reads: the typing and receipt services
		// hand both to the bridge, which asked for ephemeral events.
		if _, err := alice.UserTyping(ctx, r.RoomID, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the typing notification", func() bool {
			for _, ev := range b.received() {
				if ev.Type == event.EphemeralEventTyping && ev.RoomID == r.RoomID {
					return true
				}
			}
			return false
		})
		sent, err := alice.SendText(ctx, r.RoomID, "read me")
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.SendReceipt(ctx, r.RoomID, sent.EventID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the read receipt", func() bool {
			for _, ev := range b.received() {
				if ev.Type == event.EphemeralEventReceipt && ev.RoomID == r.RoomID {
					return true
				}
			}
			return false
		})

		// A to-device message for a device of one of the bridge's users
		// reaches the bridge (MSC2409/MSC4203), as encrypting bridges need.
		status, login := call(t, srv, "POST", v3+"/login", as, map[string]any{"type": "m.login.application_service",
			"identifier": map[string]string{"type": "m.id.user", "user": "@_test_ivy:localhost"}})
		if status != 200 {
			t.Fatalf("ghost login: %d %v", status, login)
		}
		ghostDevice, _ := login["device_id"].(string)
		pingType := event.Type{Type: "org.parley.test.ping", Class: event.ToDeviceEventType}
		if _, err := alice.SendToDevice(ctx, pingType, &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			"@_test_ivy:localhost": {id.DeviceID(ghostDevice): {Raw: map[string]any{"hello": "bridge"}}},
		}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the to-device message", func() bool {
			for _, ev := range b.received() {
				if ev.Type.Type == "org.parley.test.ping" && ev.Sender == alice.UserID {
					return true
				}
			}
			return false
		})
	})
}

// TestInvalidRegistrationStopsStartup: a bad registration file, or two
// services sharing an id or a token, stop the server before it listens,
// with one line naming the file and the field.
func TestInvalidRegistrationStopsStartup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", registrationYAML("http://127.0.0.1:9"))
	for _, c := range []struct {
		name  string
		files []string
		want  []string
	}{
		{"no as_token", []string{write("noas.yaml", strings.Replace(registrationYAML("null"), "as_token: "+bridgeAS+"\n", "", 1))},
			[]string{"noas.yaml", "as_token: missing"}},
		{"bad regex", []string{write("regex.yaml", strings.Replace(registrationYAML("null"), `"@_test_.*:localhost"`, `"@_test_(.*"`, 1))},
			[]string{"regex.yaml", "namespaces.users[0].regex"}},
		{"same id", []string{good, write("sameid.yaml", strings.NewReplacer(bridgeAS, "other_as", bridgeHS, "other_hs").Replace(registrationYAML("null")))},
			[]string{"sameid.yaml", "id: \"testbridge\" is already"}},
		{"same token", []string{good, write("sametoken.yaml", strings.Replace(registrationYAML("null"), "id: "+bridgeID, "id: other", 1))},
			[]string{"sametoken.yaml", "as_token: the same token"}},
		{"missing file", []string{filepath.Join(dir, "missing.yaml")}, []string{"missing.yaml", "no such file"}},
	} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.Database = storagetest.SQLite(t)
		cfg.AppServiceConfigFiles = c.files
		if err := cfg.Finish(); err != nil {
			t.Fatal(err)
		}
		log := logrus.New()
		log.SetOutput(io.Discard)
		srv, err := homeserver.New(ctx, cfg, log)
		if err == nil {
			srv.DB.Close()
			t.Errorf("%s: the server started", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: %q, want one line with %q", c.name, err, w)
			}
		}
	}
}
