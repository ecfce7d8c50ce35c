package rooms

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/stateres"
	"github.com/parley-chat/parley/storage"
)

// Limits on the work one remote event may cause, so that a malicious or
// broken server cannot make us fetch without end.
const (
	maxAuthFetch     = 200 // auth events fetched for one event
	maxMissingEvents = 20  // events asked for to fill a gap in prev_events
	maxStateFetch    = 5000
	// maxGapDepth bounds how many times gap filling may nest (an event
	// fetched to fill a gap has a gap of its own...): up to
	// maxGapDepth*maxMissingEvents events are fetched for one received
	// event, which covers a server catching up after a long outage; past
	// that the state at the gap is asked for instead.
	maxGapDepth = 50
)

// gapDepthKey carries the nesting of gap filling in the context.
type gapDepthKey struct{}

// ErrRejected wraps the reason a remote event failed the authorization rules.
var ErrRejected = errors.New("event rejected")

// Ingest checks a remote event (already checked for format, hashes and
// signatures by the federation layer) and persists it: against its auth
// events, against the state before it, and against the room's current
// state (failing only the last, it is soft-failed: kept but never shown).
// Missing auth events, prev events and state are fetched from origin.
func (e *Engine) Ingest(ctx context.Context, origin string, ev *event.Event) error {
	r, err := e.room(ctx, ev.RoomID())
	if err != nil {
		return err
	}
	if !e.ServerAllowed(ctx, ev.RoomID(), origin) {
		return wrapf(ErrForbidden, "the room's server ACL denies %s", origin)
	}
	req := &request{ctx: ctx, ingest: ev, origin: origin, done: make(chan result, 1)}
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return (<-req.done).err
}

// eventSource loads events for checks and state resolution: from the
// database (timeline or outliers), then from the fetched ones.
type eventSource struct {
	ctx     context.Context
	e       *Engine
	version event.RoomVersion
	cache   map[string]*event.Event
}

func (r *room) newSource(ctx context.Context) *eventSource {
	return &eventSource{ctx: ctx, e: r.e, version: r.version, cache: map[string]*event.Event{}}
}

// Event implements stateres.EventProvider.
func (s *eventSource) Event(id string) (*event.Event, error) {
	if ev, ok := s.cache[id]; ok {
		return ev, nil
	}
	_, js, k, err := s.e.db.AnyEventJSON(s.ctx, id)
	if err != nil {
		return nil, err
	}
	if k != storage.InTimeline && k != storage.Outlier {
		return nil, fmt.Errorf("%w: %s", stateres.ErrMissingEvent, id)
	}
	ev, err := event.NewEventFromTrustedJSONWithEventID(id, []byte(js), s.version)
	if err != nil {
		return nil, err
	}
	s.cache[id] = ev
	return ev, nil
}

// IsRejected implements stateres.RejectionProvider.
func (s *eventSource) IsRejected(id string) bool { return s.e.db.IsRejected(s.ctx, id) }

func (r *room) ingest(ctx context.Context, origin string, ev *event.Event) error {
	if ev.RoomID() != r.id {
		return wrapf(ErrBadRequest, "event %s is not in room %s", ev.EventID(), r.id)
	}
	_, _, known, err := r.e.db.AnyEventJSON(ctx, ev.EventID())
	if err != nil {
		return err
	}
	switch known {
	case storage.InTimeline, storage.Outlier:
		return nil // already have it
	case storage.Rejected:
		return wrapf(ErrRejected, "event %s was rejected before", ev.EventID())
	}
	src := r.newSource(ctx)
	budget := maxAuthFetch
	if err := r.checkAuthEvents(ctx, origin, ev, src, &budget); err != nil {
		return r.reject(ctx, ev, err)
	}

	stateBefore, err := r.stateBefore(ctx, origin, ev, src)
	if err != nil {
		return err
	}
	if err := authrules.Allowed(ev, stateView{base: r.materialise(stateBefore, src)}); err != nil {
		return r.reject(ctx, ev, err)
	}
	// Soft fail: allowed by history, but not by the room as it is now
	// (say, a ban we know of and the sender's server did not).
	r.mu.RLock()
	current := r.state
	r.mu.RUnlock()
	if err := authrules.Allowed(ev, stateView{base: current}); err != nil {
		r.e.cfg.Log.WithField("event_id", ev.EventID()).WithError(err).Info("soft-failing remote event")
		return storage.InsertOutlier(ctx, r.e.db, ev.EventID(), r.id, string(ev.JSON()), true)
	}
	return r.persistRemote(ctx, ev, stateBefore, src)
}

// reject records a rejected event and reports it.
func (r *room) reject(ctx context.Context, ev *event.Event, reason error) error {
	if errors.Is(reason, authrules.ErrNotAllowed) || errors.Is(reason, ErrRejected) {
		if err := storage.InsertRejected(ctx, r.e.db, ev.EventID(), r.id, reason.Error()); err != nil {
			return err
		}
		return fmt.Errorf("%w: %v", ErrRejected, reason)
	}
	return reason
}

// checkAuthEvents makes sure ev's auth events are held (fetching missing
// ones from origin and checking them in turn), then checks ev against them.
func (r *room) checkAuthEvents(ctx context.Context, origin string, ev *event.Event, src *eventSource, budget *int) error {
	// Auth events are usually current state, which is in memory: look
	// where the auth event selection says they should be before asking
	// the database.
	r.mu.RLock()
	if create := r.state[storage.StateKey{Type: "m.room.create"}]; create != nil {
		src.cache[create.EventID()] = create
	}
	for _, k := range authrules.AuthEventsNeededFor(ev) {
		if cur := r.state[storage.StateKey{Type: k.EventType, StateKey: k.StateKey}]; cur != nil {
			if _, ok := src.cache[cur.EventID()]; !ok && contains(ev.AuthEventIDs(), cur.EventID()) {
				src.cache[cur.EventID()] = cur
			}
		}
	}
	r.mu.RUnlock()
	var authEvs []*event.Event
	for _, id := range ev.AuthEventIDs() {
		a, err := r.authEvent(ctx, origin, id, src, budget)
		if err != nil {
			return err
		}
		authEvs = append(authEvs, a)
	}
	if err := authrules.CheckAuthEvents(ev, authEvs); err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	auth := authrules.NewStateMap(authEvs...)
	if r.info.CreateEventIsRoomID && ev.Type() != "m.room.create" {
		// Room version 12 events never list the create event; it is
		// implied by the room ID.
		create, err := src.Event("$" + r.id[1:])
		if err != nil {
			return err
		}
		auth = authrules.NewStateMap(append(authEvs, create)...)
	}
	return authrules.Allowed(ev, auth)
}

// authEvent returns an auth event, fetching and checking it (as an outlier)
// when we do not hold it.
func (r *room) authEvent(ctx context.Context, origin, id string, src *eventSource, budget *int) (*event.Event, error) {
	if ev, err := src.Event(id); err == nil {
		return ev, nil
	}
	if r.e.db.IsRejected(ctx, id) {
		return nil, wrapf(ErrRejected, "auth event %s was rejected", id)
	}
	if r.e.fed == nil || *budget <= 0 {
		return nil, fmt.Errorf("rooms: missing auth event %s", id)
	}
	*budget--
	ev, err := r.e.fed.FetchEvent(ctx, origin, r.version, id)
	if err != nil {
		return nil, fmt.Errorf("rooms: fetching auth event %s: %w", id, err)
	}
	if ev.EventID() != id || ev.RoomID() != r.id {
		return nil, fmt.Errorf("rooms: %s answered with the wrong event for %s", origin, id)
	}
	if err := r.checkAuthEvents(ctx, origin, ev, src, budget); err != nil {
		_ = storage.InsertRejected(ctx, r.e.db, id, r.id, err.Error())
		return nil, wrapf(ErrRejected, "auth event %s: %v", id, err)
	}
	if err := storage.InsertOutlier(ctx, r.e.db, id, r.id, string(ev.JSON()), false); err != nil {
		return nil, err
	}
	src.cache[id] = ev
	return ev, nil
}

// stateBefore computes the state before ev from its prev events: the state
// after each (fetching missing ones, or asking origin for the state when a
// gap cannot be filled), resolved together when there are several.
func (r *room) stateBefore(ctx context.Context, origin string, ev *event.Event, src *eventSource) (storage.StateMap, error) {
	var sets []storage.StateMap
	var missing []string
	for _, prev := range ev.PrevEventIDs() {
		row, err := r.e.db.GetEvent(ctx, prev)
		if errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, prev)
			continue
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
	if len(missing) > 0 {
		if r.e.fed == nil {
			return nil, fmt.Errorf("rooms: missing prev events %v", missing)
		}
		r.fillGap(ctx, origin, ev)
		for _, prev := range missing {
			st, err := r.stateAfterRemote(ctx, origin, prev, src)
			if err != nil {
				return nil, err
			}
			sets = append(sets, st)
		}
	}
	if len(sets) == 0 {
		return storage.StateMap{}, nil // the create event
	}
	if len(sets) == 1 {
		return sets[0], nil
	}
	return r.resolve(sets, src)
}

// fillGap asks origin for the events between our forward extremities and
// ev, and ingests those it sends, oldest first. Failing is fine: the state
// is then asked for instead.
func (r *room) fillGap(ctx context.Context, origin string, ev *event.Event) {
	depth, _ := ctx.Value(gapDepthKey{}).(int)
	if depth >= maxGapDepth {
		return
	}
	ctx = context.WithValue(ctx, gapDepthKey{}, depth+1)
	r.mu.RLock()
	earliest := make([]string, len(r.extremities))
	for i, x := range r.extremities {
		earliest[i] = x.EventID()
	}
	r.mu.RUnlock()
	evs, err := r.e.fed.MissingEvents(ctx, origin, r.version, r.id, earliest, []string{ev.EventID()}, maxMissingEvents)
	if err != nil {
		r.e.cfg.Log.WithError(err).WithField("room_id", r.id).Info("get_missing_events failed")
		return
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Depth() < evs[j].Depth() })
	for _, m := range evs {
		if m.RoomID() != r.id || m.EventID() == ev.EventID() {
			continue
		}
		if err := r.ingest(ctx, origin, m); err != nil {
			r.e.cfg.Log.WithError(err).WithField("event_id", m.EventID()).Info("missing event not accepted")
		}
	}
}

// stateAfterRemote is the state after an event we do not have in the
// timeline (or had just fetched): the state before it from origin's
// /state_ids, plus the event itself.
func (r *room) stateAfterRemote(ctx context.Context, origin, eventID string, src *eventSource) (storage.StateMap, error) {
	if row, err := r.e.db.GetEvent(ctx, eventID); err == nil {
		return r.e.StateAtEvent(ctx, row) // the gap was filled
	}
	budget := maxStateFetch
	st, err := r.stateBeforeFrom(ctx, origin, eventID, src, &budget)
	if err != nil {
		return nil, err
	}
	prev, err := r.authEvent(ctx, origin, eventID, src, &budget)
	if err != nil {
		return nil, err
	}
	if sk := prev.StateKey(); sk != nil {
		st[storage.StateKey{Type: prev.Type(), StateKey: *sk}] = eventID
	}
	return st, nil
}

// stateBeforeFrom asks server for the state before an event (/state_ids)
// and holds every event of it and of its auth chain, fetched and checked
// as outliers where missing, within budget.
func (r *room) stateBeforeFrom(ctx context.Context, server, eventID string, src *eventSource, budget *int) (storage.StateMap, error) {
	stateIDs, authIDs, err := r.e.fed.StateIDs(ctx, server, r.id, eventID)
	if err != nil {
		return nil, fmt.Errorf("rooms: state before %s from %s: %w", eventID, server, err)
	}
	if len(stateIDs)+len(authIDs) > maxStateFetch {
		return nil, fmt.Errorf("rooms: %s sent a state of %d events, over the limit", server, len(stateIDs))
	}
	for _, id := range authIDs {
		if _, err := r.authEvent(ctx, server, id, src, budget); err != nil {
			return nil, err
		}
	}
	st := storage.StateMap{}
	for _, id := range stateIDs {
		sev, err := r.authEvent(ctx, server, id, src, budget)
		if err != nil {
			return nil, err
		}
		if sev.StateKey() == nil {
			return nil, fmt.Errorf("rooms: %s listed non-state event %s as state", server, id)
		}
		st[storage.StateKey{Type: sev.Type(), StateKey: *sev.StateKey()}] = id
	}
	return st, nil
}

// resolve runs state resolution over state sets.
func (r *room) resolve(sets []storage.StateMap, src *eventSource) (storage.StateMap, error) {
	in := make([]stateres.StateMap, len(sets))
	for i, s := range sets {
		m := make(stateres.StateMap, len(s))
		for k, v := range s {
			m[stateres.StateKey{Type: k.Type, StateKey: k.StateKey}] = v
		}
		in[i] = m
	}
	out, err := stateres.Resolve(r.info, in, nil, src)
	if err != nil {
		return nil, err
	}
	res := make(storage.StateMap, len(out))
	for k, v := range out {
		res[storage.StateKey{Type: k.Type, StateKey: k.StateKey}] = v
	}
	return res, nil
}

// materialise loads the events of a state map. Most of a state map is
// usually the room's current state, which is in memory: only the rest is
// read from the database (one query per event otherwise, for every event
// received).
func (r *room) materialise(st storage.StateMap, src *eventSource) map[storage.StateKey]*event.Event {
	out := make(map[storage.StateKey]*event.Event, len(st))
	var rest []storage.StateKey
	r.mu.RLock()
	for k, id := range st {
		if ev := r.state[k]; ev != nil && ev.EventID() == id {
			out[k] = ev
		} else {
			rest = append(rest, k)
		}
	}
	r.mu.RUnlock()
	for _, k := range rest {
		if ev, err := src.Event(st[k]); err == nil {
			out[k] = ev
		}
	}
	return out
}

// persistRemote writes an accepted remote event into the timeline and
// moves the room's current state: when the event extends our only forward
// extremity the new state is simply the state after it; otherwise the
// state after it is resolved with the current state.
func (r *room) persistRemote(ctx context.Context, ev *event.Event, stateBefore storage.StateMap, src *eventSource) error {
	e := r.e
	r.mu.RLock()
	oldState := r.state
	oldSnapshot := r.snapshot
	oldExt := r.extremities
	r.mu.RUnlock()
	current := make(storage.StateMap, len(oldState))
	for k, v := range oldState {
		current[k] = v.EventID()
	}
	after := copyMap(stateBefore)
	if sk := ev.StateKey(); sk != nil {
		after[storage.StateKey{Type: ev.Type(), StateKey: *sk}] = ev.EventID()
	}
	prevs := map[string]bool{}
	for _, p := range ev.PrevEventIDs() {
		prevs[p] = true
	}
	var newExt []*event.Event
	extendsHead := true
	for _, x := range oldExt {
		if prevs[x.EventID()] {
			continue
		}
		newExt = append(newExt, x)
		extendsHead = false
	}
	newExt = append(newExt, ev)
	newState := after
	if !extendsHead {
		// State resolution may need the event itself, which is not stored yet.
		src.cache[ev.EventID()] = ev
		var err error
		if newState, err = r.resolve([]storage.StateMap{current, after}, src); err != nil {
			return err
		}
	}
	pos := e.cfg.Positions.Allocate(1)
	defer e.cfg.Positions.Done(pos)
	var headSnapshot int64
	err := e.db.WithTx(ctx, func(tx *storage.Tx) error {
		beforeSnap, err := snapshotFor(ctx, e.db, tx, r.id, oldSnapshot, current, stateBefore)
		if err != nil {
			return err
		}
		row := &storage.EventRow{EventID: ev.EventID(), RoomID: r.id, Type: ev.Type(), StateKey: ev.StateKey(), Sender: ev.Sender(),
			Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), StreamPos: pos, StateBefore: beforeSnap, JSON: string(ev.JSON())}
		if err := storage.InsertEvents(ctx, tx, []*storage.EventRow{row}); err != nil {
			return err
		}
		if headSnapshot, err = snapshotFor(ctx, e.db, tx, r.id, oldSnapshot, current, newState); err != nil {
			return err
		}
		// Memberships follow the current state.
		for k, id := range newState {
			if k.Type != "m.room.member" || current[k] == id {
				continue
			}
			mev, err := src.Event(id)
			if id == ev.EventID() {
				mev, err = ev, nil
			}
			if err != nil {
				return err
			}
			m, _ := mev.Membership()
			if err := storage.SetMembership(ctx, tx, storage.Membership{RoomID: r.id, UserID: k.StateKey, Membership: m, EventID: id, StreamPos: pos}); err != nil {
				return err
			}
		}
		if target := ev.Redacts(); target != "" {
			if err := storage.MarkRedacted(ctx, tx, target, ev.EventID()); err != nil {
				return err
			}
		}
		ids := make([]string, len(newExt))
		depth := int64(0)
		for i, x := range newExt {
			ids[i] = x.EventID()
			depth = max(depth, x.Depth())
		}
		return storage.SetRoomHead(ctx, tx, r.id, headSnapshot, depth, ids)
	})
	if err != nil {
		return err
	}
	loaded := r.materialise(newState, src)
	if sk := ev.StateKey(); sk != nil && newState[storage.StateKey{Type: ev.Type(), StateKey: *sk}] == ev.EventID() {
		loaded[storage.StateKey{Type: ev.Type(), StateKey: *sk}] = ev
	}
	r.mu.Lock()
	r.state, r.snapshot, r.extremities = loaded, headSnapshot, newExt
	r.depth = max(r.depth, ev.Depth())
	r.mu.Unlock()
	r.e.emit(ev, pos)
	r.notify([]built{{ev: ev}}, pos)
	return nil
}

// snapshotFor returns a snapshot ID for state: base's ID when equal to the
// base state, otherwise a new delta snapshot on top of base.
func snapshotFor(ctx context.Context, db *storage.DB, tx *storage.Tx, roomID string, baseID int64, base, state storage.StateMap) (int64, error) {
	changes := storage.StateMap{}
	for k, v := range state {
		if base[k] != v {
			changes[k] = v
		}
	}
	for k := range base {
		if _, ok := state[k]; !ok {
			changes[k] = "" // removed
		}
	}
	if len(changes) == 0 {
		return baseID, nil
	}
	return db.InsertSnapshot(ctx, tx, roomID, baseID, changes)
}

func copyMap(m storage.StateMap) storage.StateMap {
	out := make(storage.StateMap, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
