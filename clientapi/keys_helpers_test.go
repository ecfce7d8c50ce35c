package clientapi_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/matrix/event"
)

// The end-to-end encryption tests drive the server over raw HTTP and sign
// keys with crypto/ed25519 (through matrix/event's JSON signing), which is
// all a server can check; no Olm is involved.

// e2eServer starts a server on dsn with rate limits out of the way.
func e2eServer(t *testing.T, dsn string) *hstest.Server {
	t.Helper()
	return hstest.Start(t, hstest.Options{DSN: dsn, Configure: func(c *config.Config) {
		for _, rl := range []*config.RateLimit{&c.RateLimits.Login, &c.RateLimits.Registration,
			&c.RateLimits.RoomCreation, &c.RateLimits.MessageSending} {
			rl.PerSecond, rl.Burst = 1000, 1000
		}
	}})
}

// e2eClient is one logged-in device with its ed25519 identity key.
type e2eClient struct {
	t        *testing.T
	base     string
	name     string
	password string
	UserID   string
	DeviceID string
	Token    string
	pub      string
	priv     ed25519.PrivateKey
}

func newEd25519(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(pub), priv
}

// e2eRegister registers name (m.login.dummy) and returns its first device.
func e2eRegister(t *testing.T, srv *hstest.Server, name string) *e2eClient {
	t.Helper()
	c := &e2eClient{t: t, base: srv.ClientURL, name: name, password: "password-" + name}
	status, resp := c.raw("POST", "/register", "", map[string]any{
		"username": name, "password": c.password, "auth": map[string]any{"type": "m.login.dummy"},
	})
	if status != http.StatusOK {
		t.Fatalf("register %s: %d %v", name, status, resp)
	}
	c.UserID, c.DeviceID, c.Token = resp["user_id"].(string), resp["device_id"].(string), resp["access_token"].(string)
	c.pub, c.priv = newEd25519(t)
	return c
}

// login logs the same user in on a new device.
func (c *e2eClient) login(displayName string) *e2eClient {
	c.t.Helper()
	n := &e2eClient{t: c.t, base: c.base, name: c.name, password: c.password, UserID: c.UserID}
	status, resp := n.raw("POST", "/login", "", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": c.name},
		"password":   c.password, "initial_device_display_name": displayName,
	})
	if status != http.StatusOK {
		c.t.Fatalf("login %s: %d %v", c.name, status, resp)
	}
	n.DeviceID, n.Token = resp["device_id"].(string), resp["access_token"].(string)
	n.pub, n.priv = newEd25519(c.t)
	return n
}

func (c *e2eClient) raw(method, path, token string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				c.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+"/_matrix/client/v3"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	_ = d.Decode(&m)
	return resp.StatusCode, m
}

// do sends an authenticated request to path (under /_matrix/client/v3).
func (c *e2eClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	return c.raw(method, path, c.Token, body)
}

// mustDo is do that fails the test unless the answer is 200.
func (c *e2eClient) mustDo(method, path string, body any) map[string]any {
	c.t.Helper()
	status, resp := c.do(method, path, body)
	if status != http.StatusOK {
		c.t.Fatalf("%s %s: %d %v", method, path, status, resp)
	}
	return resp
}

// sign signs obj with the device's key as its user.
func (c *e2eClient) sign(obj any) json.RawMessage {
	c.t.Helper()
	return signAs(c.t, obj, c.UserID, "ed25519:"+c.DeviceID, c.priv)
}

func signAs(t *testing.T, obj any, signer, keyID string, priv ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := event.SignJSON(signer, keyID, priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// deviceKeysObj is the device's unsigned identity keys object.
func (c *e2eClient) deviceKeysObj() map[string]any {
	curve := make([]byte, 32)
	_, _ = rand.Read(curve)
	return map[string]any{
		"user_id":    c.UserID,
		"device_id":  c.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"curve25519:" + c.DeviceID: base64.RawStdEncoding.EncodeToString(curve),
			"ed25519:" + c.DeviceID:    c.pub,
		},
	}
}

// oneTimeKeys returns n signed one-time keys named from first on.
func (c *e2eClient) oneTimeKeys(first, n int) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for i := first; i < first+n; i++ {
		out[fmt.Sprintf("signed_curve25519:K%04d", i)] = c.sign(map[string]any{"key": fmt.Sprintf("otk-%s-%d", c.DeviceID, i)})
	}
	return out
}

// uploadDeviceKeys uploads the device's signed identity keys.
func (c *e2eClient) uploadDeviceKeys() json.RawMessage {
	c.t.Helper()
	dk := c.sign(c.deviceKeysObj())
	c.mustDo("POST", "/keys/upload", map[string]any{"device_keys": dk})
	return dk
}

// sync runs /sync from since ("" for an initial sync).
func (c *e2eClient) sync(since string, timeoutMS int) map[string]any {
	c.t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeoutMS)}}
	if since != "" {
		q.Set("since", since)
	}
	return c.mustDo("GET", "/sync?"+q.Encode(), nil)
}

// strs reads a JSON array of strings from a decoded answer.
func strs(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// obj walks a decoded answer: obj(m, "a", "b") is m["a"]["b"].
func obj(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, _ := m[p].(map[string]any)
		m = next
	}
	return m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// countRows counts rows of an end-to-end table for a user.
func countRows(t *testing.T, srv *hstest.Server, table, userCol, userID string) int {
	t.Helper()
	var n int
	if err := srv.DB.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM "+table+" WHERE "+userCol+" = $1", userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
