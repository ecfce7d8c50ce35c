package clientapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage/storagetest"
)

// These tests start real servers (SQLite always, PostgreSQL when
// PARLEY_TEST_POSTGRES is set) and drive them over HTTP, with the mautrix
// client library where it has a call for the endpoint and raw requests for
// the error cases.

const v3 = "/_matrix/client/v3"

func TestMain(m *testing.M) {
	users.UseMinimumBcryptCostForTests()
	os.Exit(m.Run())
}

var ctx = context.Background()

// env is one running test server.
type env struct {
	t   *testing.T
	srv *hstest.Server
}

// onEachEngine runs fn against a fresh server on each database engine, in
// parallel. Rate limits are off unless configure turns them on: the tests
// register many users from one address.
func onEachEngine(t *testing.T, configure func(*config.Config), fn func(t *testing.T, e *env)) {
	t.Parallel()
	for _, eng := range storagetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			srv := hstest.Start(t, hstest.Options{DSN: eng.DSN, Configure: func(c *config.Config) {
				c.RateLimits = config.RateLimits{}
				if configure != nil {
					configure(c)
				}
			}})
			fn(t, &env{t: t, srv: srv})
		})
	}
}

// client returns a client without credentials.
func (e *env) client() *mautrix.Client {
	e.t.Helper()
	cli, err := mautrix.NewClient(e.srv.ClientURL, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	return cli
}

// register creates an account through /register with the m.login.dummy
// flow and returns a client logged in as it.
func (e *env) register(username, password string) *mautrix.Client {
	e.t.Helper()
	cli := e.client()
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: username, Password: password})
	if err != nil {
		e.t.Fatalf("registering %s: %v", username, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
	return cli
}

// login logs in by localpart and returns a client with the new token.
func (e *env) login(username, password string, deviceID id.DeviceID) (*mautrix.Client, error) {
	cli := e.client()
	_, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: username},
		Password:   password, DeviceID: deviceID, StoreCredentials: true,
	})
	return cli, err
}

// call makes a raw request. body is sent as is when it is a string and as
// JSON otherwise (nothing when nil). The answer is decoded as a JSON object.
func (e *env) call(method, path, token string, body any) (int, map[string]any, http.Header) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.ClientURL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		e.t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, m, resp.Header
}

// wantError checks a Matrix error answer.
func wantError(t *testing.T, what string, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["errcode"] != wantCode {
		t.Fatalf("%s: %d %v, want %d %s", what, status, body, wantStatus, wantCode)
	}
	if _, ok := body["error"].(string); !ok {
		t.Fatalf("%s: error body without an error message: %v", what, body)
	}
}

// wantOK checks a 200 answer.
func wantOK(t *testing.T, what string, status int, body map[string]any) {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("%s: %d %v, want 200", what, status, body)
	}
}

// wantCode checks that err is a Matrix error with the given code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}

// asHTTPError unwraps a mautrix HTTP error.
func asHTTPError(err error, he *mautrix.HTTPError) bool { return errors.As(err, he) }

// recorder collects hook calls, which run on the server's goroutines.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}
