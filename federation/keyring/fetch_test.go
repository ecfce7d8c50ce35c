package keyring_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/federation/discovery"
	"github.com/parley-chat/parley/federation/fedclient"
	"github.com/parley-chat/parley/federation/keyring"
	"github.com/parley-chat/parley/federation/keyserver"
	"github.com/parley-chat/parley/homeserver/keys"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

func seedKey(b byte) ed25519.PrivateKey {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return ed25519.NewKeyFromSeed(s)
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// env is a small federation: TLS servers for remote names, and a keyring
// of "me.test" reaching them through the real client and discovery.
type env struct {
	t      *testing.T
	dir    string
	caCert string
	caKey  string
	static map[string]string
	mu     sync.Mutex
	now    time.Time
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, caCert: filepath.Join(dir, "ca.crt"), caKey: filepath.Join(dir, "ca.key"),
		static: map[string]string{}, now: time.Now()}
	if err := keys.CreateCA(e.caCert, e.caKey, "keyring test CA"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) clock() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }

func (e *env) advance(d time.Duration) { e.mu.Lock(); e.now = e.now.Add(d); e.mu.Unlock() }

// serve starts an HTTPS server for name.
func (e *env) serve(name string, h http.Handler) *httptest.Server {
	cert, err := keys.IssueFromCA(e.caCert, e.caKey, filepath.Join(e.dir, name+".crt"), filepath.Join(e.dir, name+".key"), name)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	e.t.Cleanup(srv.Close)
	e.static[name] = srv.Listener.Addr().String()
	return srv
}

// dead makes name unreachable.
func (e *env) dead(name string) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	e.static[name] = ln.Addr().String()
	ln.Close()
}

func (e *env) keyring(notaries ...string) *keyring.Keyring {
	pool, err := keys.LoadCertPool([]string{e.caCert})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := discovery.New(discovery.Config{StaticHosts: e.static, RootCAs: pool})
	if err != nil {
		e.t.Fatal(err)
	}
	client, err := fedclient.New(fedclient.Config{ServerName: "me.test", KeyID: "ed25519:me", Key: seedKey(99), Resolver: res})
	if err != nil {
		e.t.Fatal(err)
	}
	db, err := storage.Open(context.Background(), storagetest.SQLite(e.t), storage.Pool{MaxOpenConns: 2})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return keyring.New(keyring.Config{ServerName: "me.test", Client: client, Store: db, Notaries: notaries, Now: e.clock})
}

// keyServer serves a key server whose configuration can change, counting
// fetches of /_matrix/key/v2/server.
type keyServer struct {
	ks    atomic.Pointer[keyserver.Server]
	hits  atomic.Int32
	down  atomic.Bool
	extra func(r *mux.Router)
}

func (k *keyServer) set(cfg keyserver.Config) { k.ks.Store(keyserver.New(cfg)) }

func (k *keyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_matrix/key/v2/server" {
		k.hits.Add(1)
	}
	if k.down.Load() {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	m := mux.NewRouter()
	if k.extra != nil {
		k.extra(m)
	}
	k.ks.Load().Register(m)
	m.ServeHTTP(w, r)
}

func TestFetchCacheAndRefetchLimit(t *testing.T) {
	e := newEnv(t)
	k1 := seedKey(1)
	origin := &keyServer{}
	origin.set(keyserver.Config{ServerName: "origin.test", KeyID: "ed25519:k1", Key: k1, ValidityPeriod: time.Hour, Now: e.clock})
	e.serve("origin.test", origin)
	ring := e.keyring()
	ctx := context.Background()

	got, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1")
	if err != nil || !got.Equal(pub(k1)) {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1"); err != nil || origin.hits.Load() != 1 {
		t.Fatalf("not cached: %d fetches, %v", origin.hits.Load(), err)
	}
	// A made-up key ID costs at most one fetch per refetch interval, not
	// one per request: none right after a fetch, then one.
	if _, err := ring.RequestKey(ctx, "origin.test", "ed25519:made_up"); !errors.Is(err, keyring.ErrUnknownKey) || origin.hits.Load() != 1 {
		t.Fatalf("made-up key right after a fetch: %v", err)
	}
	e.advance(time.Minute)
	for range 5 {
		if _, err := ring.RequestKey(ctx, "origin.test", "ed25519:made_up"); !errors.Is(err, keyring.ErrUnknownKey) {
			t.Fatalf("made-up key: %v", err)
		}
	}
	if n := origin.hits.Load(); n != 2 {
		t.Fatalf("%d fetches for made-up keys, want 1", n-1)
	}
	// Published valid for an hour: a signature from two hours ahead needs
	// a refetch, which the origin still answers with an hour.
	e.advance(time.Minute)
	later := e.clock().Add(2 * time.Hour).UnixMilli()
	err = ring.Fetch(ctx, []keyring.KeyRequest{{ServerName: "origin.test", KeyID: "ed25519:k1", AtTS: later}})
	if !errors.Is(err, keyring.ErrKeyNotValid) || origin.hits.Load() != 3 {
		t.Fatalf("future signature: %v after %d fetches", err, origin.hits.Load())
	}
	// When the key expires, requests refetch it.
	e.advance(2 * time.Hour)
	if _, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1"); err != nil || origin.hits.Load() != 4 {
		t.Fatalf("expired key not refetched: %v, %d fetches", err, origin.hits.Load())
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	k1, k2 := seedKey(1), seedKey(2)
	origin := &keyServer{}
	origin.set(keyserver.Config{ServerName: "origin.test", KeyID: "ed25519:k1", Key: k1, ValidityPeriod: 24 * time.Hour, Now: e.clock})
	e.serve("origin.test", origin)
	ring := e.keyring()
	ctx := context.Background()
	if _, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1"); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Hour)
	rotated := e.clock().UnixMilli()
	origin.set(keyserver.Config{ServerName: "origin.test", KeyID: "ed25519:k2", Key: k2, ValidityPeriod: 24 * time.Hour, Now: e.clock,
		OldKeys: []keyserver.OldKey{{KeyID: "ed25519:k1", Public: pub(k1), ExpiredTS: rotated}}})
	e.advance(time.Minute)
	if got, err := ring.RequestKey(ctx, "origin.test", "ed25519:k2"); err != nil || !got.Equal(pub(k2)) {
		t.Fatalf("new key: %v", err)
	}
	if _, err := ring.Lookup("origin.test", "ed25519:k1", rotated-1); err != nil {
		t.Fatalf("old key for old events: %v", err)
	}
	if _, err := ring.Lookup("origin.test", "ed25519:k1", rotated+1); !errors.Is(err, keyring.ErrKeyNotValid) {
		t.Fatalf("old key for new events: %v", err)
	}
	if _, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1"); !errors.Is(err, keyring.ErrKeyNotValid) {
		t.Fatalf("old key for requests: %v", err)
	}
}

func TestNotarySignatureChecked(t *testing.T) {
	e := newEnv(t)
	k1, n1, n2 := seedKey(1), seedKey(3), seedKey(4)
	originKS := keyserver.New(keyserver.Config{ServerName: "origin.test", KeyID: "ed25519:k1", Key: k1, ValidityPeriod: time.Hour, Now: e.clock})
	e.dead("origin.test") // only the notary can help

	var mode atomic.Value
	notary := &keyServer{extra: func(r *mux.Router) {
		r.HandleFunc("/_matrix/key/v2/query", func(w http.ResponseWriter, req *http.Request) {
			resp, _ := originKS.OwnKeys()
			switch mode.Load().(string) {
			case "good":
				resp, _ = event.SignJSON("notary.test", "ed25519:n1", n1, resp)
			case "unpublished notary key":
				resp, _ = event.SignJSON("notary.test", "ed25519:n2", n2, resp)
			case "notary key under a published ID":
				resp, _ = event.SignJSON("notary.test", "ed25519:n1", n2, resp)
			case "unsigned by notary":
			case "tampered origin response":
				// The notary vouches for a response the origin did not
				// sign (a longer validity).
				var m map[string]any
				_ = json.Unmarshal(resp, &m)
				m["valid_until_ts"] = e.clock().Add(1000 * time.Hour).UnixMilli()
				resp, _ = json.Marshal(m)
				resp, _ = event.SignJSON("notary.test", "ed25519:n1", n1, resp)
			case "other server":
				other := keyserver.New(keyserver.Config{ServerName: "other.test", KeyID: "ed25519:k1", Key: n2, ValidityPeriod: time.Hour})
				resp, _ = other.OwnKeys()
				resp, _ = event.SignJSON("notary.test", "ed25519:n1", n1, resp)
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"server_keys": []json.RawMessage{resp}})
		}).Methods(http.MethodPost)
	}}
	notary.set(keyserver.Config{ServerName: "notary.test", KeyID: "ed25519:n1", Key: n1, ValidityPeriod: time.Hour, Now: e.clock})
	e.serve("notary.test", notary)
	ring := e.keyring("notary.test")
	ctx := context.Background()
	for _, bad := range []string{"unpublished notary key", "notary key under a published ID", "unsigned by notary", "tampered origin response", "other server"} {
		mode.Store(bad)
		if k, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1"); err == nil {
			t.Errorf("%s: accepted key %x", bad, k)
		}
		e.advance(time.Minute) // past the refetch limit
	}
	mode.Store("good")
	if k, err := ring.RequestKey(ctx, "origin.test", "ed25519:k1"); err != nil || !k.Equal(pub(k1)) {
		t.Fatalf("good notary answer: %v", err)
	}
}

func TestNotaryServesCachedResponses(t *testing.T) {
	e := newEnv(t)
	k1 := seedKey(1)
	origin := &keyServer{}
	origin.set(keyserver.Config{ServerName: "origin.test", KeyID: "ed25519:k1", Key: k1, ValidityPeriod: 2 * time.Hour, Now: e.clock})
	e.serve("origin.test", origin)
	ring := e.keyring()
	ctx := context.Background()

	resps, err := ring.Responses(ctx, "origin.test", nil, 0)
	if err != nil || len(resps) != 1 || origin.hits.Load() != 1 {
		t.Fatalf("%d responses, %d fetches, %v", len(resps), origin.hits.Load(), err)
	}
	if err := event.VerifyJSON("origin.test", "ed25519:k1", pub(k1), resps[0]); err != nil {
		t.Fatal(err)
	}
	// Fresh: served from the cache.
	if _, err := ring.Responses(ctx, "origin.test", []string{"ed25519:k1"}, 0); err != nil || origin.hits.Load() != 1 {
		t.Fatalf("fresh response refetched (%d fetches): %v", origin.hits.Load(), err)
	}
	// Past half its lifetime it is refreshed; with the origin down the
	// cached one is served all the same.
	origin.down.Store(true)
	e.advance(61 * time.Minute)
	resps, err = ring.Responses(ctx, "origin.test", nil, 0)
	if err != nil || len(resps) != 1 || origin.hits.Load() != 2 {
		t.Fatalf("origin down: %d responses, %d fetches, %v", len(resps), origin.hits.Load(), err)
	}
	// Nothing known about a server that cannot be reached: nothing served.
	e.dead("nowhere.test")
	if resps, err := ring.Responses(ctx, "nowhere.test", nil, 0); err != nil || len(resps) != 0 {
		t.Fatalf("unknown server: %v %v", resps, err)
	}
}
