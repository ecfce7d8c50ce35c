package federation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

// Federation benchmarks with real servers on loopback (SQLite). The
// numbers and how to run them are in docs/BENCHMARKS.md.

// BenchmarkJoinLargeRoom: a server joins a remote room whose state holds
// 10,000 member events. Each iteration joins from a server with a fresh
// database (the same name and key), so every join fetches and checks the
// whole state and auth chain.
func BenchmarkJoinLargeRoom(b *testing.B) {
	const members = 10_000
	n := hstest.NewNetwork(b, "hs1.test", "hs2.test")
	// Presence is off: it does work per member join that has nothing to
	// do with federation (and is what large servers turn off).
	noPresence := func(c *config.Config) { noLimits(c); c.Presence.Enabled = false }
	hs1 := n.Start(b, "hs1.test", noPresence)
	hs2 := n.Start(b, "hs2.test", noPresence)
	ctx := context.Background()
	alice := benchUser(b, hs1, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	joinMany(b, hs1, room.RoomID.String(), members)
	state, _ := hs1.Rooms.CurrentState(ctx, room.RoomID.String())
	b.Logf("room with %d state events built in %s", len(state), time.Since(start).Round(time.Millisecond))
	// What the joins set off in the background (push rules, indexing)
	// would otherwise be timed with the join.
	b.Logf("background work settled after %s", settle(3*time.Minute).Round(time.Second))

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		hs2.Stop()
		hs2.Config.Database = storagetest.SQLite(b)
		hs2.Restart()
		bob := benchUser(b, hs2, fmt.Sprintf("bob%d", i))
		b.StartTimer()
		if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	got, _ := hs2.Rooms.CurrentState(ctx, room.RoomID.String())
	if len(got) < members {
		b.Fatalf("hs2 holds %d state events, want over %d", len(got), members)
	}
}

// BenchmarkRemoteSyncLatency: from the start of a message's /send on one
// server to a long-polling /sync on the other returning it. Reports the
// median and 90th percentile in milliseconds over b.N messages, sent one
// after the other.
func BenchmarkRemoteSyncLatency(b *testing.B) {
	n := hstest.NewNetwork(b, "hs1.test", "hs2.test")
	hs1 := n.Start(b, "hs1.test", noLimits)
	hs2 := n.Start(b, "hs2.test", noLimits)
	ctx := context.Background()
	alice := benchUser(b, hs1, "alice")
	bob := benchUser(b, hs2, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		b.Fatal(err)
	}
	resp, err := bob.SyncRequest(ctx, 0, "", "", false, mevent.PresenceOnline)
	if err != nil {
		b.Fatal(err)
	}
	since := resp.NextBatch
	// The watcher long-polls and notes when each body arrives.
	arrived := make(chan string, 16)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for sctx.Err() == nil {
			resp, err := bob.SyncRequest(sctx, 30000, since, "", false, mevent.PresenceOnline)
			if err != nil {
				continue
			}
			since = resp.NextBatch
			if jr, ok := resp.Rooms.Join[room.RoomID]; ok {
				for _, body := range bodies(jr.Timeline.Events) {
					arrived <- body
				}
			}
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := fmt.Sprintf("latency %d", i)
		start := time.Now()
		if _, err := alice.SendText(ctx, room.RoomID, body); err != nil {
			b.Fatal(err)
		}
		for got := ""; got != body; {
			select {
			case got = <-arrived:
			case <-time.After(30 * time.Second):
				b.Fatalf("%q never reached hs2's /sync", body)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.9), "p90-ms")
}

// BenchmarkInboundPDUs: signed PDUs received in transactions of 50 from
// one server, each checked (format, signatures, hashes, auth rules against
// its auth events, the state before it and the current state) and
// persisted. Reports PDUs per second.
// The receiving server runs on each engine (PostgreSQL when
// PARLEY_TEST_POSTGRES is set).
func BenchmarkInboundPDUs(b *testing.B) {
	// Each run needs fresh databases: the benchmark function runs more
	// than once.
	b.Run("sqlite", func(b *testing.B) { benchInboundPDUs(b, storagetest.SQLite(b), 0) })
	b.Run("postgres", func(b *testing.B) { benchInboundPDUs(b, storagetest.Postgres(b, true), 0) })
	// The checks must not cost in proportion to the room's state.
	b.Run("sqlite-2000-members", func(b *testing.B) { benchInboundPDUs(b, storagetest.SQLite(b), 2000) })
}

// benchInboundPDUs: members extra local users of hs1 are in the room
// before hs2 joins it.
func benchInboundPDUs(b *testing.B, dsn string, members int) {
	n := hstest.NewNetwork(b, "hs1.test", "hs2.test")
	hs1 := n.Start(b, "hs1.test", noLimits)
	hs2 := n.Start(b, "hs2.test", func(c *config.Config) { noLimits(c); c.Database = dsn })
	ctx := context.Background()
	alice := benchUser(b, hs1, "alice")
	bob := benchUser(b, hs2, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		b.Fatal(err)
	}
	joinMany(b, hs1, room.RoomID.String(), members)
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		b.Fatal(err)
	}
	roomID := room.RoomID.String()
	// alice's messages as hs1 would send them, chained on what hs2 holds.

	version, _ := hs2.Rooms.RoomVersion(ctx, roomID)
	state, _ := hs2.Rooms.CurrentState(ctx, roomID)
	prev, err := hs2.DB.ForwardExtremities(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	var depth int64
	for _, p := range prev {
		row, _ := hs2.DB.GetEvent(ctx, p)
		depth = max(depth, row.Depth)
	}
	info, _ := version.Info()
	var auth []string
	for _, k := range authrules.AuthEventsNeeded(info, "m.room.message", nil, alice.UserID.String(), nil) {
		if ev := state[storage.StateKey{Type: k.EventType, StateKey: k.StateKey}]; ev != nil {
			auth = append(auth, ev.EventID())
		}
	}
	pdus := make([]json.RawMessage, b.N)
	for i := range pdus {
		depth++
		ev, err := event.ProtoEvent{Type: "m.room.message", Sender: alice.UserID.String(), RoomID: roomID,
			Content:    json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"inbound %d"}`, i)),
			PrevEvents: prev, AuthEvents: auth, Depth: depth, OriginServerTS: time.Now().UnixMilli(),
		}.Build(version, "hs1.test", hs1.SigningKey.KeyID, hs1.SigningKey.Key)
		if err != nil {
			b.Fatal(err)
		}
		pdus[i], prev = ev.JSON(), []string{ev.EventID()}
	}
	if members > 0 {
		// What the joins set off (push, presence, indexing) is not timed.
		b.Logf("background work settled after %s", settle(3*time.Minute).Round(time.Second))
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(pdus); i += 50 {
		batch := pdus[i:min(i+50, len(pdus))]
		res, err := sendTxn(b, hs1, "hs2.test", fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), batch...)
		if err != nil {
			b.Fatal(err)
		}
		for id, r := range res.PDUs {
			if r.Error != "" {
				b.Fatalf("%s: %s", id, r.Error)
			}
		}
	}
	elapsed := time.Since(start)
	// The push rules and the search index follow the timeline on their
	// own; they must keep up too, or they fall ever further behind.
	if !hs2.Push.WaitEvaluated(ctx, time.Minute) {
		b.Fatal("push evaluation did not catch up")
	}
	if err := hs2.WaitChatIndex(ctx, time.Minute); err != nil {
		b.Fatal("chat index did not catch up: ", err)
	}
	all := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(len(pdus))/elapsed.Seconds(), "pdus/s")
	b.ReportMetric(float64(len(pdus))/all.Seconds(), "pdus/s-pushed+indexed")
}

// joinMany joins n made-up local users of srv to a public room, through
// the room engine directly and many at once, so that the sequencer commits
// them in batches.
func joinMany(b *testing.B, srv *hstest.Server, roomID string, n int) {
	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan error, 1)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				userID := fmt.Sprintf("@member%05d:%s", i, srv.Config.ServerName)
				if _, err := srv.Rooms.Join(context.Background(), roomID, userID, "", nil); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// benchUser registers a user on srv for a benchmark.
func benchUser(b *testing.B, srv *hstest.Server, name string) *mautrix.Client {
	b.Helper()
	cli, err := mautrix.NewClient(srv.ClientURL, "", "")
	if err != nil {
		b.Fatal(err)
	}
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{Username: name, Password: "pw-" + name})
	if err != nil {
		b.Fatalf("register %s: %v", name, err)
	}
	cli.SetCredentials(resp.UserID, resp.AccessToken)
	return cli
}
