package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/keys"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/stream"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

type env struct {
	db        *storage.DB
	engine    *rooms.Engine
	sync      *sync.Service
	key       *keys.SigningKey
	positions *stream.Positions
	log       *logrus.Logger
}

func newEnv(t *testing.T, dsn string) *env {
	t.Helper()
	ctx := context.Background()
	db, err := storage.Open(ctx, dsn, storage.Pool{MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key, err := keys.LoadOrCreateSigningKey(t.TempDir() + "/signing.key")
	if err != nil {
		t.Fatal(err)
	}
	last, err := db.MaxStreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pos := stream.New(last)
	n := sync.NewNotifier(pos)
	log := logrus.New()
	log.SetOutput(io.Discard)
	eng := rooms.New(rooms.Config{DB: db, ServerName: "test.local", SigningKey: key, Positions: pos, Notifier: n, Log: log})
	return &env{db: db, engine: eng, sync: sync.New(eng, pos, n, nil), key: key, positions: pos, log: log}
}

func text(body string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	return b
}

func TestRoomLifecycleAndSync(t *testing.T) {
	for _, version := range []string{"1", "3", "10", "11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			for _, e := range storagetest.Engines(t) {
				t.Run(e.Name, func(t *testing.T) {
					testRoomLifecycle(t, newEnv(t, e.DSN), version)
				})
			}
		})
	}
}

func testRoomLifecycle(t *testing.T, env *env, version string) {
	ctx := context.Background()
	alice, bob := "@alice:test.local", "@bob:test.local"
	name := "Test room"
	roomID, err := env.engine.CreateRoom(ctx, rooms.CreateRequest{Creator: alice, Preset: "private_chat", Name: &name,
		Invite: []string{bob}, RoomVersion: roomVersion(version)})
	if err != nil {
		t.Fatal(err)
	}
	bobView := rooms.Viewer{UserID: bob, DeviceID: "B"}
	aliceView := rooms.Viewer{UserID: alice, DeviceID: "A"}

	// Bob sees the invite.
	resp, err := env.sync.Sync(ctx, sync.Request{Viewer: bobView})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Rooms.Invite[roomID]; !ok {
		t.Fatalf("bob's initial sync has no invite: %+v", resp.Rooms)
	}
	// Bob may not send before joining.
	if _, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: bob, Content: text("hi")}); err == nil {
		t.Fatal("invited user could send")
	}
	if _, err := env.engine.Join(ctx, roomID, bob, "", nil); err != nil {
		t.Fatal(err)
	}
	since := resp.NextBatch

	// Long-poll: a waiting sync wakes when alice sends.
	done := make(chan *sync.Response, 1)
	tok, _ := sync.ParseToken(since)
	go func() {
		r, err := env.sync.Sync(ctx, sync.Request{Viewer: bobView, Since: &tok, Timeout: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	var r1 *sync.Response
	select {
	case r1 = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sync did not return the join")
	}
	jr, ok := r1.Rooms.Join[roomID]
	if !ok {
		t.Fatalf("no joined room after join: %+v", r1.Rooms)
	}
	// The whole room fits in the timeline, so the state section is empty
	// and the timeline starts with the create event.
	if len(jr.Timeline.Events) == 0 || jr.Timeline.Events[0].Type != "m.room.create" || jr.Timeline.Limited ||
		jr.Summary == nil || *jr.Summary.JoinedMemberCount != 2 {
		t.Fatalf("newly joined room lacks state or summary: %+v", jr)
	}

	tok, _ = sync.ParseToken(r1.NextBatch)
	go func() {
		r, err := env.sync.Sync(ctx, sync.Request{Viewer: bobView, Since: &tok, Timeout: 10 * time.Second})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	time.Sleep(50 * time.Millisecond)
	sent, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice, Content: text("hello bob"),
		Txn: &rooms.Txn{UserID: alice, DeviceID: "A", TxnID: "t1"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r2 := <-done:
		evs := r2.Rooms.Join[roomID].Timeline.Events
		if len(evs) != 1 || evs[0].EventID != sent.EventID() {
			t.Fatalf("long-poll got %+v", r2.Rooms.Join[roomID])
		}
		if evs[0].Unsigned != nil && evs[0].Unsigned.TransactionID != "" {
			t.Fatal("bob sees alice's transaction ID")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll did not wake")
	}
	// The same transaction again gives the same event.
	again, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice, Content: text("hello bob"),
		Txn: &rooms.Txn{UserID: alice, DeviceID: "A", TxnID: "t1"}})
	if err != nil || again.EventID() != sent.EventID() {
		t.Fatalf("resend: %v %v", again, err)
	}

	// Many concurrent sends all land, in one order for everyone.
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		go func(i int) {
			sender := alice
			if i%2 == 1 {
				sender = bob
			}
			_, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: sender, Content: text(fmt.Sprint(i))})
			errs <- err
		}(i)
	}
	for i := 0; i < 50; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	page, err := env.engine.Messages(ctx, rooms.MessagesRequest{Viewer: aliceView, RoomID: roomID, From: -1, To: -1, Backwards: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	msgs := 0
	for _, ev := range page.Chunk {
		if ev.Type == "m.room.message" {
			msgs++
		}
	}
	if msgs != 51 {
		t.Fatalf("paginated %d messages, want 51", msgs)
	}

	// Redaction by the sender hides the content.
	if _, err := env.engine.Redact(ctx, roomID, alice, sent.EventID(), "oops", nil); err != nil {
		t.Fatal(err)
	}
	got, err := env.engine.EventForUser(ctx, bobView, roomID, sent.EventID())
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Content) != "{}" || got.Unsigned.RedactedBecause == nil {
		t.Fatalf("redacted event served as %s %+v", got.Content, got.Unsigned)
	}
	// Bob (power 0) may not redact alice's events.
	if _, err := env.engine.Redact(ctx, roomID, bob, again.EventID(), "", nil); err == nil {
		t.Fatal("bob redacted alice's event")
	}

	// Bob leaves: his next sync has the room under leave, and he cannot
	// read what is said afterwards.
	tok, _ = sync.ParseToken(r1.NextBatch)
	if _, err := env.engine.ChangeMembership(ctx, roomID, bob, bob, "leave", "", false); err != nil {
		t.Fatal(err)
	}
	after, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice, Content: text("secret")})
	if err != nil {
		t.Fatal(err)
	}
	r3, err := env.sync.Sync(ctx, sync.Request{Viewer: bobView, Since: &tok})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r3.Rooms.Leave[roomID]; !ok {
		t.Fatalf("leave not in sync: %+v", r3.Rooms)
	}
	if _, err := env.engine.EventForUser(ctx, bobView, roomID, after.EventID()); err == nil {
		t.Fatal("bob can read a message sent after he left")
	}
}

func roomVersion(v string) event.RoomVersion { return event.RoomVersion(v) }

func TestEncryptPrivateRoomsByDefault(t *testing.T) {
	env := newEnv(t, storagetest.SQLite(t))
	ctx := context.Background()
	alice := "@alice:test.local"
	// newEnv builds the engine without the option; build one with it.
	engine := rooms.New(rooms.Config{DB: env.db, ServerName: "test.local", SigningKey: env.key, Positions: env.positions,
		Log: env.log, EncryptPrivateRooms: true})
	private, err := engine.CreateRoom(ctx, rooms.CreateRequest{Creator: alice, Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	public, err := engine.CreateRoom(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, _ := engine.CurrentStateEvent(ctx, private, "m.room.encryption", ""); ev == nil {
		t.Fatal("private room created without encryption")
	}
	if ev, _ := engine.CurrentStateEvent(ctx, public, "m.room.encryption", ""); ev != nil {
		t.Fatal("public room encrypted")
	}
}

func TestConcurrentRetriesOfOneTransaction(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			env := newEnv(t, e.DSN)
			ctx := context.Background()
			alice := "@alice:test.local"
			roomID, err := env.engine.CreateRoom(ctx, rooms.CreateRequest{Creator: alice})
			if err != nil {
				t.Fatal(err)
			}
			ids := make(chan string, 20)
			for i := 0; i < 20; i++ {
				go func() {
					ev, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice, Content: text("once"),
						Txn: &rooms.Txn{UserID: alice, DeviceID: "D", TxnID: "same"}})
					if err != nil {
						t.Error(err)
						ids <- ""
						return
					}
					ids <- ev.EventID()
				}()
			}
			first := <-ids
			for i := 1; i < 20; i++ {
				if id := <-ids; id != first {
					t.Fatalf("retries gave %s and %s", first, id)
				}
			}
			page, err := env.engine.Messages(ctx, rooms.MessagesRequest{Viewer: rooms.Viewer{UserID: alice}, RoomID: roomID, From: -1, To: -1, Backwards: true, Limit: 50})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range page.Chunk {
				if ev.Type == "m.room.message" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d messages stored for one transaction", n)
			}
		})
	}
}

func TestFullStateKeepsTheTimelineIncremental(t *testing.T) {
	env := newEnv(t, storagetest.SQLite(t))
	ctx := context.Background()
	alice := "@alice:test.local"
	name := "Full state"
	roomID, err := env.engine.CreateRoom(ctx, rooms.CreateRequest{Creator: alice, Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	view := rooms.Viewer{UserID: alice, DeviceID: "A"}
	first, err := env.sync.Sync(ctx, sync.Request{Viewer: view})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice, Content: text("after")}); err != nil {
		t.Fatal(err)
	}
	tok, _ := sync.ParseToken(first.NextBatch)
	resp, err := env.sync.Sync(ctx, sync.Request{Viewer: view, Since: &tok, FullState: true})
	if err != nil {
		t.Fatal(err)
	}
	jr := resp.Rooms.Join[roomID]
	if jr == nil || len(jr.Timeline.Events) != 1 || jr.Timeline.Events[0].Type != "m.room.message" {
		t.Fatalf("full_state timeline: %+v", jr)
	}
	types := map[string]bool{}
	for _, ev := range jr.State.Events {
		types[ev.Type] = true
	}
	if !types["m.room.create"] || !types["m.room.name"] || !types["m.room.power_levels"] {
		t.Fatalf("full_state did not send the whole state: %v", types)
	}
}
