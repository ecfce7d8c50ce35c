package clientapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/config"
)

const (
	tokenValidity = "/_matrix/client/v1/register/m.login.registration_token/validity"
	tokenAdmin    = "/_parley/admin/v1/registration_tokens"
)

func requireToken(c *config.Config) { c.Registration.RequiresToken = true }

// loginAs creates an account with the users service, bypassing /register,
// and returns its access token.
func (e *env) loginAs(name string, admin bool) string {
	e.t.Helper()
	if _, err := e.srv.Users.Register(ctx, name, "pw-"+name, admin); err != nil {
		e.t.Fatal(err)
	}
	cli, err := e.login(name, "pw-"+name, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return cli.AccessToken
}

// newToken creates a registration token through the admin API; a nil body
// sends no body at all.
func (e *env) newToken(admin string, body map[string]any) map[string]any {
	e.t.Helper()
	var b any
	if body != nil {
		b = body
	}
	status, resp, _ := e.call(http.MethodPost, tokenAdmin+"/new", admin, b)
	wantOK(e.t, fmt.Sprintf("new token %v", body), status, resp)
	return resp
}

// registerWithToken registers name in one request: the token stage alone
// completes the flow, so it may start the session itself.
func (e *env) registerWithToken(name, token string) (int, map[string]any) {
	e.t.Helper()
	status, body, _ := e.call(http.MethodPost, v3+"/register", "", map[string]any{"username": name, "password": "pw",
		"auth": map[string]any{"type": "m.login.registration_token", "token": token}})
	return status, body
}

func validity(t *testing.T, e *env, token string) bool {
	t.Helper()
	status, body, _ := e.call(http.MethodGet, tokenValidity+"?token="+token, "", nil)
	wantOK(t, "validity of "+token, status, body)
	valid, ok := body["valid"].(bool)
	if !ok {
		t.Fatalf("validity answer %v", body)
	}
	return valid
}

func wantUses(t *testing.T, e *env, admin, token string, pending, completed float64) {
	t.Helper()
	status, body, _ := e.call(http.MethodGet, tokenAdmin+"/"+token, admin, nil)
	wantOK(t, "get "+token, status, body)
	if body["pending"] != pending || body["completed"] != completed {
		t.Fatalf("%s: %v, want pending %v completed %v", token, body, pending, completed)
	}
}

// TestRegistrationTokenFlow registers with tokens while registration
// requires one.
func TestRegistrationTokenFlow(t *testing.T) {
	onEachEngine(t, requireToken, func(t *testing.T, e *env) {
		admin := e.loginAs("root", true)
		tok := e.newToken(admin, map[string]any{"uses_allowed": 2})["token"].(string)

		// The flow: the token stage alone.
		status, body, _ := e.call(http.MethodPost, v3+"/register", "", map[string]any{"username": "alice", "password": "pw"})
		if status != http.StatusUnauthorized || body["errcode"] != nil {
			t.Fatalf("first register request: %d %v", status, body)
		}
		flows, _ := body["flows"].([]any)
		if len(flows) != 1 || fmt.Sprint(flows[0].(map[string]any)["stages"]) != "[m.login.registration_token]" {
			t.Fatalf("registration flows %v", body["flows"])
		}
		session := body["session"].(string)
		auth := func(a map[string]any) (int, map[string]any) {
			a["session"] = session
			status, body, _ := e.call(http.MethodPost, v3+"/register", "", map[string]any{"username": "alice", "password": "pw", "auth": a})
			return status, body
		}
		// Open registration's dummy stage is not enough.
		status, body = auth(map[string]any{"type": "m.login.dummy"})
		if status != http.StatusUnauthorized || body["errcode"] != "M_FORBIDDEN" || body["session"] != session {
			t.Fatalf("dummy stage: %d %v", status, body)
		}
		// Failed token stages: 401 with the flows, the session and an error.
		for _, bad := range []map[string]any{
			{"type": "m.login.registration_token", "token": "unknown"},
			{"type": "m.login.registration_token", "token": "not a token!"},
			{"type": "m.login.registration_token", "token": strings.Repeat("a", 65)},
		} {
			status, body = auth(bad)
			if status != http.StatusUnauthorized || body["errcode"] != "M_UNAUTHORIZED" || body["session"] != session || body["flows"] == nil {
				t.Fatalf("token %v: %d %v", bad["token"], status, body)
			}
		}
		status, body = auth(map[string]any{"type": "m.login.registration_token"})
		if status != http.StatusUnauthorized || body["errcode"] != "M_MISSING_PARAM" {
			t.Fatalf("no token: %d %v", status, body)
		}
		wantUses(t, e, admin, tok, 0, 0)
		status, body = auth(map[string]any{"type": "m.login.registration_token", "token": tok})
		wantOK(t, "register with a token", status, body)
		if body["user_id"] != "@alice:localhost" || body["access_token"] == "" {
			t.Fatalf("register response %v", body)
		}
		wantUses(t, e, admin, tok, 0, 1)

		// The second and last use, then no more.
		if !validity(t, e, tok) {
			t.Fatal("token with a use left is invalid")
		}
		status, body = e.registerWithToken("bob", tok)
		wantOK(t, "register bob", status, body)
		wantUses(t, e, admin, tok, 0, 2)
		if validity(t, e, tok) {
			t.Fatal("used-up token is valid")
		}
		status, body = e.registerWithToken("carol", tok)
		if status != http.StatusUnauthorized || body["errcode"] != "M_UNAUTHORIZED" {
			t.Fatalf("used-up token: %d %v", status, body)
		}
		// A registration that fails after the token stage (the account
		// cannot be created) gives its reserved use back.
		more := e.newToken(admin, map[string]any{"uses_allowed": 1})["token"].(string)
		status, body, _ = e.call(http.MethodPost, v3+"/register", "", map[string]any{"username": "dave", "password": "pw",
			"device_id": strings.Repeat("D", 256), "auth": map[string]any{"type": "m.login.registration_token", "token": more}})
		wantError(t, "device ID too long", status, body, 400, "M_INVALID_PARAM")
		wantUses(t, e, admin, more, 0, 0)
		status, body = e.registerWithToken("dave", more)
		wantOK(t, "register dave with the use given back", status, body)
		wantUses(t, e, admin, more, 0, 1)

		// An expired token (the admin API refuses expiry times in the past).
		if err := e.srv.DB.CreateRegistrationToken(ctx, "expired", nil, new(time.Now().Add(-time.Minute).UnixMilli())); err != nil {
			t.Fatal(err)
		}
		if validity(t, e, "expired") {
			t.Fatal("expired token is valid")
		}
		status, body = e.registerWithToken("carol", "expired")
		if status != http.StatusUnauthorized || body["errcode"] != "M_UNAUTHORIZED" {
			t.Fatalf("expired token: %d %v", status, body)
		}
		// Unlimited tokens.
		free := e.newToken(admin, map[string]any{"token": "free-for.all_~"})["token"].(string)
		for i := range 3 {
			status, body = e.registerWithToken(fmt.Sprint("user", i), free)
			wantOK(t, "register with an unlimited token", status, body)
		}
		wantUses(t, e, admin, free, 0, 3)

		status, body, _ = e.call(http.MethodGet, tokenValidity, "", nil)
		wantError(t, "validity without a token", status, body, 400, "M_MISSING_PARAM")
		if validity(t, e, "unknown") || validity(t, e, "not%20valid") {
			t.Fatal("unknown token is valid")
		}
	})
}

// TestRegistrationTokenRace registers many users at once with a token that
// has fewer uses: exactly uses_allowed of them get an account.
func TestRegistrationTokenRace(t *testing.T) {
	onEachEngine(t, requireToken, func(t *testing.T, e *env) {
		admin := e.loginAs("root", true)
		tok := e.newToken(admin, map[string]any{"uses_allowed": 3})["token"].(string)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[int]int{}
		)
		for i := range 16 {
			wg.Go(func() {
				status, body := e.registerWithToken(fmt.Sprint("racer", i), tok)
				if status != http.StatusOK && body["errcode"] != "M_UNAUTHORIZED" {
					t.Errorf("racer %d: %d %v", i, status, body)
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if statuses[http.StatusOK] != 3 || statuses[http.StatusUnauthorized] != 13 {
			t.Fatalf("answers %v, want 3 registrations and 13 refusals", statuses)
		}
		wantUses(t, e, admin, tok, 0, 3)
	})
}

// TestRegistrationTokenAdmin covers the admin API.
func TestRegistrationTokenAdmin(t *testing.T) {
	onEachEngine(t, requireToken, func(t *testing.T, e *env) {
		admin := e.loginAs("root", true)
		bob := e.loginAs("bob", false)

		for _, c := range []struct{ method, path string }{
			{http.MethodGet, tokenAdmin}, {http.MethodPost, tokenAdmin + "/new"}, {http.MethodGet, tokenAdmin + "/x"},
			{http.MethodPut, tokenAdmin + "/x"}, {http.MethodDelete, tokenAdmin + "/x"},
		} {
			status, body, _ := e.call(c.method, c.path, bob, map[string]any{})
			wantError(t, "non-admin "+c.method+" "+c.path, status, body, 403, "M_FORBIDDEN")
			status, body, _ = e.call(c.method, c.path, "", map[string]any{})
			wantError(t, "anonymous "+c.method+" "+c.path, status, body, 401, "M_MISSING_TOKEN")
		}

		// Created with defaults: 16 generated characters, unlimited.
		gen := e.newToken(admin, nil)
		if tok, _ := gen["token"].(string); len(tok) != 16 || gen["uses_allowed"] != nil || gen["expiry_time"] != nil ||
			gen["pending"] != 0.0 || gen["completed"] != 0.0 {
			t.Fatalf("generated token %v", gen)
		}
		for _, k := range []string{"uses_allowed", "expiry_time"} {
			if _, ok := gen[k]; !ok {
				t.Fatalf("%s missing rather than null: %v", k, gen)
			}
		}
		if short := e.newToken(admin, map[string]any{"length": 5}); len(short["token"].(string)) != 5 {
			t.Fatalf("length 5: %v", short)
		}
		expiry := time.Now().Add(time.Hour).UnixMilli()
		named := e.newToken(admin, map[string]any{"token": "Invite-1", "uses_allowed": 10, "expiry_time": expiry})
		if named["token"] != "Invite-1" || named["uses_allowed"] != 10.0 || named["expiry_time"] != float64(expiry) {
			t.Fatalf("named token %v", named)
		}
		for _, bad := range []struct {
			body map[string]any
			code string
		}{
			{map[string]any{"token": "Invite-1"}, "M_INVALID_PARAM"},
			{map[string]any{"token": "has space"}, "M_INVALID_PARAM"},
			{map[string]any{"token": ""}, "M_INVALID_PARAM"},
			{map[string]any{"token": strings.Repeat("x", 65)}, "M_INVALID_PARAM"},
			{map[string]any{"uses_allowed": -1}, "M_INVALID_PARAM"},
			{map[string]any{"expiry_time": 1}, "M_INVALID_PARAM"},
			{map[string]any{"length": 0}, "M_INVALID_PARAM"},
			{map[string]any{"length": 65}, "M_INVALID_PARAM"},
			{map[string]any{"uses_allowed": "ten"}, "M_BAD_JSON"},
			{map[string]any{"uses_allowed": 1.5}, "M_BAD_JSON"},
			{map[string]any{"token": 7}, "M_BAD_JSON"},
		} {
			status, body, _ := e.call(http.MethodPost, tokenAdmin+"/new", admin, bad.body)
			wantError(t, fmt.Sprintf("new token %v", bad.body), status, body, 400, bad.code)
		}

		status, body, _ := e.call(http.MethodGet, tokenAdmin+"/Invite-1", admin, nil)
		wantOK(t, "get", status, body)
		if body["token"] != "Invite-1" || body["uses_allowed"] != 10.0 {
			t.Fatalf("get %v", body)
		}
		status, body, _ = e.call(http.MethodGet, tokenAdmin+"/nope", admin, nil)
		wantError(t, "get unknown", status, body, 404, "M_NOT_FOUND")

		// Updates: a field left out stays, null means unlimited.
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{"uses_allowed": 1})
		wantOK(t, "update uses", status, body)
		if body["uses_allowed"] != 1.0 || body["expiry_time"] != float64(expiry) {
			t.Fatalf("update uses %v", body)
		}
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{"expiry_time": nil})
		wantOK(t, "update expiry", status, body)
		if body["uses_allowed"] != 1.0 || body["expiry_time"] != nil {
			t.Fatalf("update expiry %v", body)
		}
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{})
		wantOK(t, "empty update", status, body)
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{"uses_allowed": -2})
		wantError(t, "negative uses", status, body, 400, "M_INVALID_PARAM")
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{"expiry_time": 5})
		wantError(t, "past expiry", status, body, 400, "M_INVALID_PARAM")
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{"expiry_time": "soon"})
		wantError(t, "expiry of the wrong type", status, body, 400, "M_BAD_JSON")
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/nope", admin, map[string]any{"uses_allowed": 1})
		wantError(t, "update unknown", status, body, 404, "M_NOT_FOUND")

		// Use up Invite-1, then list.
		status, body = e.registerWithToken("carol", "Invite-1")
		wantOK(t, "register carol", status, body)
		list := func(query string) []string {
			t.Helper()
			status, body, _ := e.call(http.MethodGet, tokenAdmin+query, admin, nil)
			wantOK(t, "list"+query, status, body)
			var names []string
			for _, tok := range body["registration_tokens"].([]any) {
				names = append(names, tok.(map[string]any)["token"].(string))
			}
			return names
		}
		if all := list(""); len(all) != 3 {
			t.Fatalf("list %v", all)
		}
		if invalid := list("?valid=false"); fmt.Sprint(invalid) != "[Invite-1]" {
			t.Fatalf("invalid tokens %v", invalid)
		}
		if valid := list("?valid=true"); len(valid) != 2 {
			t.Fatalf("valid tokens %v", valid)
		}
		status, body, _ = e.call(http.MethodGet, tokenAdmin+"?valid=maybe", admin, nil)
		wantError(t, "valid=maybe", status, body, 400, "M_INVALID_PARAM")

		// Raising uses_allowed makes it valid again; deleting ends it.
		status, body, _ = e.call(http.MethodPut, tokenAdmin+"/Invite-1", admin, map[string]any{"uses_allowed": nil})
		wantOK(t, "unlimited", status, body)
		if !validity(t, e, "Invite-1") {
			t.Fatal("unlimited token invalid")
		}
		status, body, _ = e.call(http.MethodDelete, tokenAdmin+"/Invite-1", admin, nil)
		wantOK(t, "delete", status, body)
		if validity(t, e, "Invite-1") {
			t.Fatal("deleted token valid")
		}
		status, body, _ = e.call(http.MethodDelete, tokenAdmin+"/Invite-1", admin, nil)
		wantError(t, "delete twice", status, body, 404, "M_NOT_FOUND")
	})
}

// TestRegistrationTokenValidityLimits: 403 when registration is closed, and
// rate-limited like registration.
func TestRegistrationTokenValidityLimits(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		onEachEngine(t, func(c *config.Config) { c.Registration.Enabled = false }, func(t *testing.T, e *env) {
			status, body, _ := e.call(http.MethodGet, tokenValidity+"?token=abc", "", nil)
			wantError(t, "validity with registration disabled", status, body, 403, "M_FORBIDDEN")
		})
	})
	t.Run("rate limited", func(t *testing.T) {
		onEachEngine(t, func(c *config.Config) {
			requireToken(c)
			c.RateLimits.Registration = config.RateLimit{PerSecond: 0.001, Burst: 2}
		}, func(t *testing.T, e *env) {
			validity(t, e, "abc")
			validity(t, e, "abc")
			status, body, _ := e.call(http.MethodGet, tokenValidity+"?token=abc", "", nil)
			wantError(t, "third validity check", status, body, 429, "M_LIMIT_EXCEEDED")
		})
	})
}

// TestRegistrationWithoutTokenRequirement: open registration keeps its
// dummy flow; a token stage is not part of it, though tokens can be checked.
func TestRegistrationWithoutTokenRequirement(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		admin := e.loginAs("root", true)
		tok := e.newToken(admin, map[string]any{"uses_allowed": 1})["token"].(string)
		status, body := e.registerWithToken("alice", tok)
		if status != http.StatusUnauthorized || body["errcode"] != "M_FORBIDDEN" {
			t.Fatalf("token stage in open registration: %d %v", status, body)
		}
		wantUses(t, e, admin, tok, 0, 0)
		if !validity(t, e, tok) {
			t.Fatal("token invalid")
		}
		e.register("alice", "pw")
	})
}
