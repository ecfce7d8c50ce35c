package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// config is one load run's parameters.
type config struct {
	URL          string
	Senders      int
	Events       int           // total sends; 0 means no limit (Duration must be set)
	Duration     time.Duration // how long to keep sending; 0 means until Events are sent
	Users        int           // sending users; senders take turns over them
	Prefix       string        // user name prefix; a random run ID follows it
	Registration string        // "dummy" or "shared-secret"
	SharedSecret string
	// Drain is how long the watcher may take, after the last send returned,
	// to see the remaining events before they count as undelivered.
	Drain time.Duration
	// Logf reports progress; nil discards it.
	Logf func(format string, args ...any)
}

// result is what a run measured. Its JSON form is the tool's -json output.
type result struct {
	URL     string `json:"url"`
	Run     string `json:"run"`
	RoomID  string `json:"room_id"`
	Senders int    `json:"senders"`
	Users   int    `json:"users"`

	SetupSeconds float64 `json:"setup_seconds"`
	// LoadSeconds runs from the first send's start to the last send's end.
	LoadSeconds  float64 `json:"load_seconds"`
	Sent         int     `json:"sent"`
	Failed       int     `json:"failed"`
	EventsPerSec float64 `json:"events_per_second"`
	// RateLimited counts 429 responses during the load; each was retried.
	RateLimited      int `json:"rate_limited"`
	SetupRateLimited int `json:"setup_rate_limited"`

	SendLatency latency `json:"send_latency"`
	// SyncFromStart is from the start of the send request that created the
	// event to the watcher's /sync response containing it: what a user
	// waits between pressing enter and another user seeing the message.
	SyncFromStart latency `json:"sync_latency_from_send_start"`
	// SyncFromResponse is from the send response to that /sync response.
	// It is negative when the /sync answered before the send did.
	SyncFromResponse latency `json:"sync_latency_from_send_response"`

	// Interrupted is set when the run was stopped (Ctrl-C) before it ended:
	// the watcher got no time to drain, so undelivered events are expected.
	Interrupted bool `json:"interrupted"`

	Delivered    int            `json:"delivered"`
	Undelivered  int            `json:"undelivered"`
	LimitedSyncs int            `json:"limited_syncs"`
	SyncErrors   int            `json:"sync_errors"`
	Errors       map[string]int `json:"errors"`
}

// FailedRatio is the share of sends that failed.
func (r *result) FailedRatio() float64 {
	if r.Sent+r.Failed == 0 {
		return 0
	}
	return float64(r.Failed) / float64(r.Sent+r.Failed)
}

const (
	// setupParallelism bounds concurrent registrations and joins: enough to
	// make setup of many users quick, few enough not to look like an attack.
	setupParallelism = 8
	// syncTimelineLimit must exceed the events that can arrive between two
	// /sync responses: a limited (gappy) timeline leaves events out, and the
	// watcher would report them undelivered.
	syncTimelineLimit = 1000
	syncTimeout       = 30 * time.Second
)

// loadContent is the custom part of each message, namespaced as the spec
// asks of custom keys, from which the watcher recognises this run's events.
type loadContent struct {
	Run    string `json:"run"`
	Seq    int64  `json:"seq"`
	SentTS int64  `json:"sent_ts"` // ms since the epoch, for someone reading the room
}

// loadRun is one run's state, shared by the senders and the watcher.
type loadRun struct {
	cfg     config
	runID   string
	logf    func(format string, args ...any)
	hc      *http.Client
	limited atomic.Int64 // 429s, of setup and load

	users   []*client
	watcher *client
	roomID  string
	filter  string // the watcher's /sync filter

	next, ok, failed, seen atomic.Int64 // sequence numbers handed out; sends ok, failed; events seen

	mu        sync.Mutex
	sent      map[int64]timing    // seq → its successful send
	delivered map[int64]time.Time // seq → when the watcher's /sync returned it
	errors    map[string]int

	// Written by the watcher goroutine only, read after it has ended.
	limitedSyncs, syncErrors int
}

// run sets up users and a room, sends the load, and measures it. It returns
// an error only when setup fails; failed sends are part of the result.
func run(ctx context.Context, cfg config) (*result, error) {
	r := &loadRun{
		cfg: cfg, runID: randomHex(3), logf: cfg.Logf,
		hc:   newHTTPClient(cfg.Senders + 4),
		sent: map[int64]timing{}, delivered: map[int64]time.Time{}, errors: map[string]int{},
	}
	if r.logf == nil {
		r.logf = func(string, ...any) {}
	}
	setupStart := time.Now()
	since, err := r.setup(ctx)
	if err != nil {
		return nil, err
	}
	setup := time.Since(setupStart)
	setupLimited := r.limited.Load()
	r.logf("setup done in %.1fs; sending", setup.Seconds())

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.watch(watchCtx, since)
	}()
	stopProgress := r.reportProgress()
	r.sendAll(ctx)
	stopProgress()
	loadLimited := r.limited.Load() - setupLimited

	// Let the watcher catch up with the last sends.
	drainUntil := time.Now().Add(cfg.Drain)
	for r.seen.Load() < r.ok.Load() && time.Now().Before(drainUntil) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	stopWatch()
	<-watchDone

	res := r.result()
	res.SetupSeconds = setup.Seconds()
	res.SetupRateLimited = int(setupLimited)
	res.RateLimited = int(loadLimited)
	res.Interrupted = ctx.Err() != nil
	return res, nil
}

// setup registers the users, creates the room, joins everyone and makes the
// watcher's initial sync, whose next_batch it returns.
func (r *loadRun) setup(ctx context.Context) (string, error) {
	var err error
	if r.users, r.watcher, err = r.register(ctx); err != nil {
		return "", err
	}
	if r.roomID, err = r.users[0].createRoom(ctx, "parley-load "+r.runID); err != nil {
		return "", fmt.Errorf("creating the room: %w", err)
	}
	r.logf("room %s created; joining %d users", r.roomID, len(r.users))
	joiners := append([]*client{r.watcher}, r.users[1:]...)
	if err := parallel(ctx, len(joiners), func(i int) error {
		if err := joiners[i].join(ctx, r.roomID); err != nil {
			return fmt.Errorf("%s joining %s: %w", joiners[i].userID, r.roomID, err)
		}
		return nil
	}); err != nil {
		return "", err
	}
	filter, _ := json.Marshal(map[string]any{
		"room":         map[string]any{"rooms": []string{r.roomID}, "timeline": map[string]any{"limit": syncTimelineLimit}},
		"presence":     map[string]any{"types": []string{}},
		"account_data": map[string]any{"types": []string{}},
	})
	r.filter = string(filter)
	initial, _, err := r.watcher.sync(ctx, "", r.filter, 0)
	if err != nil {
		return "", fmt.Errorf("watcher's initial sync: %w", err)
	}
	if _, ok := initial.Rooms.Join[r.roomID]; !ok {
		return "", fmt.Errorf("watcher's initial sync does not list %s among its joined rooms", r.roomID)
	}
	return initial.NextBatch, nil
}

// register registers the sending users and the watcher.
func (r *loadRun) register(ctx context.Context) ([]*client, *client, error) {
	cfg := r.cfg
	password := randomHex(16)
	all := make([]*client, cfg.Users+1) // the last one is the watcher
	r.logf("registering %d users and a watcher as %s-%s-*", cfg.Users, cfg.Prefix, r.runID)
	err := parallel(ctx, len(all), func(i int) error {
		name := fmt.Sprintf("%s-%s-%d", cfg.Prefix, r.runID, i)
		if i == cfg.Users {
			name = fmt.Sprintf("%s-%s-watcher", cfg.Prefix, r.runID)
		}
		c := &client{hc: r.hc, base: strings.TrimRight(cfg.URL, "/"), limited: &r.limited}
		var s session
		var err error
		if cfg.Registration == "shared-secret" {
			s, err = c.registerSharedSecret(ctx, cfg.SharedSecret, name, password)
		} else {
			s, err = c.registerDummy(ctx, name, password)
		}
		if err == nil && s.AccessToken == "" {
			// Registered with inhibit_login semantics: log in separately.
			s, err = c.login(ctx, name, password)
		}
		if err != nil {
			return fmt.Errorf("registering %s: %w", name, err)
		}
		c.userID, c.token = s.UserID, s.AccessToken
		all[i] = c
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return all[:cfg.Users], all[cfg.Users], nil
}

func (r *loadRun) countError(key string) {
	r.mu.Lock()
	r.errors[key]++
	r.mu.Unlock()
}

// watch long-polls /sync until ctx ends, as a client would, and notes when
// each of the run's events first arrives.
func (r *loadRun) watch(ctx context.Context, since string) {
	for ctx.Err() == nil {
		resp, t, err := r.watcher.sync(ctx, since, r.filter, syncTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.syncErrors++
			r.countError("sync: " + errorKey(err))
			select { // do not spin against a failing server
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		since = resp.NextBatch
		room, ok := resp.Rooms.Join[r.roomID]
		if !ok {
			continue
		}
		if room.Timeline.Limited {
			r.limitedSyncs++
		}
		r.mu.Lock()
		for _, ev := range room.Timeline.Events {
			if ev.Type != "m.room.message" {
				continue
			}
			var c struct {
				Load *loadContent `json:"parley.load"`
			}
			if json.Unmarshal(ev.Content, &c) != nil || c.Load == nil || c.Load.Run != r.runID {
				continue
			}
			if _, dup := r.delivered[c.Load.Seq]; !dup {
				r.delivered[c.Load.Seq] = t.end
				r.seen.Add(1)
			}
		}
		r.mu.Unlock()
	}
}

// sendAll runs the senders until the events are sent, the duration is over
// or ctx ends.
func (r *loadRun) sendAll(ctx context.Context) {
	var deadline time.Time
	if r.cfg.Duration > 0 {
		deadline = time.Now().Add(r.cfg.Duration)
	}
	var wg sync.WaitGroup
	for i := range r.cfg.Senders {
		c := r.users[i%len(r.users)]
		wg.Go(func() {
			for ctx.Err() == nil {
				seq := r.next.Add(1)
				if r.cfg.Events > 0 && seq > int64(r.cfg.Events) || !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				content := map[string]any{
					"msgtype":     "m.text",
					"body":        fmt.Sprintf("parley-load %s #%d", r.runID, seq),
					"parley.load": loadContent{Run: r.runID, Seq: seq, SentTS: time.Now().UnixMilli()},
				}
				t, err := c.send(ctx, r.roomID, fmt.Sprintf("%s.%d", r.runID, seq), content)
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted, not a server failure
					}
					r.failed.Add(1)
					r.countError("send: " + errorKey(err))
					continue
				}
				r.mu.Lock()
				r.sent[seq] = t
				r.mu.Unlock()
				r.ok.Add(1)
			}
		})
	}
	wg.Wait()
}

// reportProgress logs the counters every few seconds until the returned
// function is called, so that a long run visibly progresses.
func (r *loadRun) reportProgress() (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				r.logf("sent %d, failed %d, delivered %d", r.ok.Load(), r.failed.Load(), r.seen.Load())
			}
		}
	}()
	return func() { close(done) }
}

// result computes the measurements; the senders and the watcher must have
// ended.
func (r *loadRun) result() *result {
	res := &result{
		URL: r.cfg.URL, Run: r.runID, RoomID: r.roomID, Senders: r.cfg.Senders, Users: r.cfg.Users,
		Sent: len(r.sent), Failed: int(r.failed.Load()),
		LimitedSyncs: r.limitedSyncs, SyncErrors: r.syncErrors, Errors: r.errors,
	}
	var first, last time.Time
	var sendLat, fromStart, fromResp []time.Duration
	for seq, t := range r.sent {
		if first.IsZero() || t.start.Before(first) {
			first = t.start
		}
		if t.end.After(last) {
			last = t.end
		}
		sendLat = append(sendLat, t.end.Sub(t.start))
		if d, ok := r.delivered[seq]; ok {
			fromStart = append(fromStart, d.Sub(t.start))
			fromResp = append(fromResp, d.Sub(t.end))
		}
	}
	res.Delivered = len(fromStart)
	res.Undelivered = res.Sent - res.Delivered
	if res.LoadSeconds = last.Sub(first).Seconds(); res.LoadSeconds > 0 {
		res.EventsPerSec = float64(res.Sent) / res.LoadSeconds
	}
	res.SendLatency = summarize(sendLat)
	res.SyncFromStart = summarize(fromStart)
	res.SyncFromResponse = summarize(fromResp)
	return res
}

// parallel runs f(0..n-1) on at most setupParallelism goroutines and
// returns the first error; after an error no new calls start.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	var (
		next     atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	for range min(n, setupParallelism) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n)) // stop handing out work
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		return ctx.Err()
	}
	return firstErr
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
