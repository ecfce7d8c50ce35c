package indexer

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

// TestTailer checks that every committed event reaches the index
// functions once per run, in order, and that a restart goes on from the
// saved position; backfilled events (negative positions) are indexed too.
func TestTailer(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, storagetest.SQLite(t), storage.Pool{MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	insert := func(positions ...int64) {
		var rows []*storage.EventRow
		for _, p := range positions {
			rows = append(rows, &storage.EventRow{EventID: fmt.Sprintf("$%d", p), RoomID: "!r", Type: "m.room.message",
				Sender: "@a:x", StreamPos: p, JSON: "{}"})
		}
		if err := db.InsertEvents(ctx, db, rows); err != nil {
			t.Fatal(err)
		}
	}
	var current atomic.Int64
	var mu sync.Mutex
	var seen []int64
	index := func(_ context.Context, rows []*storage.EventRow) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rows {
			seen = append(seen, r.StreamPos)
		}
		return nil
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	run := func() (*Tailer, func()) {
		tl := New(db, "test", current.Load, log, index)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { tl.Run(runCtx); close(done) }()
		for !tl.running.Load() {
			time.Sleep(time.Millisecond)
		}
		return tl, func() { cancel(); <-done }
	}

	insert(1, 2, 3)
	current.Store(3)
	tl, stop := run()
	if err := tl.WaitCurrent(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	insert(4, 5)
	current.Store(5)
	tl.Notify()
	if err := tl.WaitCurrent(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	insert(6, -1, -2)
	current.Store(6)
	tl, stop = run()
	if err := tl.WaitCurrent(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[1 2 3 4 5 6 -2 -1]" {
		t.Fatalf("indexed %v", seen)
	}
	// A tailer that is not running does not make readers wait.
	idle := New(db, "idle", current.Load, log)
	if err := idle.WaitCurrent(ctx, time.Hour); err != ErrBehind {
		t.Fatalf("an idle tailer: %v", err)
	}
}
