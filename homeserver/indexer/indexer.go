// Package indexer keeps indexes built from the room timeline (relations,
// search, user directory) up to date. It reads committed events from the
// database in stream order rather than trusting what listeners are handed,
// and records how far it got, so that an index misses nothing across
// crashes and restarts and catches up with events stored before it
// existed.
package indexer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/storage"
)

// Func indexes a batch of committed events, oldest first. It must be
// idempotent (a batch may be indexed again after a crash) and should skip,
// not fail on, events it cannot read: an error stops the index until the
// next attempt.
type Func func(ctx context.Context, rows []*storage.EventRow) error

// batchSize bounds the events read and indexed at once.
const batchSize = 500

// retryDelay is how often the indexer looks for events without being woken:
// backfilled history, and batches that failed.
const retryDelay = 5 * time.Second

// Tailer follows the timeline and feeds events to its index functions.
type Tailer struct {
	db      *storage.DB
	name    string
	current func() int64
	funcs   []Func
	log     logrus.FieldLogger
	wake    chan struct{}

	// running is set while Run runs: without it nobody indexes, and
	// WaitCurrent does not wait.
	running atomic.Bool

	// saved and savedAt are the position last written and when; only
	// Run's goroutine touches them.
	saved   int64
	savedAt time.Time

	mu       sync.Mutex
	pos      int64
	loaded   bool
	advanced chan struct{} // closed and replaced whenever pos moves
}

// New returns a tailer recording its position under name; current is how
// far the timeline is committed.
func New(db *storage.DB, name string, current func() int64, log logrus.FieldLogger, funcs ...Func) *Tailer {
	return &Tailer{db: db, name: name, current: current, funcs: funcs, log: log,
		wake: make(chan struct{}, 1), advanced: make(chan struct{})}
}

// Notify tells the tailer that events were committed. It never blocks, so
// it may be called from a room's sequencer (as a room listener).
func (t *Tailer) Notify() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Run indexes until ctx ends.
func (t *Tailer) Run(ctx context.Context) {
	t.running.Store(true)
	defer t.running.Store(false)
	defer t.savePosition(context.Background())
	ticker := time.NewTicker(retryDelay)
	defer ticker.Stop()
	history := true
	for {
		if err := t.catchUp(ctx); err != nil && ctx.Err() == nil {
			t.log.WithError(err).Error("indexing events failed; retrying")
		}
		if history {
			if err := t.catchUpHistory(ctx); err != nil && ctx.Err() == nil {
				t.log.WithError(err).Error("indexing backfilled events failed; retrying")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
			history = false
		case <-ticker.C:
			// Backfilled events are not announced; and a failed batch is
			// retried.
			history = true
		}
	}
}

// saveEvery is how often the position is written while indexing: since
// indexing is idempotent, a crash costs at most this much work again, and
// a busy server is spared a write per batch.
const saveEvery = time.Second

// catchUp indexes everything committed so far.
func (t *Tailer) catchUp(ctx context.Context) error {
	pos, err := t.position(ctx)
	if err != nil {
		return err
	}
	for {
		target := t.current()
		if pos >= target {
			return nil
		}
		rows, err := t.db.EventsInStreamRange(ctx, pos, target, batchSize)
		if err != nil {
			return err
		}
		for _, f := range t.funcs {
			if err := f(ctx, rows); err != nil {
				return err
			}
		}
		next := target
		if len(rows) == batchSize {
			next = rows[len(rows)-1].StreamPos
		}
		pos = next
		t.advance(pos)
		if time.Since(t.savedAt) >= saveEvery {
			if err := t.savePosition(ctx); err != nil {
				return err
			}
		}
	}
}

// savePosition writes the position reached, if it moved.
func (t *Tailer) savePosition(ctx context.Context) error {
	t.mu.Lock()
	pos, loaded := t.pos, t.loaded
	t.mu.Unlock()
	if !loaded || pos == t.saved {
		return nil
	}
	if err := t.db.SetIndexPosition(ctx, t.name, pos); err != nil {
		return err
	}
	t.saved, t.savedAt = pos, time.Now()
	return nil
}

// catchUpHistory indexes backfilled history: events stored below every
// position allocated before them, so below anything indexed so far. They
// are not announced to listeners; the periodic look finds them.
func (t *Tailer) catchUpHistory(ctx context.Context) error {
	name := t.name + ".history"
	low, err := t.db.IndexPosition(ctx, name)
	if err != nil {
		return err
	}
	for {
		rows, err := t.db.EventsBelowStreamPos(ctx, low, batchSize)
		if err != nil || len(rows) == 0 {
			return err
		}
		slices.Reverse(rows) // oldest first, as the index functions expect
		for _, f := range t.funcs {
			if err := f(ctx, rows); err != nil {
				return err
			}
		}
		low = rows[0].StreamPos
		if err := t.db.SetIndexPosition(ctx, name, low); err != nil {
			return err
		}
	}
}

// position is how far the index got, read from the database the first time.
func (t *Tailer) position(ctx context.Context) (int64, error) {
	t.mu.Lock()
	pos, loaded := t.pos, t.loaded
	t.mu.Unlock()
	if loaded {
		return pos, nil
	}
	pos, err := t.db.IndexPosition(ctx, t.name)
	if err != nil {
		return 0, err
	}
	t.saved, t.savedAt = pos, time.Now()
	t.advance(pos)
	return pos, nil
}

// advance records a new position and wakes WaitCurrent.
func (t *Tailer) advance(pos int64) {
	t.mu.Lock()
	t.pos, t.loaded = pos, true
	close(t.advanced)
	t.advanced = make(chan struct{})
	t.mu.Unlock()
}

// ErrBehind is returned by WaitCurrent when the index did not catch up in
// time.
var ErrBehind = errors.New("indexer: the index is behind the timeline")

// WaitCurrent waits, at most timeout, until every event committed when it
// was called is indexed: so that a user finds what they just sent. It does
// not wait when the tailer is not running.
func (t *Tailer) WaitCurrent(ctx context.Context, timeout time.Duration) error {
	if !t.running.Load() {
		return ErrBehind
	}
	target := t.current()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		t.mu.Lock()
		done, ch := t.loaded && t.pos >= target, t.advanced
		t.mu.Unlock()
		if done {
			return nil
		}
		t.Notify()
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrBehind
		}
	}
}
