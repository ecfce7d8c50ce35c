package rooms

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync/atomic"

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
	return e.IngestBatch(ctx, origin, []*event.Event{ev})[0]
}

// IngestBatch ingests the PDUs of one transaction as Ingest does, with an
// error (or nil) for each. The events of each room are taken in the order
// given, each checked against the state the earlier ones leave, and those
// accepted are persisted together in one database transaction: one commit
// for the batch instead of one per event. Different rooms run in parallel.
func (e *Engine) IngestBatch(ctx context.Context, origin string, evs []*event.Event) []error {
	errs := make([]error, len(evs))
	type group struct {
		req *request
		idx []int // positions in evs
	}
	var groups []*group
	byRoom := map[string]*group{}
	for i, ev := range evs {
		g := byRoom[ev.RoomID()]
		if g == nil {
			g = &group{req: &request{ctx: ctx, origin: origin, done: make(chan result, 1)}}
			byRoom[ev.RoomID()] = g
			groups = append(groups, g)
		}
		g.req.ingest = append(g.req.ingest, ev)
		g.idx = append(g.idx, i)
	}
	fail := func(g *group, err error) {
		for _, i := range g.idx {
			errs[i] = err
		}
	}
	var queued []*group
	for _, g := range groups {
		roomID := g.req.ingest[0].RoomID()
		r, err := e.room(ctx, roomID)
		if err != nil {
			fail(g, err)
			continue
		}
		if !e.ServerAllowed(ctx, roomID, origin) {
			fail(g, wrapf(ErrForbidden, "the room's server ACL denies %s", origin))
			continue
		}
		select {
		case r.reqs <- g.req:
			queued = append(queued, g)
		case <-ctx.Done():
			fail(g, ctx.Err())
		}
	}
	for _, g := range queued {
		res := <-g.req.done
		for j, i := range g.idx {
			errs[i] = res.errs[j]
		}
	}
	return errs
}

// eventSource loads events for checks and state resolution: from the
// fetched and pending ones, then from the database (timeline or outliers).
type eventSource struct {
	ctx     context.Context
	e       *Engine
	version event.RoomVersion
	cache   map[string]*event.Event
	// head, when set, is the room's state as the checks should see it (the
	// committed state plus a batch's pending events); nil means the
	// committed state.
	head map[storage.StateKey]*event.Event
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

// remoteBatch is the remote events of one request that were accepted but
// are not persisted yet, and the room's head as they leave it. Only the
// sequencer uses it; readers keep seeing the committed head until flush.
type remoteBatch struct {
	src   *eventSource
	state map[storage.StateKey]*event.Event // the head's state (src.head)
	ids   storage.StateMap                  // the same, as event IDs
	ext   []*event.Event
	depth int64
	// base is the committed state the first pending event is written on,
	// and baseSnapshot its snapshot.
	base         storage.StateMap
	baseSnapshot int64
	after        map[string]storage.StateMap // the state after each pending event
	pending      []pendingRemote
	// known is what the database held of the request's events when the
	// batch started (one query for all of them); each is used once.
	known map[string]storage.EventKnowledge
	// copied counts the state entries the pending events hold in maps of
	// their own, to bound the batch's memory (see maxPendingCopied).
	copied int
	// errs are the answers for the request's events: a failed write
	// answers every pending event of the request with its error.
	errs []error
	// moved is set when a write found the committed head replaced: the
	// request is checked again from the start.
	moved bool
}

// Bounds on what a batch holds in memory before it is written: events
// fetched to fill gaps join the batch too, and each accepted state event
// holds a state map of its own (a room of 10,000 members and an origin
// sending up to 1,000 events to fill a gap would otherwise hold ten
// million entries).
var maxPendingEvents, maxPendingCopied atomic.Int64

func init() {
	maxPendingEvents.Store(256)
	maxPendingCopied.Store(200_000)
}

// SetRemoteBatchLimits changes how many events (and copied state entries)
// a batch of remote events holds before it is written, and returns how to
// restore them. For tests, which use it to write batches in several steps.
func SetRemoteBatchLimits(events, copied int) (restore func()) {
	oldEvents, oldCopied := maxPendingEvents.Swap(int64(events)), maxPendingCopied.Swap(int64(copied))
	return func() { maxPendingEvents.Store(oldEvents); maxPendingCopied.Store(oldCopied) }
}

// pendingRemote is an accepted remote event waiting to be written.
type pendingRemote struct {
	ev     *event.Event
	before storage.StateMap // the state before the event
	state  storage.StateMap // the room's state after it
	// changes is what the event changed in the room's state (as
	// stateChanges gives it): for the snapshot and the memberships.
	changes storage.StateMap
	index   int // in the request
}

// newRemoteBatch starts a batch on the committed head.
func (r *room) newRemoteBatch(ctx context.Context) *remoteBatch {
	b := &remoteBatch{src: r.newSource(ctx), after: map[string]storage.StateMap{}}
	r.mu.RLock()
	b.state, b.ext, b.depth, b.baseSnapshot = r.state, r.extremities, r.depth, r.snapshot
	r.mu.RUnlock()
	b.ids = make(storage.StateMap, len(b.state))
	for k, ev := range b.state {
		b.ids[k] = ev.EventID()
	}
	b.base = b.ids
	b.src.head = b.state
	return b
}

// ingestBatch checks remote events in order, each on the head the earlier
// ones leave, and persists the accepted ones in one transaction. When a
// rejoin replaced the room's head meanwhile, the batch is checked again on
// the new head.
func (r *room) ingestBatch(ctx context.Context, origin string, evs []*event.Event) []error {
	for attempt := 1; ; attempt++ {
		errs, err := r.tryIngestBatch(ctx, origin, evs)
		if !errors.Is(err, errHeadMoved) || attempt == 3 {
			return errs
		}
	}
}

// errHeadMoved: the committed head is no longer the one a batch was
// checked on.
var errHeadMoved = errors.New("rooms: the room's head moved while remote events were checked")

func (r *room) tryIngestBatch(ctx context.Context, origin string, evs []*event.Event) ([]error, error) {
	errs := make([]error, len(evs))
	b := r.newRemoteBatch(ctx)
	b.errs = errs
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.EventID()
	}
	known, err := r.e.db.EventsKnowledge(ctx, ids)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs, err
	}
	for _, id := range ids {
		if _, ok := known[id]; !ok {
			known[id] = storage.Unknown
		}
	}
	b.known = known
	for i, ev := range evs {
		if err := r.ingest(ctx, origin, ev, b, i); err != nil {
			errs[i] = err
		}
		if b.moved {
			return errs, errHeadMoved
		}
	}
	if err := r.flushRemote(ctx, b); err != nil {
		if b.moved {
			return errs, errHeadMoved
		}
		return errs, err
	}
	return errs, nil
}

// ingest checks one remote event on b's head; an accepted event joins b's
// pending events (index is its place in the request, for the answer).
func (r *room) ingest(ctx context.Context, origin string, ev *event.Event, b *remoteBatch, index int) error {
	if ev.RoomID() != r.id {
		return wrapf(ErrBadRequest, "event %s is not in room %s", ev.EventID(), r.id)
	}
	if _, ok := b.after[ev.EventID()]; ok {
		return nil // sent twice in one transaction
	}
	known, ok := b.known[ev.EventID()]
	if ok {
		delete(b.known, ev.EventID()) // a repeat asks the database again
	} else {
		var err error
		if _, _, known, err = r.e.db.AnyEventJSON(ctx, ev.EventID()); err != nil {
			return err
		}
	}
	switch known {
	case storage.InTimeline, storage.Outlier:
		return nil // already have it
	case storage.Rejected:
		return wrapf(ErrRejected, "event %s was rejected before", ev.EventID())
	}
	src := b.src
	budget := maxAuthFetch
	if err := r.checkAuthEvents(ctx, origin, ev, src, &budget); err != nil {
		return r.reject(ctx, ev, err)
	}

	stateBefore, err := r.stateBefore(ctx, origin, ev, b)
	if err != nil {
		return err
	}
	if err := authrules.Allowed(ev, stateIDs{r: r, ids: stateBefore, src: src}); err != nil {
		return r.reject(ctx, ev, err)
	}
	// Soft fail: allowed by history, but not by the room as it is now
	// (say, a ban we know of and the sender's server did not).
	if err := authrules.Allowed(ev, stateView{base: b.state}); err != nil {
		r.e.cfg.Log.WithField("event_id", ev.EventID()).WithError(err).Info("soft-failing remote event")
		return storage.InsertOutlier(ctx, r.e.db, ev.EventID(), r.id, string(ev.JSON()), true)
	}
	return r.accept(ev, stateBefore, b, index)
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
	head, unlock := r.headFor(src)
	if create := head[storage.StateKey{Type: "m.room.create"}]; create != nil {
		src.cache[create.EventID()] = create
	}
	for _, k := range authrules.AuthEventsNeededFor(ev) {
		if cur := head[storage.StateKey{Type: k.EventType, StateKey: k.StateKey}]; cur != nil {
			if _, ok := src.cache[cur.EventID()]; !ok && contains(ev.AuthEventIDs(), cur.EventID()) {
				src.cache[cur.EventID()] = cur
			}
		}
	}
	unlock()
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
func (r *room) stateBefore(ctx context.Context, origin string, ev *event.Event, b *remoteBatch) (storage.StateMap, error) {
	var sets []storage.StateMap
	var missing []string
	for _, prev := range ev.PrevEventIDs() {
		st, ok, err := r.stateAfter(ctx, prev, b)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, prev)
			continue
		}
		sets = append(sets, st)
	}
	src := b.src
	if len(missing) > 0 {
		if r.e.fed == nil {
			return nil, fmt.Errorf("rooms: missing prev events %v", missing)
		}
		r.fillGap(ctx, origin, ev, b)
		for _, prev := range missing {
			st, err := r.stateAfterRemote(ctx, origin, prev, b)
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
func (r *room) fillGap(ctx context.Context, origin string, ev *event.Event, b *remoteBatch) {
	depth, _ := ctx.Value(gapDepthKey{}).(int)
	if depth >= maxGapDepth {
		return
	}
	ctx = context.WithValue(ctx, gapDepthKey{}, depth+1)
	earliest := make([]string, len(b.ext))
	for i, x := range b.ext {
		earliest[i] = x.EventID()
	}
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
		// Not part of the request: index -1.
		if err := r.ingest(ctx, origin, m, b, -1); err != nil {
			r.e.cfg.Log.WithError(err).WithField("event_id", m.EventID()).Info("missing event not accepted")
		}
	}
}

// stateAfterRemote is the state after an event we do not have in the
// timeline (or had just fetched): the state before it from origin's
// /state_ids, plus the event itself.
func (r *room) stateAfterRemote(ctx context.Context, origin, eventID string, b *remoteBatch) (storage.StateMap, error) {
	if st, ok, err := r.stateAfter(ctx, eventID, b); err != nil || ok {
		return st, err // the gap was filled
	}
	src := b.src
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

// stateIDs is a state map seen as the auth rules see state: each event is
// loaded when the rules ask for it (a handful per event, whatever the size
// of the room), from the head in memory when it is the same event, or else
// from src. An event that cannot be loaded is taken as absent.
type stateIDs struct {
	r   *room
	ids storage.StateMap
	src *eventSource
}

// Get implements authrules.AuthEvents.
func (s stateIDs) Get(eventType, stateKey string) *event.Event {
	k := storage.StateKey{Type: eventType, StateKey: stateKey}
	id, ok := s.ids[k]
	if !ok {
		return nil
	}
	head, unlock := s.r.headFor(s.src)
	ev := head[k]
	unlock()
	if ev != nil && ev.EventID() == id {
		return ev
	}
	if ev, err := s.src.Event(id); err == nil {
		return ev
	}
	return nil
}

// headFor is the room state src's checks see, and how to let go of it:
// a batch's head, or the committed state under the read lock.
func (r *room) headFor(src *eventSource) (map[storage.StateKey]*event.Event, func()) {
	if src.head != nil {
		return src.head, func() {}
	}
	r.mu.RLock()
	return r.state, r.mu.RUnlock
}

// stateAfter is the state after an event of the timeline, or of b's
// pending events; ok is false when we hold neither.
func (r *room) stateAfter(ctx context.Context, eventID string, b *remoteBatch) (st storage.StateMap, ok bool, err error) {
	if st, ok := b.after[eventID]; ok {
		return st, true, nil
	}
	row, err := r.e.db.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	st, err = r.e.StateAtEvent(ctx, row)
	return st, err == nil, err
}

// accept moves b's head past an accepted remote event and queues it for
// writing: when the event extends the head's only forward extremity the
// new state is simply the state after it; otherwise the state after it is
// resolved with the head's state.
func (r *room) accept(ev *event.Event, stateBefore storage.StateMap, b *remoteBatch, index int) error {
	src := b.src
	// The event may be needed by state resolution, the next events'
	// checks and the membership updates before it is stored.
	src.cache[ev.EventID()] = ev
	after := stateBefore
	if sk := ev.StateKey(); sk != nil {
		after = copyMap(stateBefore)
		after[storage.StateKey{Type: ev.Type(), StateKey: *sk}] = ev.EventID()
		b.copied += len(after)
	}
	prevs := map[string]bool{}
	for _, p := range ev.PrevEventIDs() {
		prevs[p] = true
	}
	var newExt []*event.Event
	extendsHead := true
	for _, x := range b.ext {
		if prevs[x.EventID()] {
			continue
		}
		newExt = append(newExt, x)
		extendsHead = false
	}
	newExt = append(newExt, ev)
	newState := after
	if !extendsHead {
		var err error
		if newState, err = r.resolve([]storage.StateMap{b.ids, after}, src); err != nil {
			return err
		}
		b.copied += len(newState)
	}
	// Only what changed is loaded: most of the state is the head's.
	loaded := b.state
	changed := stateChanges(b.ids, newState)
	if len(changed) > 0 {
		loaded = copyState(b.state)
		b.copied += len(loaded)
		for k, id := range changed {
			if id == "" {
				delete(loaded, k)
			} else if e, err := src.Event(id); err == nil {
				loaded[k] = e
			} else {
				return err
			}
		}
	}
	b.pending = append(b.pending, pendingRemote{ev: ev, before: stateBefore, state: newState, changes: changed, index: index})
	b.after[ev.EventID()] = after
	b.state, b.ids, b.ext = loaded, newState, newExt
	b.depth = max(b.depth, ev.Depth())
	b.src.head = loaded
	if int64(len(b.pending)) >= maxPendingEvents.Load() || int64(b.copied) >= maxPendingCopied.Load() {
		return r.flushRemote(b.src.ctx, b)
	}
	return nil
}

// flushRemote writes b's pending events in one transaction (events, state
// snapshots, memberships, redactions and the room's new head), makes b's
// head the committed head and tells everyone. On failure nothing is
// written and the committed head stays as it was.
func (r *room) flushRemote(ctx context.Context, b *remoteBatch) error {
	if len(b.pending) == 0 {
		return nil
	}
	e := r.e
	n := len(b.pending)
	r.headMu.Lock()
	defer r.headMu.Unlock()
	snap := r.snapshotNow()
	if snap != b.baseSnapshot {
		// The request is checked again from the start (ingestBatch);
		// should that keep happening, the events are answered with this.
		b.moved = true
		b.answerPending(errHeadMoved)
		return errHeadMoved
	}
	first := e.cfg.Positions.Allocate(n)
	defer e.cfg.Positions.Done(first)
	err := e.db.WithTx(ctx, func(tx *storage.Tx) error {
		rows := make([]*storage.EventRow, 0, n)
		cur := b.base
		for i, p := range b.pending {
			ev, pos := p.ev, first+int64(i)
			// Consecutive events mostly share their state: a snapshot is
			// written only where it changes, as a delta on the last one.
			beforeSnap, err := snapshotFor(ctx, e.db, tx, r.id, snap, cur, p.before)
			if err != nil {
				return err
			}
			rows = append(rows, &storage.EventRow{EventID: ev.EventID(), RoomID: r.id, Type: ev.Type(), StateKey: ev.StateKey(),
				Sender: ev.Sender(), Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), StreamPos: pos,
				StateBefore: beforeSnap, JSON: string(ev.JSON())})
			headSnap, err := insertChanges(ctx, e.db, tx, r.id, snap, p.changes)
			if err != nil {
				return err
			}
			// Memberships follow the current state.
			for k, id := range p.changes {
				if k.Type != "m.room.member" || id == "" {
					continue
				}
				mev, err := b.src.Event(id)
				if err != nil {
					return err
				}
				m, _ := mev.Membership()
				if err := storage.SetMembership(ctx, tx, storage.Membership{RoomID: r.id, UserID: k.StateKey, Membership: m, EventID: id, StreamPos: pos}); err != nil {
					return err
				}
			}
			snap, cur = headSnap, p.state
		}
		if err := e.db.InsertEvents(ctx, tx, rows); err != nil {
			return err
		}
		// After the insert, so that a redaction of an event of the same
		// batch finds its target.
		for _, p := range b.pending {
			if target := p.ev.Redacts(); target != "" {
				if err := storage.MarkRedacted(ctx, tx, target, p.ev.EventID()); err != nil {
					return err
				}
			}
		}
		ids := make([]string, len(b.ext))
		for i, x := range b.ext {
			ids[i] = x.EventID()
		}
		return storage.SetRoomHead(ctx, tx, r.id, snap, b.depth, ids)
	})
	if err != nil {
		// Nothing was written: the pending events of the request are
		// answered with the error, and the batch goes on from the
		// committed head.
		b.answerPending(err)
		fresh := r.newRemoteBatch(ctx)
		fresh.src, fresh.known, fresh.errs = b.src, b.known, b.errs
		fresh.src.head = fresh.state
		*b = *fresh
		return err
	}
	r.mu.Lock()
	r.state, r.snapshot, r.extremities = b.state, snap, b.ext
	r.depth = max(r.depth, b.depth)
	r.stateGen++
	r.mu.Unlock()
	all := make([]built, n)
	for i, p := range b.pending {
		r.e.emit(p.ev, first+int64(i))
		all[i] = built{ev: p.ev}
	}
	r.notify(all, first+int64(n)-1)
	b.base, b.baseSnapshot, b.pending, b.after, b.copied = b.ids, snap, nil, map[string]storage.StateMap{}, 0
	return nil
}

// answerPending answers the request's pending events with err.
func (b *remoteBatch) answerPending(err error) {
	for _, p := range b.pending {
		if p.index >= 0 && p.index < len(b.errs) {
			b.errs[p.index] = err
		}
	}
}

// stateChanges is what differs in state from base: changed and added
// keys, and removed ones mapped to "".
func stateChanges(base, state storage.StateMap) storage.StateMap {
	changes := storage.StateMap{}
	if sameMap(base, state) {
		// Consecutive events mostly share one state map: comparing it
		// with itself would cost the size of the room's state per event.
		return changes
	}
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
	return changes
}

// snapshotFor returns a snapshot ID for state: base's ID when equal to the
// base state, otherwise a new delta snapshot on top of base.
func snapshotFor(ctx context.Context, db *storage.DB, tx *storage.Tx, roomID string, baseID int64, base, state storage.StateMap) (int64, error) {
	return insertChanges(ctx, db, tx, roomID, baseID, stateChanges(base, state))
}

// insertChanges returns a snapshot ID for base plus changes: base's own
// when nothing changed, otherwise a new delta snapshot.
func insertChanges(ctx context.Context, db *storage.DB, tx *storage.Tx, roomID string, baseID int64, changes storage.StateMap) (int64, error) {
	if len(changes) == 0 {
		return baseID, nil
	}
	return db.InsertSnapshot(ctx, tx, roomID, baseID, changes)
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap(a, b storage.StateMap) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func copyMap(m storage.StateMap) storage.StateMap {
	out := make(storage.StateMap, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
