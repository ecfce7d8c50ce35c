package appservice

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

// testService builds a service over a fresh SQLite database, without a
// room engine or accounts.
func testService(t *testing.T, file string, cfg Config) *Service {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.SQLite(t), storage.Pool{MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := ParseRegistration([]byte(file), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName, cfg.DB, cfg.Registrations = "example.org", db, []*Registration{reg}
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const ircRegistration = `id: irc
url: http://127.0.0.1:1
as_token: a
hs_token: h
sender_localpart: ircbot
namespaces:
  users: [{regex: "@_irc_.*:example.org", exclusive: true}]
  aliases: [{regex: "#_irc_.*:example.org", exclusive: true}]
  rooms: [{regex: "!bridged.*:example.org", exclusive: false}]
`

func TestInterest(t *testing.T) {
	ctx := context.Background()
	s := testService(t, ircRegistration, Config{})
	r := s.regs[0]
	member := func(room, user, membership string) {
		err := s.db.WithTx(ctx, func(tx *storage.Tx) error {
			return storage.SetMembership(ctx, tx, storage.Membership{RoomID: room, UserID: user, Membership: membership, EventID: "$m", StreamPos: 1})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sk := func(s string) *string { return &s }
	msg := func(room, sender string) *storage.EventRow {
		return &storage.EventRow{RoomID: room, Sender: sender, Type: "m.room.message"}
	}
	member("!joined:example.org", "@_irc_bob:example.org", "join")
	member("!joined:example.org", "@alice:example.org", "join")
	member("!left:example.org", "@_irc_bob:example.org", "leave")
	member("!left:example.org", "@alice:example.org", "join")
	if err := s.db.CreateAlias(ctx, "#_irc_chan:example.org", "!aliased:example.org", "@ircbot:example.org"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		row  *storage.EventRow
		want bool
	}{
		{"a ghost's message", msg("!any:example.org", "@_irc_bob:example.org"), true},
		{"the bot's message", msg("!any:example.org", "@ircbot:example.org"), true},
		{"a remote user in the namespace's shape", msg("!any:example.org", "@_irc_bob:other.org"), false},
		{"an invite of a ghost", &storage.EventRow{RoomID: "!any:example.org", Sender: "@alice:example.org", Type: "m.room.member",
			StateKey: sk("@_irc_new:example.org")}, true},
		{"a room a ghost is in", msg("!joined:example.org", "@alice:example.org"), true},
		{"a room a ghost left", msg("!left:example.org", "@alice:example.org"), false},
		{"a room in the room namespace", msg("!bridged1:example.org", "@alice:example.org"), true},
		{"a room with an alias in the namespace", msg("!aliased:example.org", "@alice:example.org"), true},
		{"an unrelated room", msg("!other:example.org", "@alice:example.org"), false},
	} {
		if got := s.interestedInEvent(ctx, r, c.row, map[string][]string{}); got != c.want {
			t.Errorf("%s: interested = %v, want %v", c.name, got, c.want)
		}
	}

	// The scanner keeps the member cache current from the membership
	// events it reads.
	s.push.members.update("!left:example.org", "@_irc_bob:example.org", "join")
	if !s.interestedInEvent(ctx, r, msg("!left:example.org", "@alice:example.org"), nil) {
		t.Error("a ghost's join was not noticed")
	}
	s.push.members.update("!joined:example.org", "@_irc_bob:example.org", "leave")
	if s.interestedInEvent(ctx, r, msg("!joined:example.org", "@alice:example.org"), nil) {
		t.Error("a ghost's leave was not noticed")
	}
}

func TestPingErrors(t *testing.T) {
	var mu sync.Mutex
	var got []string
	block := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Header.Get("Authorization")+" "+string(body))
		mu.Unlock()
		switch {
		case strings.Contains(string(body), "slow"):
			<-block
		case strings.Contains(string(body), "teapot"):
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte(`{"errcode":"M_TEAPOT"}`))
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	defer hs.Close()
	defer close(block)
	s := testService(t, strings.Replace(ircRegistration, "http://127.0.0.1:1", hs.URL, 1), Config{PingTimeout: 100 * time.Millisecond})
	r := s.regs[0]
	ctx := context.Background()

	if _, err := s.Ping(ctx, r, "fine"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != `Bearer h {"transaction_id":"fine"}` {
		t.Fatalf("the service got %q", got)
	}
	_, err := s.Ping(ctx, r, "teapot")
	if pe, ok := err.(*PingError); !ok || pe.Code != "M_BAD_STATUS" || pe.Status != http.StatusTeapot || pe.Body != `{"errcode":"M_TEAPOT"}` {
		t.Fatalf("bad status: %#v", err)
	}
	_, err = s.Ping(ctx, r, "slow")
	if pe, ok := err.(*PingError); !ok || pe.Code != "M_CONNECTION_TIMEOUT" {
		t.Fatalf("timeout: %#v", err)
	}
	r.URL = "http://127.0.0.1:1"
	_, err = s.Ping(ctx, r, "refused")
	if pe, ok := err.(*PingError); !ok || pe.Code != "M_CONNECTION_FAILED" {
		t.Fatalf("refused: %#v", err)
	}
	r.URL = ""
	_, err = s.Ping(ctx, r, "none")
	if pe, ok := err.(*PingError); !ok || pe.Code != "M_URL_NOT_SET" {
		t.Fatalf("no URL: %#v", err)
	}
}

// TestLegacyTransactionPath checks the fallback to the transaction path of
// older versions of the spec, with the token in the query string as they
// had it.
func TestLegacyTransactionPath(t *testing.T) {
	var paths []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path+"?"+r.URL.RawQuery)
		if !strings.HasPrefix(r.URL.Path, "/transactions/") {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var body map[string]json.RawMessage
		if json.NewDecoder(r.Body).Decode(&body) != nil || r.URL.Query().Get("access_token") != "h" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer hs.Close()
	s := testService(t, strings.Replace(ircRegistration, "http://127.0.0.1:1", hs.URL, 1), Config{})
	err := s.sendTxn(context.Background(), s.regs[0], &storage.AppServiceTxn{TxnID: "7", Body: `{"events":[]}`})
	if err != nil || len(paths) != 2 || paths[0] != "/_matrix/app/v1/transactions/7?" || paths[1] != "/transactions/7?access_token=h" {
		t.Fatalf("%v, paths %q", err, paths)
	}
}
