package push

import (
	"context"
	"math"
	"time"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Events are evaluated from an in-memory queue, so that sending never
// waits for push. What a stop or a crash leaves unevaluated is caught up
// at the next start: a watermark in the database says up to where every
// event was evaluated, and Start evaluates the events after it again.
// Evaluating an event twice changes nothing (a notification is recorded
// once, receipts only move forward, gateways only hear of new
// notifications), so the watermark may lag; it does, on purpose, by
// watermarkLag, because the room engine hands an event over a moment
// after committing it, and a lower position may commit after a higher one
// (in another room) and so be handed over later.

const (
	// watermarkEvery is how often the watermark is considered.
	watermarkEvery = 2 * time.Second
	// watermarkLag is how old a candidate must be before it is stored.
	watermarkLag = 5 * time.Second
	// catchUpBatch is how many events catch-up reads at a time.
	catchUpBatch = 500
	// catchUpQueue is the queue length above which catch-up waits.
	catchUpQueue = maxQueue / 2
)

// candidate is the highest position at or below which everything handed
// over so far has been evaluated.
func (s *Service) candidate() int64 {
	low := int64(math.MaxInt64)
	for _, sh := range s.shards {
		sh.mu.Lock()
		for _, j := range sh.queue {
			low = min(low, j.pos)
		}
		if sh.inflight > 0 {
			low = min(low, sh.inflight)
		}
		sh.mu.Unlock()
	}
	c := s.maxSeen.Load()
	if low != math.MaxInt64 {
		c = min(c, low-1)
	}
	return c
}

// watermarkLoop stores the candidate of watermarkLag ago, every
// watermarkEvery, once catch-up is done.
func (s *Service) watermarkLoop(stop <-chan struct{}, catchUpDone <-chan struct{}) {
	select {
	case <-catchUpDone:
	case <-stop:
		return
	}
	type mark struct {
		at  time.Time
		pos int64
	}
	var history []mark
	t := time.NewTicker(watermarkEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			history = append(history, mark{now, s.candidate()})
			var ready int64 = -1
			for len(history) > 0 && now.Sub(history[0].at) >= watermarkLag {
				ready = history[0].pos
				history = history[1:]
			}
			if ready <= 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.db.SetPushEvaluated(ctx, ready); err != nil {
				s.log.WithError(err).Warn("push: storing the evaluation watermark")
			}
			cancel()
		}
	}
}

// catchUp evaluates the events after the stored watermark up to upTo, the
// newest one at start: those a stop or crash left unevaluated, and some
// already evaluated.
func (s *Service) catchUp(stop <-chan struct{}, upTo int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	from, err := s.db.StreamPosition(ctx, storage.StreamPushEvaluated)
	if err != nil {
		s.log.WithError(err).Warn("push: reading the evaluation watermark; nothing caught up")
		return
	}
	s.maxSeen.Store(max(s.maxSeen.Load(), from))
	versions := map[string]event.RoomVersion{}
	n := 0
	for from < upTo {
		rows, err := s.db.EventsAfter(ctx, from, catchUpBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.WithError(err).Warn("push: catching up")
			}
			return
		}
		if len(rows) == 0 {
			break
		}
		for _, row := range rows {
			from = row.StreamPos
			if row.StreamPos > upTo {
				break
			}
			if row.RedactedBy != "" {
				continue // nothing left to notify of
			}
			v, ok := versions[row.RoomID]
			if !ok {
				if v, err = s.cfg.Rooms.RoomVersion(ctx, row.RoomID); err != nil {
					continue
				}
				versions[row.RoomID] = v
			}
			ev, err := event.NewEventFromTrustedJSONWithEventID(row.EventID, []byte(row.JSON), v)
			if err != nil {
				continue
			}
			for s.queued() > catchUpQueue {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			s.OnEvent(ev, row.StreamPos)
			n++
		}
	}
	if n > 0 {
		s.log.WithField("events", n).Info("push: caught up with events left unevaluated")
	}
}

// queued is the length of the longest shard queue.
func (s *Service) queued() int {
	n := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		n = max(n, len(sh.queue))
		sh.mu.Unlock()
	}
	return n
}
