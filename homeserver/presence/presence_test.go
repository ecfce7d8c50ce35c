package presence

import (
	"context"
	"encoding/json"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

type wakes struct {
	mu    gosync.Mutex
	users []string
}

func (w *wakes) Wake(userIDs ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users = append(w.users, userIDs...)
}

type sentEDU struct {
	dests   []string
	content presenceEDU
}

type fakeFederation struct {
	mu   gosync.Mutex
	sent []sentEDU
}

func (f *fakeFederation) SendEDU(dests []string, eduType string, content any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if eduType == "m.presence" {
		f.sent = append(f.sent, sentEDU{dests, content.(presenceEDU)})
	}
}

// TestDisabledCostsNothing runs every entry point of a disabled service
// without a database: any query would panic.
func TestDisabledCostsNothing(t *testing.T) {
	ctx := context.Background()
	s := New(Config{ServerName: "hs"})
	s.SetFederation(&fakeFederation{})
	ext := extension{s}
	if pos, err := ext.CurrentPos(ctx); pos != 0 || err != nil {
		t.Fatalf("CurrentPos: %d %v", pos, err)
	}
	resp := &sync.Response{NextBatch: "s1_1"}
	for _, since := range []*sync.Token{nil, {Events: 1}} {
		if changed, err := ext.Fill(ctx, sync.Request{Viewer: rooms.Viewer{UserID: "@a:hs"}, Since: since}, 0, 0, resp); changed || err != nil {
			t.Fatalf("Fill: %v %v", changed, err)
		}
	}
	if err := s.Set(ctx, "@a:hs", Online, "hi"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "@a:hs", "busy", ""); err == nil {
		t.Fatal("an unknown state is refused even when disabled")
	}
	s.Syncing(ctx, "@a:hs", "")()
	s.Active(ctx, "@a:hs")
	s.HandleEDU(ctx, "other", json.RawMessage(`{"push":[{"user_id":"@b:other","presence":"online","last_active_ago":1}]}`))
	s.MemberJoined(ctx, "!r:hs", "@b:other")
	if st, err := s.Get(ctx, "@b:hs", "@a:hs"); err != nil || st.Presence != Offline || st.LastActiveAgo != nil || st.StatusMsg != nil {
		t.Fatalf("Get: %+v %v", st, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	cancel()
	s.Run(runCtx) // returns at once
	if len(s.local) != 0 {
		t.Fatalf("tracked users: %v", s.local)
	}
}

// clock is a settable time for the timeouts.
type clock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestTimeouts(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, e.DSN, storage.Pool{MaxOpenConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			// @a:hs shares a room with @b:other.
			for _, m := range []storage.Membership{
				{RoomID: "!r:hs", UserID: "@a:hs", Membership: "join", EventID: "$ja", StreamPos: 1},
				{RoomID: "!r:hs", UserID: "@b:other", Membership: "join", EventID: "$jb", StreamPos: 2},
			} {
				if err := storage.SetMembership(ctx, db, m); err != nil {
					t.Fatal(err)
				}
			}
			var w wakes
			fed := &fakeFederation{}
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			s := New(Config{Enabled: true, ServerName: "hs", DB: db, Notifier: &w})
			s.now = c.now
			s.SetFederation(fed)
			stored := func() storage.Presence {
				t.Helper()
				p, err := db.GetPresence(ctx, "@a:hs")
				if err != nil {
					t.Fatal(err)
				}
				return *p
			}

			// A /sync brings the user online, currently active; the room
			// mate is woken and their server told.
			done := s.Syncing(ctx, "@a:hs", "")
			if p := stored(); p.Presence != Online || !p.CurrentlyActive {
				t.Fatalf("after a sync: %+v", p)
			}
			if len(fed.sent) != 1 || fed.sent[0].dests[0] != "other" || fed.sent[0].content.Push[0].Presence != Online {
				t.Fatalf("EDUs: %+v", fed.sent)
			}
			done()
			first := stored().StreamPos

			// Activity while currently active stays in memory.
			c.advance(10 * time.Second)
			s.Active(ctx, "@a:hs")
			if p := stored(); p.StreamPos != first {
				t.Fatalf("activity while active was stored: %+v", p)
			}
			if st, _ := s.Get(ctx, "@a:hs", "@a:hs"); *st.LastActiveAgo != 0 {
				t.Fatalf("last_active_ago after activity: %d", *st.LastActiveAgo)
			}

			// Keep a /sync running so that only the idle rules apply.
			running := s.Syncing(ctx, "@a:hs", "")
			c.advance(DefaultActiveWindow + time.Second)
			s.applyTimeouts(ctx)
			if p := stored(); p.Presence != Online || p.CurrentlyActive {
				t.Fatalf("after the active window: %+v", p)
			}
			c.advance(DefaultIdleTimeout)
			s.applyTimeouts(ctx)
			if p := stored(); p.Presence != Unavailable {
				t.Fatalf("after the idle timeout: %+v", p)
			}
			// Activity brings an idle user back.
			s.Active(ctx, "@a:hs")
			if p := stored(); p.Presence != Online || !p.CurrentlyActive {
				t.Fatalf("after activity: %+v", p)
			}
			// A sync asking for unavailable marks the user idle.
			s.Syncing(ctx, "@a:hs", Unavailable)()
			if p := stored(); p.Presence != Unavailable {
				t.Fatalf("after set_presence=unavailable: %+v", p)
			}
			running()

			// No /sync for SyncTimeout: offline, and no longer tracked.
			c.advance(DefaultSyncTimeout + time.Second)
			s.applyTimeouts(ctx)
			if p := stored(); p.Presence != Offline {
				t.Fatalf("after the sync timeout: %+v", p)
			}
			s.applyTimeouts(ctx)
			if n := len(s.local); n != 0 {
				t.Fatalf("%d users still tracked", n)
			}

			// An explicit status, seen by the room mate and not a stranger.
			if err := s.Set(ctx, "@a:hs", Online, "coffee"); err != nil {
				t.Fatal(err)
			}
			if st, err := s.Get(ctx, "@b:other", "@a:hs"); err != nil || st.Presence != Online || *st.StatusMsg != "coffee" {
				t.Fatalf("room mate's view: %+v %v", st, err)
			}
			if _, err := s.Get(ctx, "@c:hs", "@a:hs"); err == nil {
				t.Fatal("a stranger read the presence")
			}

			// Remote presence: only of the origin's users, only of users
			// who share a room with a local user.
			s.HandleEDU(ctx, "other", json.RawMessage(`{"push":[
				{"user_id":"@b:other","presence":"unavailable","status_msg":"away","last_active_ago":60000},
				{"user_id":"@x:elsewhere","presence":"online","last_active_ago":0},
				{"user_id":"@lonely:other","presence":"online","last_active_ago":0}]}`))
			if p, err := db.GetPresence(ctx, "@b:other"); err != nil || p.Presence != Unavailable || p.StatusMsg != "away" ||
				p.LastActiveTS != c.now().UnixMilli()-60000 {
				t.Fatalf("remote presence: %+v %v", p, err)
			}
			for _, u := range []string{"@x:elsewhere", "@lonely:other"} {
				if _, err := db.GetPresence(ctx, u); err == nil {
					t.Fatalf("presence of %s was stored", u)
				}
			}

			// The sync extension: initial, then changes.
			ext := extension{s}
			to, _ := ext.CurrentPos(ctx)
			resp := &sync.Response{NextBatch: sync.Token{Events: 2}.String()}
			if changed, err := ext.Fill(ctx, sync.Request{Viewer: rooms.Viewer{UserID: "@a:hs"}}, 0, to, resp); err != nil || !changed || len(resp.Presence.Events) != 2 {
				t.Fatalf("initial: %v %v %s", changed, err, resp.Presence.Events)
			}
			resp = &sync.Response{NextBatch: sync.Token{Events: 2}.String()}
			if changed, err := ext.Fill(ctx, sync.Request{Viewer: rooms.Viewer{UserID: "@a:hs"}, Since: &sync.Token{Events: 2}}, to, to, resp); err != nil || changed {
				t.Fatalf("nothing new: %v %v %s", changed, err, resp.Presence.Events)
			}

			// A restart: a user left online goes offline unless they come
			// back within SyncTimeout.
			s2 := New(Config{Enabled: true, ServerName: "hs", DB: db, Notifier: &w, SyncTimeout: 50 * time.Millisecond})
			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			go s2.Run(runCtx)
			deadline := time.Now().Add(5 * time.Second)
			for stored().Presence != Offline {
				if time.Now().After(deadline) {
					t.Fatalf("still %s after the restart", stored().Presence)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestMemberJoinedWithNothingToSend runs joins that have nothing to send
// without a database: listing the room's members would panic.
func TestMemberJoinedWithNothingToSend(t *testing.T) {
	ctx := context.Background()
	s := New(Config{Enabled: true, ServerName: "hs"})
	fed := &fakeFederation{}
	s.SetFederation(fed)
	// No local user is tracked: none is online.
	s.MemberJoined(ctx, "!r:hs", "@b:other")
	// The local joiner is offline.
	s.local["@a:hs"] = &localUser{loaded: true, state: storage.Presence{UserID: "@a:hs", Presence: Offline}}
	s.MemberJoined(ctx, "!r:hs", "@a:hs")
	if len(fed.sent) != 0 {
		t.Fatalf("EDUs: %+v", fed.sent)
	}
}

func TestMemberJoined(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, e.DSN, storage.Pool{MaxOpenConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			for i, u := range []string{"@a:hs", "@b:other", "@c:hs", "@d:hs", "@e:third", "@f:new"} {
				m := storage.Membership{RoomID: "!r:hs", UserID: u, Membership: "join", EventID: "$j" + u, StreamPos: int64(i + 1)}
				if err := storage.SetMembership(ctx, db, m); err != nil {
					t.Fatal(err)
				}
			}
			fed := &fakeFederation{}
			s := New(Config{Enabled: true, ServerName: "hs", DB: db, Notifier: &wakes{}})
			s.SetFederation(fed)
			// @a is online with a status, @d tracked but offline, @c
			// never seen.
			if err := s.Set(ctx, "@a:hs", Online, "lunch"); err != nil {
				t.Fatal(err)
			}
			if err := s.Set(ctx, "@d:hs", Offline, ""); err != nil {
				t.Fatal(err)
			}
			fed.sent = nil

			// A remote join brings the joiner's server the presence of the
			// local members who are not offline.
			s.MemberJoined(ctx, "!r:hs", "@f:new")
			if len(fed.sent) != 1 || !slices.Equal(fed.sent[0].dests, []string{"new"}) || len(fed.sent[0].content.Push) != 1 ||
				fed.sent[0].content.Push[0].UserID != "@a:hs" || *fed.sent[0].content.Push[0].StatusMsg != "lunch" {
				t.Fatalf("remote join: %+v", fed.sent)
			}
			fed.sent = nil

			// A local join brings the room's other servers the joiner's
			// presence, unless they are offline.
			s.MemberJoined(ctx, "!r:hs", "@a:hs")
			if len(fed.sent) != 1 || !slices.Equal(fed.sent[0].dests, []string{"new", "other", "third"}) ||
				len(fed.sent[0].content.Push) != 1 || fed.sent[0].content.Push[0].UserID != "@a:hs" {
				t.Fatalf("local join: %+v", fed.sent)
			}
			fed.sent = nil
			s.MemberJoined(ctx, "!r:hs", "@c:hs")
			s.MemberJoined(ctx, "!r:hs", "@d:hs")
			if len(fed.sent) != 0 {
				t.Fatalf("offline joiners: %+v", fed.sent)
			}
		})
	}
}
