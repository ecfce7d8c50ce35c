package appservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/users"
)

// These tests run a small bridge inside the test process with the
// appservice package of mautrix-go, the framework most Matrix bridges are
// built on: it listens on loopback for the homeserver's transactions and
// queries, registers its ghost users through its intent API (which uses
// m.login.application_service and user_id assertion), and joins and talks
// as them.

func TestMain(m *testing.M) {
	users.UseMinimumBcryptCostForTests()
	os.Exit(m.Run())
}

var ctx = context.Background()

const (
	bridgeID    = "testbridge"
	bridgeAS    = "as_token_of_the_test_bridge"
	bridgeHS    = "hs_token_of_the_test_bridge"
	bridgeBot   = "testbot"
	serverName  = "localhost"
	ghostPrefix = "@_test_"
)

// registrationYAML is the bridge's registration file, as a bridge would
// generate it.
func registrationYAML(url string) string {
	return `id: ` + bridgeID + `
url: ` + url + `
as_token: ` + bridgeAS + `
hs_token: ` + bridgeHS + `
sender_localpart: ` + bridgeBot + `
rate_limited: false
receive_ephemeral: true
protocols: [testproto]
namespaces:
  users:
    - regex: "@_test_.*:localhost"
      exclusive: true
  aliases:
    - regex: "#_test_.*:localhost"
      exclusive: true
  rooms: []
`
}

// bridge is the test bridge.
type bridge struct {
	t    *testing.T
	as   *mas.AppService
	addr string

	mu       sync.Mutex
	srv      *http.Server
	events   []*event.Event
	failing  bool     // answer transactions with 500
	wrongHS  bool     // pretend pings carry another hs_token
	txnIDs   []string // every transaction ID received, failed ones included
	lookups  []string // query strings of third-party lookups
	stopOnce chan struct{}
}

// newBridge reserves the bridge's loopback address and writes its
// registration file; start it once the homeserver runs.
func newBridge(t *testing.T) (*bridge, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := filepath.Join(t.TempDir(), "registration.yaml")
	if err := os.WriteFile(path, []byte(registrationYAML("http://"+addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	as := mas.Create()
	as.HomeserverDomain = serverName
	as.Registration = &mas.Registration{
		ID: bridgeID, URL: "http://" + addr, AppToken: bridgeAS, ServerToken: bridgeHS,
		SenderLocalpart: bridgeBot, EphemeralEvents: true,
		Namespaces: mas.Namespaces{
			UserIDs:     mas.NamespaceList{{Regex: "@_test_.*:localhost", Exclusive: true}},
			RoomAliases: mas.NamespaceList{{Regex: "#_test_.*:localhost", Exclusive: true}},
		},
	}
	b := &bridge{t: t, as: as, addr: addr, stopOnce: make(chan struct{})}
	as.QueryHandler = b
	as.Router.HandleFunc("GET /_matrix/app/v1/thirdparty/protocol/{protocol}", b.protocol)
	as.Router.HandleFunc("GET /_matrix/app/v1/thirdparty/location/{protocol}", b.location)
	as.Router.HandleFunc("GET /_matrix/app/v1/thirdparty/user/{protocol}", b.emptyLookup)
	go b.collect()
	t.Cleanup(func() {
		b.stop()
		close(b.stopOnce)
	})
	return b, path
}

// connect points the bridge's clients at the homeserver.
func (b *bridge) connect(url string) {
	if err := b.as.SetHomeserverURL(url); err != nil {
		b.t.Fatal(err)
	}
}

// start serves the bridge's HTTP API (transactions, queries, ping).
func (b *bridge) start() {
	b.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("bridge listener: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(b.serve)}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the bridge's HTTP API, as if the bridge were down.
func (b *bridge) stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// setWrongToken makes the bridge see pings with an hs_token it does not
// know, as when the two registrations disagree.
func (b *bridge) setWrongToken(w bool) {
	b.mu.Lock()
	b.wrongHS = w
	b.mu.Unlock()
}

func (b *bridge) setFailing(f bool) {
	b.mu.Lock()
	b.failing = f
	b.mu.Unlock()
}

// serve records transaction IDs and fails them while failing is set, then
// hands the request to mautrix.
func (b *bridge) serve(w http.ResponseWriter, r *http.Request) {
	if txn, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/"); ok {
		b.mu.Lock()
		b.txnIDs = append(b.txnIDs, txn)
		failing := b.failing
		b.mu.Unlock()
		if failing {
			http.Error(w, `{"errcode":"M_UNKNOWN","error":"bridge database is down"}`, http.StatusInternalServerError)
			return
		}
	}
	b.mu.Lock()
	wrong := b.wrongHS
	b.mu.Unlock()
	if wrong && r.URL.Path == "/_matrix/app/v1/ping" {
		r.Header.Set("Authorization", "Bearer some other hs_token")
	}
	b.as.Router.ServeHTTP(w, r)
}

func (b *bridge) collect() {
	for {
		select {
		case evt := <-b.as.Events:
			b.mu.Lock()
			b.events = append(b.events, evt)
			b.mu.Unlock()
		case evt := <-b.as.ToDeviceEvents:
			b.mu.Lock()
			b.events = append(b.events, evt)
			b.mu.Unlock()
		case <-b.stopOnce:
			return
		}
	}
}

// QueryUser is the bridge's answer to GET /_matrix/app/v1/users/{userId}:
// it creates every ghost it is asked about.
func (b *bridge) QueryUser(userID id.UserID) bool {
	if !strings.HasPrefix(string(userID), ghostPrefix) {
		return false
	}
	if err := b.as.Intent(userID).EnsureRegistered(ctx); err != nil {
		b.t.Errorf("registering %s: %v", userID, err)
		return false
	}
	return true
}

// QueryAlias creates a public portal room for every #_test_ alias.
func (b *bridge) QueryAlias(alias id.RoomAlias) bool {
	localpart := strings.TrimPrefix(strings.TrimSuffix(string(alias), ":"+serverName), "#")
	_, err := b.as.BotIntent().CreateRoom(ctx, &mautrix.ReqCreateRoom{
		RoomAliasName: localpart, Preset: "public_chat", Name: "Portal " + localpart,
	})
	if err != nil {
		b.t.Errorf("creating the portal for %s: %v", alias, err)
		return false
	}
	return true
}

func (b *bridge) protocol(w http.ResponseWriter, r *http.Request) {
	if !b.as.CheckServerToken(w, r) {
		return
	}
	if r.PathValue("protocol") != "testproto" {
		mautrix.MNotFound.WithMessage("no such protocol").Write(w)
		return
	}
	writeJSON(w, map[string]any{
		"user_fields": []string{"nick"}, "location_fields": []string{"channel"}, "icon": "mxc://localhost/icon",
		"field_types": map[string]any{
			"nick":    map[string]string{"regexp": ".+", "placeholder": "bob"},
			"channel": map[string]string{"regexp": "#.+", "placeholder": "#chat"},
		},
		"instances": []map[string]any{{"network_id": "net1", "desc": "Test network", "fields": map[string]string{}}},
	})
}

func (b *bridge) location(w http.ResponseWriter, r *http.Request) {
	if !b.as.CheckServerToken(w, r) {
		return
	}
	b.mu.Lock()
	b.lookups = append(b.lookups, r.URL.RawQuery)
	b.mu.Unlock()
	writeJSON(w, []map[string]any{{"alias": "#_test_chat:localhost", "protocol": "testproto",
		"fields": map[string]string{"channel": r.URL.Query().Get("channel")}}})
}

func (b *bridge) emptyLookup(w http.ResponseWriter, r *http.Request) {
	if !b.as.CheckServerToken(w, r) {
		return
	}
	writeJSON(w, []any{})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// received returns the events the bridge has received so far.
func (b *bridge) received() []*event.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*event.Event(nil), b.events...)
}

// texts lists the bodies of the m.room.message events received in room.
func (b *bridge) texts(room id.RoomID) []string {
	var out []string
	for _, ev := range b.received() {
		if ev.RoomID == room && ev.Type == event.EventMessage {
			out = append(out, ev.Content.AsMessage().Body)
		}
	}
	return out
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForTexts waits until the bridge has received want in room, in this
// order, each once, after whatever came before.
func (b *bridge) waitForTexts(t *testing.T, room id.RoomID, want ...string) {
	t.Helper()
	waitFor(t, "messages "+strings.Join(want, ", "), func() bool {
		got := b.texts(room)
		return len(got) >= len(want) && containsInOrder(got, want)
	})
	got := b.texts(room)
	for _, w := range want {
		n := 0
		for _, g := range got {
			if g == w {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%q received %d times: %q", w, n, got)
		}
	}
}

func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// startServer starts a homeserver with the bridge's registration.
func startServer(t *testing.T, dsn, registration string, configure func(*config.Config)) *hstest.Server {
	return hstest.Start(t, hstest.Options{DSN: dsn, Configure: func(c *config.Config) {
		c.RateLimits = config.RateLimits{}
		c.AppServiceConfigFiles = []string{registration}
		if configure != nil {
			configure(c)
		}
	}})
}

// register creates an ordinary user with the mautrix client.
func register(t *testing.T, srv *hstest.Server, username string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(srv.ClientURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: username, Password: "password"})
	if err != nil {
		t.Fatalf("registering %s: %v", username, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	cli.DeviceID = resp.DeviceID
	return cli
}

// errcode is the Matrix error code of a mautrix error.
func errcode(err error) string {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil {
		return he.RespError.ErrCode
	}
	return ""
}
