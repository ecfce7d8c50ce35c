package clientapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/users"
)

func TestDiscovery(t *testing.T) {
	onEachEngine(t, func(c *config.Config) { c.PublicBaseURL = "https://matrix.example.org" }, func(t *testing.T, e *env) {
		status, body, hdr := e.call("GET", "/.well-known/matrix/client", "", nil)
		wantOK(t, "well-known", status, body)
		if hs, _ := body["m.homeserver"].(map[string]any); hs["base_url"] != "https://matrix.example.org" {
			t.Fatalf("well-known %v", body)
		}
		if hdr.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatal("well-known without CORS headers")
		}

		flows, err := e.client().GetLoginFlows(ctx)
		if err != nil || len(flows.Flows) != 1 || flows.Flows[0].Type != mautrix.AuthTypePassword {
			t.Fatalf("login flows %+v, %v", flows, err)
		}

		_, err = e.client().Capabilities(ctx)
		wantCode(t, "capabilities without a token", err, "M_MISSING_TOKEN")
		alice := e.register("alice", "pw")
		caps, err := alice.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rv := caps.RoomVersions
		if rv == nil || rv.Default != "12" || len(rv.Available) != 12 {
			t.Fatalf("room versions %+v", rv)
		}
		for v := 1; v <= 12; v++ {
			if !rv.IsStable(strconv.Itoa(v)) {
				t.Fatalf("room version %d not stable: %+v", v, rv)
			}
		}
		if !caps.ChangePassword.IsEnabled() || !caps.SetDisplayname.IsEnabled() || !caps.SetAvatarURL.IsEnabled() ||
			caps.ThreePIDChanges.IsEnabled() {
			t.Fatalf("capabilities %+v", caps)
		}
	})
}

func TestRegister(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		// The mautrix flow: 401 with the dummy flow, then the dummy stage.
		alice := e.register("alice", "wonderland")
		who, err := alice.Whoami(ctx)
		if err != nil || who.UserID != "@alice:localhost" || who.DeviceID != alice.DeviceID || who.DeviceID == "" {
			t.Fatalf("whoami %+v, %v", who, err)
		}

		// The first request, without auth, gets the flows and a session and
		// no error code (clients tell a challenge from an error by that).
		status, body, _ := e.call("POST", v3+"/register", "", map[string]any{"username": "bob", "password": "pw"})
		if status != http.StatusUnauthorized || body["session"] == "" || body["errcode"] != nil {
			t.Fatalf("first register request: %d %v", status, body)
		}
		flows, _ := body["flows"].([]any)
		if len(flows) != 1 || flows[0].(map[string]any)["stages"].([]any)[0] != "m.login.dummy" {
			t.Fatalf("registration flows %v", body["flows"])
		}
		session := body["session"].(string)
		// An unknown session gets a new challenge.
		status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": "bob", "password": "pw",
			"auth": map[string]any{"type": "m.login.dummy", "session": "nope"}})
		if status != http.StatusUnauthorized || body["session"] == session {
			t.Fatalf("unknown session: %d %v", status, body)
		}
		status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": "Bob", "password": "pw",
			"device_id": "BOBPHONE", "initial_device_display_name": "Bob's phone",
			"auth": map[string]any{"type": "m.login.dummy", "session": session}})
		wantOK(t, "register bob", status, body)
		if body["user_id"] != "@bob:localhost" || body["device_id"] != "BOBPHONE" || body["access_token"] == "" || body["home_server"] != "localhost" {
			t.Fatalf("register response %v", body)
		}
		bob := e.client()
		bob.SetCredentials("@bob:localhost", body["access_token"].(string))
		dev, err := bob.GetDeviceInfo(ctx, "BOBPHONE")
		if err != nil || dev.DisplayName != "Bob's phone" {
			t.Fatalf("device %+v, %v", dev, err)
		}
		// The session is used up.
		status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": "bob2", "password": "pw",
			"auth": map[string]any{"type": "m.login.dummy", "session": session}})
		if status != http.StatusUnauthorized || body["session"] == session {
			t.Fatalf("reused session: %d %v", status, body)
		}

		// Taken and invalid names fail before authentication.
		status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw"})
		wantError(t, "taken name", status, body, 400, "M_USER_IN_USE")
		status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": "ALICE", "password": "pw"})
		wantError(t, "taken name in upper case", status, body, 400, "M_USER_IN_USE")
		for _, bad := range []string{"al ice", "al:ice", "élise", "@alice:localhost"} {
			status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": bad, "password": "pw"})
			wantError(t, "invalid name "+bad, status, body, 400, "M_INVALID_USERNAME")
		}
		_, err = e.client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: "pw"})
		wantCode(t, "mautrix register taken", err, "M_USER_IN_USE")

		// Guests are refused.
		status, body, _ = e.call("POST", v3+"/register?kind=guest", "", map[string]any{})
		wantError(t, "guest", status, body, 403, "M_GUEST_ACCESS_FORBIDDEN")

		// A password is required to finish.
		status, body, _ = e.call("POST", v3+"/register", "", map[string]any{"username": "carol", "auth": map[string]any{"type": "m.login.dummy"}})
		wantError(t, "no password", status, body, 400, "M_MISSING_PARAM")

		// inhibit_login: an account, no device.
		resp, err := e.client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "carol", Password: "pw", InhibitLogin: true})
		if err != nil || resp.UserID != "@carol:localhost" || resp.AccessToken != "" || resp.DeviceID != "" {
			t.Fatalf("inhibit_login: %+v, %v", resp, err)
		}
		carol, err := e.login("carol", "pw", "")
		if err != nil {
			t.Fatal(err)
		}
		devs, _ := carol.GetDevicesInfo(ctx)
		if len(devs.Devices) != 1 {
			t.Fatalf("carol has %d devices, want only the login's", len(devs.Devices))
		}

		// No username: the server makes one up.
		resp, err = e.client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Password: "pw"})
		if err != nil || resp.UserID.Homeserver() != "localhost" || len(resp.UserID.Localpart()) < 8 {
			t.Fatalf("generated user: %+v, %v", resp, err)
		}

		// Availability.
		avail, err := e.client().RegisterAvailable(ctx, "dave")
		if err != nil || !avail.Available {
			t.Fatalf("available: %+v, %v", avail, err)
		}
		_, err = e.client().RegisterAvailable(ctx, "alice")
		wantCode(t, "available taken", err, "M_USER_IN_USE")
		_, err = e.client().RegisterAvailable(ctx, "a b")
		wantCode(t, "available invalid", err, "M_INVALID_USERNAME")
		status, body, _ = e.call("GET", v3+"/register/available", "", nil)
		wantError(t, "available without name", status, body, 400, "M_MISSING_PARAM")
	})
}

func TestRegistrationDisabled(t *testing.T) {
	onEachEngine(t, func(c *config.Config) { c.Registration.Enabled = false }, func(t *testing.T, e *env) {
		_, err := e.client().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: "pw"})
		wantCode(t, "disabled registration", err, "M_FORBIDDEN")
		status, body, _ := e.call("POST", v3+"/register", "", map[string]any{})
		wantError(t, "disabled registration", status, body, 403, "M_FORBIDDEN")
	})
}

func TestLogin(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		e.register("alice", "secret")
		login := func(body map[string]any) (int, map[string]any) {
			status, resp, _ := e.call("POST", v3+"/login", "", body)
			return status, resp
		}
		pw := func(identifier map[string]any) map[string]any {
			return map[string]any{"type": "m.login.password", "identifier": identifier, "password": "secret"}
		}
		for name, body := range map[string]map[string]any{
			"localpart":        pw(map[string]any{"type": "m.id.user", "user": "alice"}),
			"user ID":          pw(map[string]any{"type": "m.id.user", "user": "@alice:localhost"}),
			"upper case":       pw(map[string]any{"type": "m.id.user", "user": "@Alice:localhost"}),
			"legacy user":      {"type": "m.login.password", "user": "alice", "password": "secret"},
			"legacy user ID":   {"type": "m.login.password", "user": "@alice:localhost", "password": "secret"},
			"with device name": {"type": "m.login.password", "user": "alice", "password": "secret", "initial_device_display_name": "laptop"},
		} {
			status, resp := login(body)
			wantOK(t, name, status, resp)
			if resp["user_id"] != "@alice:localhost" || resp["access_token"] == "" || resp["device_id"] == "" || resp["home_server"] != "localhost" {
				t.Fatalf("%s: %v", name, resp)
			}
		}

		for name, tc := range map[string]struct {
			body   map[string]any
			status int
			code   string
		}{
			"wrong password":   {map[string]any{"type": "m.login.password", "user": "alice", "password": "nope"}, 403, "M_FORBIDDEN"},
			"unknown user":     {map[string]any{"type": "m.login.password", "user": "bob", "password": "secret"}, 403, "M_FORBIDDEN"},
			"other server":     {pw(map[string]any{"type": "m.id.user", "user": "@alice:elsewhere.org"}), 403, "M_FORBIDDEN"},
			"third party":      {pw(map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"}), 403, "M_FORBIDDEN"},
			"legacy 3pid":      {map[string]any{"type": "m.login.password", "medium": "email", "address": "alice@example.org", "password": "secret"}, 403, "M_FORBIDDEN"},
			"phone":            {pw(map[string]any{"type": "m.id.phone", "country": "GB", "phone": "07700900000"}), 403, "M_FORBIDDEN"},
			"unknown id type":  {pw(map[string]any{"type": "m.id.carrier_pigeon"}), 400, "M_UNKNOWN"},
			"no identifier":    {map[string]any{"type": "m.login.password", "password": "secret"}, 400, "M_BAD_JSON"},
			"unknown type":     {map[string]any{"type": "m.login.token", "token": "x"}, 400, "M_UNKNOWN"},
			"no type":          {map[string]any{"user": "alice", "password": "secret"}, 400, "M_BAD_JSON"},
			"identifier shape": {map[string]any{"type": "m.login.password", "identifier": "alice", "password": "secret"}, 400, "M_BAD_JSON"},
		} {
			status, resp := login(tc.body)
			wantError(t, name, status, resp, tc.status, tc.code)
		}

		// mautrix's own login, then logging in again on the same device
		// revokes that device's earlier token.
		first, err := e.login("alice", "secret", "LAPTOP")
		if err != nil || first.DeviceID != "LAPTOP" {
			t.Fatalf("login on LAPTOP: %v", err)
		}
		second, err := e.login("alice", "secret", "LAPTOP")
		if err != nil {
			t.Fatal(err)
		}
		_, err = first.Whoami(ctx)
		wantCode(t, "token replaced by a new login on its device", err, "M_UNKNOWN_TOKEN")
		who, err := second.Whoami(ctx)
		if err != nil || who.DeviceID != "LAPTOP" {
			t.Fatalf("whoami %+v, %v", who, err)
		}
		status, body, _ := e.call("GET", v3+"/account/whoami", second.AccessToken, nil)
		if body["is_guest"] != false || status != 200 {
			t.Fatalf("whoami raw: %v", body)
		}
	})
}

func TestAccessTokens(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "secret")
		token := alice.AccessToken

		status, body, _ := e.call("GET", v3+"/account/whoami", "", nil)
		wantError(t, "no token", status, body, 401, "M_MISSING_TOKEN")
		status, body, _ = e.call("GET", v3+"/account/whoami", "pat_not_a_token", nil)
		wantError(t, "bad token", status, body, 401, "M_UNKNOWN_TOKEN")
		if body["soft_logout"] != false {
			t.Fatalf("soft_logout missing or not false: %v", body)
		}

		// The query parameter form, the r0 prefix, and the header's scheme
		// in any case.
		status, body, _ = e.call("GET", v3+"/account/whoami?access_token="+url.QueryEscape(token), "", nil)
		if status != 200 || body["user_id"] != "@alice:localhost" {
			t.Fatalf("access_token parameter: %d %v", status, body)
		}
		status, body, _ = e.call("GET", "/_matrix/client/r0/account/whoami", token, nil)
		if status != 200 || body["user_id"] != "@alice:localhost" {
			t.Fatalf("r0 prefix: %d %v", status, body)
		}
		req, _ := http.NewRequest("GET", e.srv.ClientURL+v3+"/account/whoami", nil)
		req.Header.Set("Authorization", "bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("lower-case bearer: %v %v", resp, err)
		}
		status, body, _ = e.call("POST", "/_matrix/client/r0/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "secret"})
		wantOK(t, "r0 login", status, body)
		status, body, _ = e.call("GET", "/_matrix/client/r0/register/available?username=zed", "", nil)
		wantOK(t, "r0 availability", status, body)
	})
}

func TestLogout(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "secret")
		other, _ := e.login("alice", "secret", "OTHER")
		if _, err := alice.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		status, body, _ := e.call("GET", v3+"/account/whoami", alice.AccessToken, nil)
		wantError(t, "logged-out token", status, body, 401, "M_UNKNOWN_TOKEN")
		devs, err := other.GetDevicesInfo(ctx)
		if err != nil || len(devs.Devices) != 1 || devs.Devices[0].DeviceID != "OTHER" {
			t.Fatalf("devices after logout: %+v, %v", devs, err)
		}

		third, _ := e.login("alice", "secret", "")
		if _, err := other.LogoutAll(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*mautrix.Client{other, third} {
			_, err := c.Whoami(ctx)
			wantCode(t, "after logout/all", err, "M_UNKNOWN_TOKEN")
		}
		again, err := e.login("alice", "secret", "")
		if err != nil {
			t.Fatal(err)
		}
		if devs, _ := again.GetDevicesInfo(ctx); len(devs.Devices) != 1 {
			t.Fatalf("%d devices after logout/all and a new login", len(devs.Devices))
		}
	})
}

func TestChangePassword(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "old")
		other, _ := e.login("alice", "old", "OTHER")
		kept, _ := e.login("alice", "old", "KEPT")
		path := v3 + "/account/password"

		status, body, _ := e.call("POST", path, alice.AccessToken, map[string]any{"new_password": "new"})
		if status != 401 || body["errcode"] != nil || body["session"] == nil {
			t.Fatalf("no auth: %d %v", status, body)
		}
		flows := body["flows"].([]any)
		if flows[0].(map[string]any)["stages"].([]any)[0] != "m.login.password" {
			t.Fatalf("flows %v", flows)
		}
		session := body["session"].(string)
		auth := func(pw string) map[string]any {
			return map[string]any{"type": "m.login.password", "session": session, "password": pw,
				"identifier": map[string]any{"type": "m.id.user", "user": "@alice:localhost"}}
		}
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"new_password": "new", "auth": auth("wrong")})
		if status != 401 || body["errcode"] != "M_FORBIDDEN" || body["session"] != session || body["flows"] == nil {
			t.Fatalf("wrong password: %d %v", status, body)
		}
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"auth": auth("old")})
		wantError(t, "no new password", status, body, 400, "M_MISSING_PARAM")
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"new_password": "", "auth": auth("old")})
		wantError(t, "empty new password", status, body, 400, "M_WEAK_PASSWORD")
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"new_password": "new", "auth": auth("old")})
		wantOK(t, "change password", status, body)

		// The other devices are logged out, the one that asked is not.
		if _, err := alice.Whoami(ctx); err != nil {
			t.Fatalf("requesting device logged out: %v", err)
		}
		for _, c := range []*mautrix.Client{other, kept} {
			_, err := c.Whoami(ctx)
			wantCode(t, "other device after password change", err, "M_UNKNOWN_TOKEN")
		}
		_, err := e.login("alice", "old", "")
		wantCode(t, "old password", err, "M_FORBIDDEN")
		kept, err = e.login("alice", "new", "KEPT")
		if err != nil {
			t.Fatal(err)
		}

		// logout_devices: false keeps them.
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"new_password": "newer", "logout_devices": false})
		session = body["session"].(string)
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"new_password": "newer", "logout_devices": false, "auth": auth("new")})
		wantOK(t, "change password keeping devices", status, body)
		if _, err := kept.Whoami(ctx); err != nil {
			t.Fatalf("device logged out despite logout_devices false: %v", err)
		}
		if _, err := e.login("alice", "newer", ""); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeactivate(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "secret")
		other, _ := e.login("alice", "secret", "")
		if err := alice.SetAccountData(ctx, "org.example", map[string]any{"a": 1}); err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		e.srv.Users.SetHooks(users.Hooks{OnDeactivate: func(_ context.Context, userID string) { rec.add(userID) }})
		path := v3 + "/account/deactivate"
		status, body, _ := e.call("POST", path, alice.AccessToken, map[string]any{})
		if status != 401 {
			t.Fatalf("no auth: %d %v", status, body)
		}
		session := body["session"].(string)
		status, body, _ = e.call("POST", path, alice.AccessToken, map[string]any{"erase": true,
			"auth": map[string]any{"type": "m.login.password", "session": session, "user": "alice", "password": "secret"}})
		wantOK(t, "deactivate", status, body)
		if body["id_server_unbind_result"] != "success" {
			t.Fatalf("deactivate answer %v", body)
		}
		if got := rec.get(); len(got) != 1 || got[0] != "@alice:localhost" {
			t.Fatalf("OnDeactivate hook calls: %v", got)
		}
		for _, c := range []*mautrix.Client{alice, other} {
			_, err := c.Whoami(ctx)
			wantCode(t, "token after deactivation", err, "M_UNKNOWN_TOKEN")
		}
		_, err := e.login("alice", "secret", "")
		wantCode(t, "login after deactivation", err, "M_USER_DEACTIVATED")
		_, err = e.login("alice", "wrong", "")
		wantCode(t, "wrong password after deactivation", err, "M_FORBIDDEN")
		_, err = e.client().GetProfile(ctx, "@alice:localhost")
		wantCode(t, "profile after deactivation", err, "M_NOT_FOUND")
		_, err = e.client().RegisterAvailable(ctx, "alice")
		wantCode(t, "name of a deactivated account", err, "M_USER_IN_USE")
	})
}

func TestSharedSecretRegistration(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		onEachEngine(t, nil, func(t *testing.T, e *env) {
			status, body, _ := e.call("GET", "/_synapse/admin/v1/register", "", nil)
			wantError(t, "nonce without a secret", status, body, 403, "M_FORBIDDEN")
			status, body, _ = e.call("POST", "/_synapse/admin/v1/register", "", map[string]any{})
			wantError(t, "registration without a secret", status, body, 403, "M_FORBIDDEN")
		})
	})
	t.Run("enabled", func(t *testing.T) {
		// Open registration off: the shared secret works regardless.
		onEachEngine(t, func(c *config.Config) { c.Registration.SharedSecret = "s3cret"; c.Registration.Enabled = false },
			func(t *testing.T, e *env) { testSharedSecret(t, e, "s3cret") })
	})
}

func TestDevices(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "secret")
		phone, _ := e.login("alice", "secret", "PHONE")
		tablet, _ := e.login("alice", "secret", "TABLET")

		devs, err := alice.GetDevicesInfo(ctx)
		if err != nil || len(devs.Devices) != 3 {
			t.Fatalf("devices %+v, %v", devs, err)
		}
		for _, d := range devs.Devices {
			if d.LastSeenTS == 0 || d.LastSeenIP != "127.0.0.1" {
				t.Fatalf("device without last seen: %+v", d)
			}
		}
		if err := alice.SetDeviceInfo(ctx, "PHONE", &mautrix.ReqDeviceInfo{DisplayName: "My phone"}); err != nil {
			t.Fatal(err)
		}
		d, err := tablet.GetDeviceInfo(ctx, "PHONE")
		if err != nil || d.DisplayName != "My phone" || d.DeviceID != "PHONE" {
			t.Fatalf("renamed device %+v, %v", d, err)
		}
		_, err = alice.GetDeviceInfo(ctx, "NOPE")
		wantCode(t, "unknown device", err, "M_NOT_FOUND")
		status, body, _ := e.call("PUT", v3+"/devices/NOPE", alice.AccessToken, map[string]any{"display_name": "x"})
		wantError(t, "renaming an unknown device", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call("PUT", v3+"/devices/PHONE", alice.AccessToken, map[string]any{})
		wantOK(t, "empty update", status, body)
		status, body, _ = e.call("PUT", v3+"/devices/PHONE", alice.AccessToken, map[string]any{"display_name": 7})
		wantError(t, "name of the wrong type", status, body, 400, "M_BAD_JSON")
		if d, _ := alice.GetDeviceInfo(ctx, "PHONE"); d.DisplayName != "My phone" {
			t.Fatalf("bad update changed the name to %q", d.DisplayName)
		}
		// Another user cannot see them.
		bob := e.register("bob", "pw")
		_, err = bob.GetDeviceInfo(ctx, "PHONE")
		wantCode(t, "another user's device", err, "M_NOT_FOUND")

		// Deleting needs the password.
		err = alice.DeleteDevice(ctx, "PHONE", &mautrix.ReqDeleteDevice[any]{})
		var he mautrix.HTTPError
		if err == nil || !asHTTPError(err, &he) || he.Response.StatusCode != 401 {
			t.Fatalf("delete without auth: %v", err)
		}
		status, body, _ = e.call("DELETE", v3+"/devices/PHONE", alice.AccessToken, nil)
		if status != 401 || body["session"] == nil {
			t.Fatalf("delete without a body: %d %v", status, body)
		}
		session := body["session"].(string)
		err = alice.DeleteDevice(ctx, "PHONE", &mautrix.ReqDeleteDevice[any]{Auth: mautrix.ReqUIAuthLogin{
			BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: session},
			User:         "alice", Password: "secret",
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = phone.Whoami(ctx)
		wantCode(t, "deleted device's token", err, "M_UNKNOWN_TOKEN")

		// Bulk deletion.
		status, body, _ = e.call("POST", v3+"/delete_devices", alice.AccessToken, map[string]any{})
		wantError(t, "delete_devices without devices", status, body, 400, "M_MISSING_PARAM")
		status, body, _ = e.call("POST", v3+"/delete_devices", alice.AccessToken, map[string]any{"devices": []string{"TABLET", "GONE"}})
		session = body["session"].(string)
		status, body, _ = e.call("POST", v3+"/delete_devices", alice.AccessToken, map[string]any{"devices": []string{"TABLET", "GONE"},
			"auth": map[string]any{"type": "m.login.password", "session": session, "user": "alice", "password": "wrong"}})
		if status != 401 || body["errcode"] != "M_FORBIDDEN" {
			t.Fatalf("wrong password: %d %v", status, body)
		}
		if _, err := tablet.Whoami(ctx); err != nil {
			t.Fatal("device deleted despite a wrong password")
		}
		err = alice.DeleteDevices(ctx, &mautrix.ReqDeleteDevices[any]{Devices: []id.DeviceID{"TABLET", "GONE"}, Auth: mautrix.ReqUIAuthLogin{
			BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: session},
			User:         "@alice:localhost", Password: "secret",
		}})
		if err != nil {
			t.Fatal(err)
		}
		devs, _ = alice.GetDevicesInfo(ctx)
		if len(devs.Devices) != 1 || devs.Devices[0].DeviceID != alice.DeviceID {
			t.Fatalf("devices left: %+v", devs.Devices)
		}
		// A session started by one user cannot be finished by another,
		// nor can a user authenticate as someone else.
		status, body, _ = e.call("POST", v3+"/delete_devices", bob.AccessToken, map[string]any{"devices": []string{}})
		bobSession := body["session"].(string)
		status, body, _ = e.call("POST", v3+"/delete_devices", alice.AccessToken, map[string]any{"devices": []string{alice.DeviceID.String()},
			"auth": map[string]any{"type": "m.login.password", "session": bobSession, "user": "alice", "password": "secret"}})
		if status != 401 || body["session"] == bobSession {
			t.Fatalf("another user's session: %d %v", status, body)
		}
		status, body, _ = e.call("POST", v3+"/delete_devices", alice.AccessToken, map[string]any{"devices": []string{alice.DeviceID.String()},
			"auth": map[string]any{"type": "m.login.password", "session": body["session"], "user": "bob", "password": "pw"}})
		if status != 401 || body["errcode"] != "M_FORBIDDEN" {
			t.Fatalf("another user's password: %d %v", status, body)
		}
		if _, err := alice.Whoami(ctx); err != nil {
			t.Fatal("device deleted with another user's password")
		}
	})
}
