package rooms

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Backfill: history from before this server joined a room, fetched from a
// server in the room when a client pages back past the start of what we
// hold.
//
// Backfilled events go into the timeline below every stream position ever
// allocated: negative positions, lower for older events, each with the
// state before it. So /messages, /context and the visibility rules treat
// them like any other event, while /sync, which reads only positions after
// its since token (never negative), never sees them, and nothing is
// notified, pushed or sent on: they are history, not news. The room's head
// (current state, forward extremities, memberships) is left alone.

// Limits on one backfill, so that a client paging back costs a bounded
// amount of federation traffic.
const (
	// backfillScan is how many of the room's earliest events are looked
	// at for prev events we lack.
	backfillScan = 20
	// maxBackfill is the most events asked for at once.
	maxBackfill = 100
	// maxBackfillServers is how many servers are tried.
	maxBackfillServers = 3
	// maxBackfillStateFetches bounds the /state_ids requests of one
	// backfill: one is needed for each event whose prev events we lack
	// (normally only the oldest of the batch).
	maxBackfillStateFetches = 5
)

// backfillMu serialises writing backfilled events: their positions are
// taken below the lowest one stored, which two writers must not both take.
// It is shared by the engines of a process (tests run several) so that
// backfilling stays in this file; backfills are rare enough to queue.
var backfillMu sync.Mutex

// backfillMisses remembers, for a while, where backfilling found nothing
// (history the server may not see, servers that are down), so that a
// client paging at the start of a room does not cost a federation request
// per page. Keyed by engine, room and backward extremities.
var backfillMisses sync.Map

// backfillRetryAfter is how long a miss is remembered.
const backfillRetryAfter = time.Minute

// backfill fetches up to limit events that precede the room's earliest
// timeline events from a server in the room, checks them as received
// events are checked (except against the current state: history cannot be
// soft-failed) and stores those that pass. It returns how many were
// stored; 0 when the history is complete or no server could help.
func (e *Engine) backfill(ctx context.Context, roomID string, limit int) (int, error) {
	if e.fed == nil {
		return 0, nil
	}
	r, err := e.room(ctx, roomID)
	if err != nil {
		return 0, err
	}
	backfillMu.Lock()
	defer backfillMu.Unlock()
	from, earliest, err := e.backwardExtremities(ctx, roomID)
	if err != nil || len(from) == 0 {
		return 0, err
	}
	missKey := fmt.Sprintf("%p|%s|%s", e, roomID, strings.Join(from, ","))
	if at, ok := backfillMisses.Load(missKey); ok && time.Since(at.(time.Time)) < backfillRetryAfter {
		return 0, nil
	}
	r.mu.RLock()
	servers := r.remoteServersLocked()
	r.mu.RUnlock()
	sort.Strings(servers) // a stable order: the same server answers the next page
	limit = min(max(limit, 1), maxBackfill)
	var errs []error
	for i, server := range servers {
		if i == maxBackfillServers {
			break
		}
		evs, err := e.fed.Backfill(ctx, server, r.version, roomID, from, limit)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		n, err := r.storeBackfill(ctx, server, evs, earliest)
		if err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
	backfillMisses.Store(missKey, time.Now())
	return 0, errors.Join(errs...)
}

// backwardExtremities are the prev events of the room's earliest timeline
// events that the timeline lacks: where backfilling goes on from. It also
// returns the earliest event, whose state the backfilled state is stored
// against. Nothing when the timeline starts at the room's creation.
func (e *Engine) backwardExtremities(ctx context.Context, roomID string) ([]string, *storage.EventRow, error) {
	rows, err := e.db.RoomEvents(ctx, roomID, minPos, maxPos, backfillScan, false)
	if err != nil || len(rows) == 0 {
		return nil, nil, err
	}
	if rows[0].Type == "m.room.create" {
		return nil, nil, nil
	}
	seen := map[string]bool{}
	var out []string
	for _, row := range rows {
		ev, err := e.parseRow(row)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range ev.PrevEventIDs() {
			if seen[p] {
				continue
			}
			seen[p] = true
			if _, err := e.db.GetEvent(ctx, p); errors.Is(err, storage.ErrNotFound) {
				out = append(out, p)
			} else if err != nil {
				return nil, nil, err
			}
		}
	}
	return out, rows[0], nil
}

// backfilled is an accepted backfilled event and the state around it.
type backfilled struct {
	ev          *event.Event
	stateBefore storage.StateMap
}

// storeBackfill checks events a server sent for backfill, oldest first, and
// stores those that pass below the lowest stream position.
func (r *room) storeBackfill(ctx context.Context, server string, evs []*event.Event, earliest *storage.EventRow) (int, error) {
	e := r.e
	// Oldest first, so that each event's prev events come before it.
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Depth() < evs[j].Depth() })
	src := r.newSource(ctx)
	stateAfter := map[string]storage.StateMap{} // accepted events of this batch
	seen := map[string]bool{}
	var accepted []backfilled
	stateFetches := 0
	budget := maxAuthFetch
	for _, ev := range evs {
		if ev.RoomID() != r.id || seen[ev.EventID()] {
			continue
		}
		seen[ev.EventID()] = true
		if _, err := e.db.GetEvent(ctx, ev.EventID()); err == nil {
			continue // already in the timeline
		} else if !errors.Is(err, storage.ErrNotFound) {
			return 0, err
		}
		if e.db.IsRejected(ctx, ev.EventID()) {
			continue
		}
		// An event we soft-failed when it arrived stays hidden: the server
		// may send it back as history because later events cite it.
		if soft, err := e.db.IsSoftFailed(ctx, ev.EventID()); err != nil {
			return 0, err
		} else if soft {
			continue
		}
		log := e.cfg.Log.WithField("event_id", ev.EventID()).WithField("room_id", r.id)
		if err := r.checkAuthEvents(ctx, server, ev, src, &budget); err != nil {
			log.WithError(r.reject(ctx, ev, err)).Info("backfilled event refused")
			continue
		}
		before, err := r.backfillStateBefore(ctx, server, ev, src, stateAfter, &stateFetches)
		if err != nil {
			log.WithError(err).Info("no state for a backfilled event; leaving it out")
			continue
		}
		if err := authrules.Allowed(ev, stateIDs{r: r, ids: before, src: src}); err != nil {
			log.WithError(r.reject(ctx, ev, err)).Info("backfilled event refused")
			continue
		}
		after := before
		if sk := ev.StateKey(); sk != nil {
			after = copyMap(before)
			after[storage.StateKey{Type: ev.Type(), StateKey: *sk}] = ev.EventID()
		}
		stateAfter[ev.EventID()] = after
		src.cache[ev.EventID()] = ev
		accepted = append(accepted, backfilled{ev: ev, stateBefore: before})
	}
	if len(accepted) == 0 {
		return 0, nil
	}
	base, err := e.db.LoadSnapshot(ctx, earliest.StateBefore)
	if err != nil {
		return 0, err
	}
	lowest, err := e.db.MinStreamPos(ctx)
	if err != nil {
		return 0, err
	}
	// Positions below every stored one and below -1 (the client API's "no
	// token"), oldest lowest.
	top := min(lowest, -1)
	first := top - int64(len(accepted))
	err = e.db.WithTx(ctx, func(tx *storage.Tx) error {
		rows := make([]*storage.EventRow, 0, len(accepted))
		snapID, snapState := earliest.StateBefore, base
		for i, b := range accepted {
			// Consecutive events mostly share their state: a snapshot is
			// written only where it changes, as a delta on the last one.
			id, err := snapshotFor(ctx, e.db, tx, r.id, snapID, snapState, b.stateBefore)
			if err != nil {
				return err
			}
			snapID, snapState = id, b.stateBefore
			ev := b.ev
			rows = append(rows, &storage.EventRow{EventID: ev.EventID(), RoomID: r.id, Type: ev.Type(), StateKey: ev.StateKey(),
				Sender: ev.Sender(), Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), StreamPos: first + int64(i),
				StateBefore: id, JSON: string(ev.JSON())})
		}
		if err := e.db.InsertEvents(ctx, tx, rows); err != nil {
			return err
		}
		for _, b := range accepted {
			if target := b.ev.Redacts(); target != "" {
				if err := storage.MarkRedacted(ctx, tx, target, b.ev.EventID()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(accepted), nil
}

// backfillStateBefore is the state before a backfilled event: resolved
// from the states after its prev events when we hold them all (in the
// timeline or earlier in the batch), else asked of the server.
func (r *room) backfillStateBefore(ctx context.Context, server string, ev *event.Event, src *eventSource, batch map[string]storage.StateMap, fetches *int) (storage.StateMap, error) {
	var sets []storage.StateMap
	for _, prev := range ev.PrevEventIDs() {
		if st, ok := batch[prev]; ok {
			sets = append(sets, st)
			continue
		}
		row, err := r.e.db.GetEvent(ctx, prev)
		if errors.Is(err, storage.ErrNotFound) {
			sets = nil
			break
		}
		if err != nil {
			return nil, err
		}
		st, err := r.e.StateAtEvent(ctx, row)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	switch {
	case len(ev.PrevEventIDs()) == 0:
		return storage.StateMap{}, nil // the create event
	case len(sets) == 1:
		return sets[0], nil
	case len(sets) > 1:
		return r.resolve(sets, src)
	}
	if *fetches >= maxBackfillStateFetches {
		return nil, errors.New("too many state requests for one backfill")
	}
	*fetches++
	budget := maxStateFetch
	return r.stateBeforeFrom(ctx, server, ev.EventID(), src, &budget)
}

// The whole range of stream positions, backfilled ones included.
const (
	minPos = -1 << 62
	maxPos = 1 << 62
)
