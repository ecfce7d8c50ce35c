package rooms

import (
	"context"
	"errors"
	"sort"

	"github.com/parley-chat/parley/storage"
)

// EventForUser returns one event of a room if the user may see it.
func (e *Engine) EventForUser(ctx context.Context, viewer Viewer, roomID, eventID string) (*ClientEvent, error) {
	row, err := e.db.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && row.RoomID != roomID) {
		return nil, wrapf(ErrNotFound, "event not found")
	}
	if err != nil {
		return nil, err
	}
	vc, err := e.newVisibilityChecker(ctx, roomID, viewer.UserID)
	if err != nil {
		return nil, err
	}
	if ok, err := vc.visible(ctx, row); err != nil {
		return nil, err
	} else if !ok {
		// Not M_FORBIDDEN: the spec asks that the existence of an event
		// the user may not see is not revealed.
		return nil, wrapf(ErrNotFound, "event not found")
	}
	// Through FormatRows, so that the event gets its bundled aggregations.
	evs, err := e.FormatRows(ctx, []*storage.EventRow{row}, viewer)
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// MessagesRequest is a /messages request. Positions are stream tokens: a
// token T lies between stream positions T and T+1.
type MessagesRequest struct {
	Viewer    Viewer
	RoomID    string
	From      int64 // -1: the end of the timeline when backwards, its start when forwards
	To        int64 // -1: no bound
	Backwards bool
	Limit     int
	// Match filters events before the limit is applied (nil keeps all).
	Match func(*storage.EventRow) bool
}

// maxBackfillsPerPage bounds the backfill requests one /messages page
// makes, so that a page whose events the user may not see cannot make it
// fetch without end.
const maxBackfillsPerPage = 3

// MessagesResponse is a page of events with the tokens around it.
type MessagesResponse struct {
	Chunk []*ClientEvent
	Start int64
	End   int64 // -1 when there is nothing further
}

// Messages pages through a room's timeline, returning only events the user
// may see.
func (e *Engine) Messages(ctx context.Context, req MessagesRequest) (*MessagesResponse, error) {
	if _, err := e.room(ctx, req.RoomID); err != nil {
		return nil, err
	}
	vc, err := e.newVisibilityChecker(ctx, req.RoomID, req.Viewer.UserID)
	if err != nil {
		return nil, err
	}
	if vc.currentlyJoin == false {
		// Users who are not joined may still read what visibility allows
		// (world_readable rooms, or their past); anyone else learns nothing.
		m, _ := e.Membership(ctx, req.RoomID, req.Viewer.UserID)
		if m == "" && !e.worldReadable(ctx, req.RoomID) {
			return nil, wrapf(ErrForbidden, "you are not a member of this room")
		}
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 1000)
	current := e.cfg.Positions.Current()
	// Positions below 0 are backfilled history (backfill.go), so only -1
	// means "no token".
	from := req.From
	if from == -1 || from > current {
		if req.Backwards || from > current {
			from = current
		} else {
			from = minPos
		}
	}
	resp := &MessagesResponse{Start: from, End: -1}
	cursor := from
	backfills := 0
	for len(resp.Chunk) < limit {
		var rows []*storage.EventRow
		var err error
		want := limit - len(resp.Chunk)
		if req.Backwards {
			lower := int64(minPos)
			if req.To != -1 {
				lower = req.To
			}
			rows, err = e.db.RoomEvents(ctx, req.RoomID, lower, cursor, want, true)
			if err == nil && len(rows) < want && req.To == -1 && backfills < maxBackfillsPerPage {
				// The start of what we hold: ask the room's other servers
				// for what came before, then read again. (/sync always
				// gives a lower bound, so it never gets here.)
				backfills++
				n, berr := e.backfill(ctx, req.RoomID, want-len(rows))
				if berr != nil {
					e.cfg.Log.WithError(berr).WithField("room_id", req.RoomID).Info("backfill failed")
				}
				if n > 0 {
					rows, err = e.db.RoomEvents(ctx, req.RoomID, lower, cursor, want, true)
				}
			}
		} else {
			upper := current
			if req.To != -1 && req.To < upper {
				upper = req.To
			}
			rows, err = e.db.RoomEvents(ctx, req.RoomID, cursor, upper, want, false)
		}
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			return resp, nil
		}
		last := rows[len(rows)-1].StreamPos
		if req.Backwards {
			cursor = last - 1
		} else {
			cursor = last
		}
		resp.End = cursor
		if req.Match != nil {
			kept := rows[:0:0]
			for _, r := range rows {
				if req.Match(r) {
					kept = append(kept, r)
				}
			}
			rows = kept
		}
		if rows, err = vc.filter(ctx, rows); err != nil {
			return nil, err
		}
		evs, err := e.FormatRows(ctx, rows, req.Viewer)
		if err != nil {
			return nil, err
		}
		resp.Chunk = append(resp.Chunk, evs...)
		if len(rows) < want && !(req.Match != nil) {
			// Fewer rows than asked for without filtering means the end.
			break
		}
	}
	return resp, nil
}

func (e *Engine) worldReadable(ctx context.Context, roomID string) bool {
	ev, err := e.CurrentStateEvent(ctx, roomID, "m.room.history_visibility", "")
	if err != nil || ev == nil {
		return false
	}
	return e.contentString(ctx, ev.EventID(), "history_visibility") == "world_readable"
}

// StateForUser returns the room state a user may see: the current state
// while joined (or when the room is world readable), the state when they
// left for former members, and ErrForbidden otherwise.
func (e *Engine) StateForUser(ctx context.Context, userID, roomID string) (storage.StateMap, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	m, err := e.db.GetMembership(ctx, roomID, userID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if (m != nil && m.Membership == "join") || e.worldReadable(ctx, roomID) {
		r.mu.RLock()
		defer r.mu.RUnlock()
		out := make(storage.StateMap, len(r.state))
		for k, ev := range r.state {
			out[k] = ev.EventID()
		}
		return out, nil
	}
	if m != nil && (m.Membership == "leave" || m.Membership == "ban") {
		// The state as it was when they left, including their leave.
		row, err := e.db.GetEvent(ctx, m.EventID)
		if err != nil {
			return nil, err
		}
		snap, err := e.db.LoadSnapshot(ctx, row.StateBefore)
		if err != nil {
			return nil, err
		}
		out := make(storage.StateMap, len(snap)+1)
		for k, v := range snap {
			out[k] = v
		}
		out[storage.StateKey{Type: "m.room.member", StateKey: userID}] = m.EventID
		return out, nil
	}
	return nil, wrapf(ErrForbidden, "you are not a member of this room")
}

// StateEvents loads and formats the events of a state map, sorted by type
// and state key for stable output.
func (e *Engine) StateEvents(ctx context.Context, st storage.StateMap, viewer Viewer) ([]*ClientEvent, error) {
	keys := make([]storage.StateKey, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Type != keys[j].Type {
			return keys[i].Type < keys[j].Type
		}
		return keys[i].StateKey < keys[j].StateKey
	})
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = st[k]
	}
	ordered, err := e.db.GetEventsOrdered(ctx, ids)
	if err != nil {
		return nil, err
	}
	return e.FormatRows(ctx, ordered, viewer)
}

// StateAtEvent is the state after an event (its state before plus itself
// if it is a state event).
func (e *Engine) StateAtEvent(ctx context.Context, row *storage.EventRow) (storage.StateMap, error) {
	snap, err := e.db.LoadSnapshot(ctx, row.StateBefore)
	if err != nil {
		return nil, err
	}
	if row.StateKey == nil {
		return snap, nil
	}
	out := make(storage.StateMap, len(snap)+1)
	for k, v := range snap {
		out[k] = v
	}
	out[storage.StateKey{Type: row.Type, StateKey: *row.StateKey}] = row.EventID
	return out, nil
}

// DB exposes the engine's storage to the sync assembler.
func (e *Engine) DB() *storage.DB { return e.db }

// StateAtPosForUser is the room's state after its last event at or before
// stream position pos, if the user could see that event.
func (e *Engine) StateAtPosForUser(ctx context.Context, userID, roomID string, pos int64) (storage.StateMap, error) {
	row, err := e.db.LastEventBefore(ctx, roomID, pos)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.StateMap{}, nil
	}
	if err != nil {
		return nil, err
	}
	vc, err := e.newVisibilityChecker(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if ok, err := vc.visible(ctx, row); err != nil || !ok {
		return nil, errors.Join(err, wrapf(ErrForbidden, "you could not see the room at that point"))
	}
	return e.StateAtEvent(ctx, row)
}

// ClosestVisibleEvent finds the event nearest to ts (at or after it when
// forwards, at or before it otherwise) that the user may see.
func (e *Engine) ClosestVisibleEvent(ctx context.Context, viewer Viewer, roomID string, ts int64, forwards bool) (*ClientEvent, error) {
	if _, err := e.StateForUser(ctx, viewer.UserID, roomID); err != nil {
		return nil, err
	}
	vc, err := e.newVisibilityChecker(ctx, roomID, viewer.UserID)
	if err != nil {
		return nil, err
	}
	// Step over events the user may not see, a bounded number of times.
	for i := 0; i < 100; i++ {
		row, err := e.db.ClosestEvent(ctx, roomID, ts, forwards)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, wrapf(ErrNotFound, "no event found")
		}
		if err != nil {
			return nil, err
		}
		if ok, err := vc.visible(ctx, row); err != nil {
			return nil, err
		} else if ok {
			return e.formatRow(ctx, row, viewer, false)
		}
		if forwards {
			ts = row.OriginServerTS + 1
		} else {
			ts = row.OriginServerTS - 1
		}
	}
	return nil, wrapf(ErrNotFound, "no event found")
}
