package main

import (
	"context"
	"testing"
	"time"

	hsconfig "github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/storage/storagetest"
)

// TestLoadAgainstParley runs a small load against a real in-process Parley
// server, on SQLite and (when PARLEY_TEST_POSTGRES is set) PostgreSQL, and
// checks that every event was sent and reached the watcher. It checks
// correctness only: timings from a test run are not benchmarks.
func TestLoadAgainstParley(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server; skipped with -short")
	}
	for _, engine := range storagetest.Engines(t) {
		t.Run(engine.Name, func(t *testing.T) { testLoadAgainstParley(t, engine.DSN) })
	}
}

func testLoadAgainstParley(t *testing.T, dsn string) {
	srv := hstest.Start(t, hstest.Options{DSN: dsn, Configure: func(c *hsconfig.Config) {
		// The default per-user message limit would turn this test into a
		// minute of 429 back-off; rate limiting is not what it checks.
		c.RateLimits.MessageSending.Burst = 0
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const senders, events = 4, 200
	res, err := run(ctx, config{
		URL:          srv.ClientURL,
		Senders:      senders,
		Events:       events,
		Users:        senders,
		Prefix:       "loadtest",
		Registration: "dummy",
		Drain:        30 * time.Second,
		Logf:         t.Logf,
	})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if res.Sent != events || res.Failed != 0 {
		t.Errorf("sent %d, failed %d (errors %v); want %d sent, 0 failed", res.Sent, res.Failed, res.Errors, events)
	}
	if res.Delivered != events {
		t.Errorf("watcher saw %d of %d events (%d limited syncs, errors %v)", res.Delivered, events, res.LimitedSyncs, res.Errors)
	}
	if res.SendLatency.Count != res.Sent || res.SyncFromStart.Count != res.Delivered {
		t.Errorf("latency counts %d/%d do not match sent/delivered %d/%d",
			res.SendLatency.Count, res.SyncFromStart.Count, res.Sent, res.Delivered)
	}
	t.Logf("%.0f events/s, send p50 %.1fms, send→sync p50 %.1fms (test build, not a benchmark)",
		res.EventsPerSec, res.SendLatency.P50, res.SyncFromStart.P50)
}
