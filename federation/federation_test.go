package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/parley-chat/parley/federation/discovery"
	"github.com/parley-chat/parley/federation/fedclient"
	"github.com/parley-chat/parley/federation/keyring"
	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/federation/xmatrix"
	"github.com/parley-chat/parley/homeserver"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/keys"
	"github.com/parley-chat/parley/matrix/event"
)

// echoPath is an authenticated test-only route: it answers the origin the
// middleware authenticated and the body it handed on.
const echoPath = "/_matrix/federation/v1/parley_test/echo"

func registerEcho(s *homeserver.Server) {
	s.Federation.Authenticated().HandleFunc(echoPath, func(w http.ResponseWriter, r *http.Request) {
		origin, _ := xmatrix.Origin(r.Context())
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"origin":%q,"body":%q}`, origin, body)
	}).Methods(http.MethodGet, http.MethodPut)
}

// deadAddr is an address that refuses connections.
func deadAddr(t *testing.T) string { return hstest.FreeAddr(t) }

// testNet is the test network of hstest with the echo route on every
// server.
type testNet struct{ *hstest.Network }

func newTestNet(t *testing.T, names ...string) *testNet {
	t.Helper()
	n := hstest.NewNetwork(t, names...)
	n.BeforeRun = registerEcho
	return &testNet{n}
}

// start starts name with certificates from the test CA, trusting it, and
// static hosts for the network's other servers plus extra.
func (n *testNet) start(t *testing.T, name string, configure func(*config.Config)) *hstest.Server {
	t.Helper()
	return n.Start(t, name, configure)
}

// twoServers starts hs1.test and hs2.test, federating, with alice on hs1
// and bob on hs2.
func twoServers(t *testing.T) (hs1, hs2 *hstest.Server, alice, bob *mautrix.Client) {
	t.Helper()
	n := newTestNet(t, "hs1.test", "hs2.test")
	hs1, hs2 = n.start(t, "hs1.test", noLimits), n.start(t, "hs2.test", noLimits)
	return hs1, hs2, fedUser(t, hs1, "alice"), fedUser(t, hs2, "bob")
}

func pubKey(s *hstest.Server) ed25519.PublicKey { return s.SigningKey.Key.Public().(ed25519.PublicKey) }

// rawClient speaks HTTPS to a test server as an arbitrary (possibly
// malicious) peer would.
func rawClient(n *testNet, serverName string) *http.Client {
	pool, _ := keys.LoadCertPool([]string{n.CACert})
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: serverName, RootCAs: pool},
	}}
}

func TestFederationBetweenTwoServers(t *testing.T) {
	old := make([]byte, 32)
	_, _ = rand.Read(old)
	oldKey := base64.RawStdEncoding.EncodeToString(old)
	n := newTestNet(t, "hs1.test", "hs2.test")
	deadServer := deadAddr(t)
	extra := func(c *config.Config) {
		c.Federation.StaticHosts["hs9.test"] = deadServer
		c.Federation.DenyServers = []string{"hs8.test"}
	}
	a := n.start(t, "hs1.test", extra)
	b := n.start(t, "hs2.test", func(c *config.Config) {
		extra(c)
		c.Federation.OldSigningKeys = config.OldSigningKeys{{KeyID: "ed25519:old", Key: oldKey, ExpiredTS: 1_600_000_000_000}}
	})
	ctx := context.Background()

	t.Run("key server", func(t *testing.T) {
		resp, err := rawClient(n, "hs2.test").Get("https://" + n.Addrs["hs2.test"] + "/_matrix/key/v2/server")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if err := event.VerifyJSON("hs2.test", b.SigningKey.KeyID, pubKey(b), body); err != nil {
			t.Fatalf("not self-signed: %v", err)
		}
		var keysResp struct {
			ServerName string                       `json:"server_name"`
			ValidUntil int64                        `json:"valid_until_ts"`
			VerifyKeys map[string]map[string]string `json:"verify_keys"`
			OldKeys    map[string]map[string]any    `json:"old_verify_keys"`
		}
		_ = json.Unmarshal(body, &keysResp)
		wantUntil := time.Now().Add(7 * 24 * time.Hour).UnixMilli()
		if keysResp.ServerName != "hs2.test" || keysResp.ValidUntil < wantUntil-60_000 || keysResp.ValidUntil > wantUntil+60_000 ||
			keysResp.VerifyKeys[b.SigningKey.KeyID]["key"] != base64.RawStdEncoding.EncodeToString(pubKey(b)) ||
			keysResp.OldKeys["ed25519:old"]["key"] != oldKey || keysResp.OldKeys["ed25519:old"]["expired_ts"] != float64(1_600_000_000_000) {
			t.Fatalf("key response %s", body)
		}
	})

	t.Run("keyring fetches over HTTPS", func(t *testing.T) {
		got, err := a.Federation.Keyring().RequestKey(ctx, "hs2.test", b.SigningKey.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(pubKey(b)) {
			t.Fatal("wrong key")
		}
		now := time.Now().UnixMilli()
		if k, err := a.Federation.Keyring().Lookup("hs2.test", b.SigningKey.KeyID, now); err != nil || !k.Equal(pubKey(b)) {
			t.Fatalf("lookup: %v", err)
		}
		// The old key verifies events from before it expired only.
		if _, err := a.Federation.Keyring().Lookup("hs2.test", "ed25519:old", 1_500_000_000_000); err != nil {
			t.Fatalf("old key before expiry: %v", err)
		}
		if _, err := a.Federation.Keyring().Lookup("hs2.test", "ed25519:old", now); !errors.Is(err, keyring.ErrKeyNotValid) {
			t.Fatalf("old key after expiry: %v", err)
		}
		// ...and never signs requests.
		if _, err := a.Federation.Keyring().RequestKey(ctx, "hs2.test", "ed25519:old"); !errors.Is(err, keyring.ErrKeyNotValid) {
			t.Fatalf("old key for requests: %v", err)
		}
		if _, err := a.Federation.Keyring().RequestKey(ctx, "hs2.test", "ed25519:nope"); !errors.Is(err, keyring.ErrUnknownKey) {
			t.Fatalf("unknown key: %v", err)
		}
		if _, err := a.Federation.Keyring().RequestKey(ctx, "hs9.test", "ed25519:x"); err == nil {
			t.Fatal("key of an unreachable server")
		}
	})

	t.Run("notary", func(t *testing.T) {
		check := func(t *testing.T, raw json.RawMessage, wantServer string) {
			t.Helper()
			var out struct {
				ServerKeys []json.RawMessage `json:"server_keys"`
			}
			if err := json.Unmarshal(raw, &out); err != nil || len(out.ServerKeys) != 1 {
				t.Fatalf("notary answer %s", raw)
			}
			k := out.ServerKeys[0]
			server := map[string]*hstest.Server{"hs1.test": a, "hs2.test": b}[wantServer]
			if err := event.VerifyJSON(wantServer, server.SigningKey.KeyID, pubKey(server), k); err != nil {
				t.Fatalf("not signed by %s: %v", wantServer, err)
			}
			if err := event.VerifyJSON("hs1.test", a.SigningKey.KeyID, pubKey(a), k); err != nil {
				t.Fatalf("not signed by the notary: %v", err)
			}
		}
		var raw json.RawMessage
		// B asks A (the notary) about B, with GET and with POST.
		if err := b.Federation.Client().Do(ctx, "hs1.test", "GET", "/_matrix/key/v2/query/hs2.test?minimum_valid_until_ts=1", nil, &raw); err != nil {
			t.Fatal(err)
		}
		check(t, raw, "hs2.test")
		body := map[string]any{"server_keys": map[string]any{"hs2.test": map[string]any{b.SigningKey.KeyID: map[string]int64{"minimum_valid_until_ts": 0}}}}
		if err := b.Federation.Client().Do(ctx, "hs1.test", "POST", "/_matrix/key/v2/query", body, &raw); err != nil {
			t.Fatal(err)
		}
		check(t, raw, "hs2.test")
		// About A itself.
		if err := b.Federation.Client().Do(ctx, "hs1.test", "GET", "/_matrix/key/v2/query/hs1.test", nil, &raw); err != nil {
			t.Fatal(err)
		}
		check(t, raw, "hs1.test")
		// An unreachable server with nothing cached, and an invalid name:
		// empty lists.
		for _, path := range []string{"/_matrix/key/v2/query/hs9.test", "/_matrix/key/v2/query/bad%20name"} {
			if err := b.Federation.Client().Do(ctx, "hs1.test", "GET", path, nil, &raw); err != nil || string(raw) != `{"server_keys":[]}` {
				t.Fatalf("%s: %s %v", path, raw, err)
			}
		}
		var e *fedclient.Error
		if err := b.Federation.Client().Do(ctx, "hs1.test", "POST", "/_matrix/key/v2/query", map[string]any{}, &raw); !errors.As(err, &e) || e.ErrCode != "M_BAD_JSON" {
			t.Fatalf("query without server_keys: %v", err)
		}
	})

	t.Run("signed request", func(t *testing.T) {
		var out struct{ Origin, Body string }
		if err := a.Federation.Client().Do(ctx, "hs2.test", "PUT", echoPath+"?x=%2F1", map[string]any{"hello": "world"}, &out); err != nil {
			t.Fatal(err)
		}
		if out.Origin != "hs1.test" || out.Body != `{"hello":"world"}` {
			t.Fatalf("echo: %+v", out)
		}
		if err := b.Federation.Client().Do(ctx, "hs1.test", "GET", echoPath, nil, &out); err != nil || out.Origin != "hs2.test" {
			t.Fatalf("echo the other way: %+v %v", out, err)
		}
		// Matrix errors come back typed.
		var e *fedclient.Error
		if err := a.Federation.Client().Do(ctx, "hs2.test", "GET", "/_matrix/federation/v1/no_such_thing", nil, nil); !errors.As(err, &e) ||
			e.StatusCode != 404 || e.ErrCode != "M_UNRECOGNIZED" || e.Destination != "hs2.test" {
			t.Fatalf("unknown endpoint: %v", err)
		}
		if err := a.Federation.Client().Do(ctx, "hs2.test", "POST", echoPath, nil, nil); !errors.As(err, &e) || e.StatusCode != 405 || e.ErrCode != "M_UNRECOGNIZED" {
			t.Fatalf("wrong method: %v", err)
		}
	})

	t.Run("forged requests", func(t *testing.T) {
		client := rawClient(n, "hs2.test")
		base := "https://" + n.Addrs["hs2.test"]
		send := func(method, uri, body, auth string) (int, string) {
			t.Helper()
			var rd io.Reader
			if body != "" {
				rd = strings.NewReader(body)
			}
			req, _ := http.NewRequest(method, base+uri, rd)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Errcode string }
			data, _ := io.ReadAll(resp.Body)
			_ = json.Unmarshal(data, &e)
			return resp.StatusCode, e.Errcode
		}
		sign := func(origin, dest, method, uri, body string, keyID string, key ed25519.PrivateKey) string {
			r := xmatrix.Request{Method: method, URI: uri, Origin: origin, Destination: dest}
			if body != "" {
				r.Content = json.RawMessage(body)
			}
			h, err := xmatrix.Sign(r, keyID, key)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		aKey, aKeyID := a.SigningKey.Key, a.SigningKey.KeyID
		_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
		body := `{"a":1}`
		if code, _ := send("PUT", echoPath, body, sign("hs1.test", "hs2.test", "PUT", echoPath, body, aKeyID, aKey)); code != 200 {
			t.Fatalf("the genuine request fails: %d", code)
		}
		cases := []struct {
			name, method, body, auth string
			status                   int
			errcode                  string
		}{
			{"missing header", "GET", "", "", 401, "M_UNAUTHORIZED"},
			{"wrong key", "PUT", body, sign("hs1.test", "hs2.test", "PUT", echoPath, body, aKeyID, otherKey), 401, "M_UNAUTHORIZED"},
			{"unpublished key ID", "PUT", body, sign("hs1.test", "hs2.test", "PUT", echoPath, body, "ed25519:other", otherKey), 401, "M_UNAUTHORIZED"},
			{"tampered body", "PUT", `{"a":2}`, sign("hs1.test", "hs2.test", "PUT", echoPath, body, aKeyID, aKey), 401, "M_UNAUTHORIZED"},
			{"body not JSON", "PUT", `{"a":`, sign("hs1.test", "hs2.test", "PUT", echoPath, body, aKeyID, aKey), 401, "M_UNAUTHORIZED"},
			{"wrong destination", "PUT", body, sign("hs1.test", "hs3.test", "PUT", echoPath, body, aKeyID, aKey), 401, "M_UNAUTHORIZED"},
			{"other path", "PUT", body, sign("hs1.test", "hs2.test", "PUT", echoPath+"?x", body, aKeyID, aKey), 401, "M_UNAUTHORIZED"},
			{"unknown origin", "GET", "", sign("hs9.test", "hs2.test", "GET", echoPath, "", "ed25519:x", otherKey), 401, "M_UNAUTHORIZED"},
			{"malformed header", "GET", "", `X-Matrix origin="hs1.test"`, 401, "M_UNAUTHORIZED"},
			{"denied origin", "GET", "", sign("hs8.test", "hs2.test", "GET", echoPath, "", "ed25519:x", otherKey), 403, "M_FORBIDDEN"},
		}
		for _, tc := range cases {
			if code, errcode := send(tc.method, echoPath, tc.body, tc.auth); code != tc.status || errcode != tc.errcode {
				t.Errorf("%s: %d %s, want %d %s", tc.name, code, errcode, tc.status, tc.errcode)
			}
		}
		// Only the key endpoints and /version go without authentication.
		for _, uri := range []string{"/_matrix/federation/v1/version", "/_matrix/key/v2/server"} {
			if code, _ := send("GET", uri, "", ""); code != 200 {
				t.Errorf("%s without authentication: %d", uri, code)
			}
		}
	})

	t.Run("policy", func(t *testing.T) {
		if err := a.Federation.Client().Do(ctx, "hs8.test", "GET", echoPath, nil, nil); !errors.Is(err, policy.ErrDenied) {
			t.Fatalf("denied destination: %v", err)
		}
		// A server name that is a loopback address is refused before
		// connecting; only static_hosts may point at private addresses.
		if err := a.Federation.Client().Do(ctx, n.Addrs["hs2.test"], "GET", "/_matrix/federation/v1/version", nil, nil); !errors.Is(err, discovery.ErrPrivateAddress) {
			t.Fatalf("loopback destination: %v", err)
		}
		if err := a.Federation.Client().Do(ctx, "hs1.test", "GET", "/_matrix/federation/v1/version", nil, nil); err == nil {
			t.Fatal("request to itself")
		}
	})

	t.Run("keys persist", func(t *testing.T) {
		// With B gone and A restarted (empty memory), A still knows B's
		// key from its database.
		b.Stop()
		a.Restart()
		ring := a.Federation.Keyring()
		if _, err := ring.Lookup("hs2.test", b.SigningKey.KeyID, time.Now().UnixMilli()); !errors.Is(err, keyring.ErrUnknownKey) {
			t.Fatalf("memory not empty after restart: %v", err)
		}
		if err := ring.Fetch(ctx, []keyring.KeyRequest{{ServerName: "hs2.test", KeyID: b.SigningKey.KeyID, AtTS: time.Now().UnixMilli()}}); err != nil {
			t.Fatal(err)
		}
		if k, err := ring.Lookup("hs2.test", b.SigningKey.KeyID, time.Now().UnixMilli()); err != nil || !k.Equal(pubKey(b)) {
			t.Fatalf("after restart: %v", err)
		}
		// And its notary still serves B's keys, from the database.
		var raw json.RawMessage
		var out struct {
			ServerKeys []json.RawMessage `json:"server_keys"`
		}
		resp, err := rawClient(n, "hs1.test").Get("https://" + n.Addrs["hs1.test"] + "/_matrix/key/v2/query/hs2.test")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if json.Unmarshal(raw, &out) != nil || len(out.ServerKeys) != 1 {
			t.Fatalf("notary with B down: %s", raw)
		}
	})
}

// A server that cannot reach another gets its keys through a trusted
// notary, checking both signatures.
func TestKeysThroughNotary(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test", "hs3.test")
	a := n.start(t, "hs1.test", nil)
	b := n.start(t, "hs2.test", nil)
	dead := deadAddr(t)
	c := n.start(t, "hs3.test", func(c *config.Config) {
		c.Federation.StaticHosts["hs2.test"] = dead // C cannot reach B
		c.Federation.TrustedKeyServers = []string{"hs1.test"}
	})
	_ = a
	ctx := context.Background()
	k, err := c.Federation.Keyring().RequestKey(ctx, "hs2.test", b.SigningKey.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(pubKey(b)) {
		t.Fatal("wrong key through the notary")
	}
	// B, reachable from A only, can now make signed requests to C: C
	// verifies them with the key it got from the notary.
	var out struct{ Origin string }
	if err := b.Federation.Client().Do(ctx, "hs3.test", "GET", echoPath, nil, &out); err != nil || out.Origin != "hs2.test" {
		t.Fatalf("B to C: %+v %v", out, err)
	}
}
