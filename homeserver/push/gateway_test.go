package push

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

// gatewayFixture is a push service with a real database and a gateway
// that answers with the statuses of answers, in turn.
type gatewayFixture struct {
	s    *Service
	db   *storage.DB
	mu   sync.Mutex
	hits []time.Time
	body chan []byte
}

func newGatewayFixture(t *testing.T, answers ...int) (*gatewayFixture, string) {
	t.Helper()
	db, err := storage.Open(context.Background(), storagetest.SQLite(t), storage.Pool{MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &gatewayFixture{db: db, body: make(chan []byte, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		n := len(f.hits)
		f.hits = append(f.hits, time.Now())
		f.mu.Unlock()
		status := http.StatusOK
		if n < len(answers) {
			status = answers[n]
		}
		f.body <- raw
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = w.Write([]byte(`{"rejected":["dead-key"]}`))
		}
	}))
	t.Cleanup(srv.Close)
	f.s = New(Config{DB: db, ServerName: "example.org", Rules: defaultRuleStore{}, HTTPClient: srv.Client()})
	f.s.gateway.baseDelay = 10 * time.Millisecond
	f.s.gateway.start()
	t.Cleanup(f.s.gateway.stop)
	return f, srv.URL + notifyPath
}

func (f *gatewayFixture) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.hits)
}

func (f *gatewayFixture) waitHits(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway got %d requests, want %d", f.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGatewayRetriesWithBackoff(t *testing.T) {
	f, url := newGatewayFixture(t, 500, 429, 503)
	f.s.gateway.enqueue(&delivery{pusher: storage.Pusher{UserID: "@a:example.org", AppID: "app", PushKey: "k"}, url: url, body: []byte(`{}`)})
	f.waitHits(t, 4)
	time.Sleep(100 * time.Millisecond)
	if f.count() != 4 {
		t.Fatalf("%d requests after success, want 4", f.count())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// 10 ms, 20 ms, 40 ms: each wait at least the one before.
	for i := 1; i < len(f.hits); i++ {
		gap := f.hits[i].Sub(f.hits[i-1])
		if want := f.s.gateway.baseDelay << (i - 1); gap < want {
			t.Errorf("attempt %d came after %v, want at least %v", i+1, gap, want)
		}
	}
}

func TestGatewayDoesNotRetryClientErrors(t *testing.T) {
	f, url := newGatewayFixture(t, 400)
	f.s.gateway.enqueue(&delivery{pusher: storage.Pusher{UserID: "@a:example.org", AppID: "app", PushKey: "k"}, url: url, body: []byte(`{}`)})
	f.waitHits(t, 1)
	time.Sleep(100 * time.Millisecond)
	if f.count() != 1 {
		t.Fatalf("a 400 was retried: %d requests", f.count())
	}
}

func TestGatewayRejectedPushkey(t *testing.T) {
	f, url := newGatewayFixture(t)
	ctx := context.Background()
	for _, key := range []string{"dead-key", "live-key"} {
		if err := f.db.SetPusher(ctx, storage.Pusher{UserID: "@a:example.org", AppID: "app", PushKey: key, Kind: "http",
			Data: `{"url":"` + url + `"}`}, true); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway rejects dead-key in answer to a push for live-key: only
	// the pushers the request named are removed.
	f.s.gateway.enqueue(&delivery{pusher: storage.Pusher{UserID: "@a:example.org", AppID: "app", PushKey: "live-key"}, url: url, body: []byte(`{}`)})
	f.waitHits(t, 1)
	f.s.gateway.enqueue(&delivery{pusher: storage.Pusher{UserID: "@a:example.org", AppID: "app", PushKey: "dead-key"}, url: url, body: []byte(`{}`)})
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps, err := f.db.Pushers(ctx, "@a:example.org")
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 1 && ps[0].PushKey == "live-key" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushers %+v", ps)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNotificationBody checks the request body of both formats.
func TestNotificationBody(t *testing.T) {
	ev := mkEvent(t, map[string]any{"type": "m.room.member", "state_key": "@me:example.org", "sender": "@bob:example.org",
		"content": map[string]any{"membership": "invite"}})
	o := NewEvaluator().internOutcome(".m.rule.invite_for_me", []json.RawMessage{raw(`"notify"`), raw(`{"set_tweak":"sound","value":"default"}`)})
	r := result{job: job{ev: ev, pos: 5}, senderName: "Bob", roomName: "Room", roomAlias: "#r:example.org"}
	p := storage.Pusher{UserID: "@me:example.org", AppID: "app", PushKey: "k", PushKeyTS: 99,
		Data: `{"url":"https://gw/_matrix/push/v1/notify","extra":{"a":1}}`}
	d, err := buildDelivery(r, evaluated{userID: "@me:example.org", outcome: o}, p, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"notification":{"event_id":"` + ev.EventID() + `","room_id":"!room:example.org","type":"m.room.member",` +
		`"sender":"@bob:example.org","sender_display_name":"Bob","room_name":"Room","room_alias":"#r:example.org",` +
		`"user_is_target":true,"prio":"high","content":{"membership":"invite"},"counts":{"unread":3},` +
		`"devices":[{"app_id":"app","pushkey":"k","pushkey_ts":99,"data":{"extra":{"a":1}},"tweaks":{"sound":"default"}}]}}`
	if string(d.body) != want || d.url != "https://gw/_matrix/push/v1/notify" {
		t.Errorf("body\n%s\nwant\n%s", d.body, want)
	}
	p.Data = `{"url":"https://gw/_matrix/push/v1/notify","format":"event_id_only"}`
	d, _ = buildDelivery(r, evaluated{userID: "@me:example.org", outcome: o}, p, 0)
	want = `{"notification":{"event_id":"` + ev.EventID() + `","room_id":"!room:example.org","prio":"high","counts":{},` +
		`"devices":[{"app_id":"app","pushkey":"k","pushkey_ts":99,"data":{"format":"event_id_only"},"tweaks":{"sound":"default"}}]}}`
	if string(d.body) != want {
		t.Errorf("event_id_only body\n%s\nwant\n%s", d.body, want)
	}
}
