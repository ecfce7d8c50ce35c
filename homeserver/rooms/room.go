package rooms

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// maxBatch bounds how many queued requests one transaction takes.
const maxBatch = 64

// room is one room's in-memory head and its sequencer. Only the sequencer
// goroutine changes the head; readers take mu.
type room struct {
	e       *Engine
	id      string
	version event.RoomVersion
	info    event.RoomVersionInfo
	reqs    chan *request

	// The committed head: what readers see. The committer (and the
	// sequencer while nothing is in flight) changes it under mu.
	mu          sync.RWMutex
	state       map[storage.StateKey]*event.Event
	snapshot    int64
	depth       int64
	extremities []*event.Event
	// stateGen counts the changes of state (under mu), so that what is
	// derived from it (interest) knows when it is out of date. Whoever
	// changes state on a room others can see must bump it.
	stateGen uint64
	interest interestCache

	// The sequencer builds the next batch while the committer persists the
	// previous one, so signing overlaps the database round trips. The
	// builder's head is the committed head plus every batch in flight; it
	// is private to the sequencer goroutine.
	bstate   map[storage.StateKey]*event.Event
	bdepth   int64
	bext     []*event.Event
	commits  chan *prepared
	inflight sync.WaitGroup
	// failed is set by the committer when a batch could not be persisted:
	// batches built on top of it fail too, and the builder starts again
	// from the committed head.
	failed atomic.Bool
	// stale is set when something other than the sequencer replaced the
	// committed head (a rejoin over federation): the builder starts again
	// from it, without failing the batches in flight as failed would.
	stale atomic.Bool
	// pendingTxns are the transactions of batches in flight, so that a
	// retry arriving meanwhile waits for the first to be committed.
	txnMu       sync.Mutex
	pendingTxns map[storage.TxnKey]bool
	// headMu serialises replacing the committed head from outside the
	// sequencer (a rejoin over federation) with the sequencer's commits of
	// remote events, which must find the head they were checked on.
	headMu sync.Mutex
}

func newRoom(e *Engine, id string, version event.RoomVersion, info event.RoomVersionInfo) *room {
	return &room{e: e, id: id, version: version, info: info, reqs: make(chan *request, 1024),
		state: map[storage.StateKey]*event.Event{}, commits: make(chan *prepared, 1),
		pendingTxns: map[storage.TxnKey]bool{}}
}

// prepared is a built batch on its way to the committer.
type prepared struct {
	all      []built
	h        head
	accepted []*request
	counts   map[*request]int
	dups     map[*request]*request
	answers  map[*request]result
	txns     []storage.TxnKey
}

// resync makes the builder's head the committed head. Only when nothing
// is in flight.
func (r *room) resync() {
	r.mu.RLock()
	r.bstate = copyState(r.state)
	r.bdepth, r.bext = r.depth, r.extremities
	r.mu.RUnlock()
}

// Proto is an event a local user wants to send.
type Proto struct {
	Type     string
	StateKey *string
	Sender   string
	Content  json.RawMessage
	Redacts  string
	// Txn makes the send idempotent per device; nil for server-made events.
	Txn *Txn
}

// Txn identifies a client's send request.
type Txn struct {
	UserID, DeviceID, TxnID string
}

// request is one caller's protos, persisted atomically in order.
type request struct {
	ctx    context.Context
	protos []Proto
	// ingest, when set, is remote events to check and persist instead of
	// protos; origin is the server they came from.
	ingest []*event.Event
	origin string
	// check runs in the sequencer against the state each event is built
	// on, for rules beyond the auth rules (a client may only redact its
	// own events without power, ...).
	check func(p Proto, st stateView) error
	done  chan result
}

type result struct {
	events []*event.Event
	pos    int64
	err    error
	errs   []error // for ingest: one per event
}

// submit queues protos and waits for them to be persisted.
func (r *room) submit(ctx context.Context, protos []Proto, check func(Proto, stateView) error) ([]*event.Event, int64, error) {
	req := &request{ctx: ctx, protos: protos, check: check, done: make(chan result, 1)}
	select {
	case r.reqs <- req:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	// Once queued, the request is persisted or refused even if the caller
	// goes away: waiting here keeps the answer consistent with the database.
	res := <-req.done
	return res.events, res.pos, res.err
}

// run is the sequencer: it drains queued requests in batches and persists
// each batch in one transaction.
func (r *room) run() {
	go r.commitLoop()
	r.resync()
	var next *request
	for {
		first := next
		next = nil
		if first == nil {
			var ok bool
			if first, ok = <-r.reqs; !ok {
				close(r.commits)
				return
			}
		}
		if first.ingest != nil {
			// Remote events are checked on the committed head, not while
			// local batches are in flight: checking one may fetch others
			// and resolve state, and the next must see the result.
			r.inflight.Wait()
			errs := r.ingestBatch(first.ctx, first.origin, first.ingest)
			r.failed.Store(false)
			r.resync()
			first.done <- result{errs: errs}
			continue
		}
		if r.failed.Load() || r.stale.Load() {
			r.inflight.Wait()
			r.failed.Store(false)
			r.stale.Store(false)
			r.resync()
		}
		batch := []*request{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case req := <-r.reqs:
				if req.ingest != nil {
					next = req
					break drain
				}
				batch = append(batch, req)
			default:
				break drain
			}
		}
		if p := r.prepare(batch); p != nil {
			r.inflight.Add(1)
			r.commits <- p
		}
	}
}

// stateView is the state a proto is built on: the committed state plus the
// events built earlier in the same batch.
type stateView struct {
	base    map[storage.StateKey]*event.Event
	overlay map[storage.StateKey]*event.Event
}

func (s stateView) Get(eventType, stateKey string) *event.Event {
	k := storage.StateKey{Type: eventType, StateKey: stateKey}
	if ev, ok := s.overlay[k]; ok {
		return ev
	}
	return s.base[k]
}

// built is an event of a batch with what persisting it needs.
type built struct {
	ev       *event.Event
	proto    Proto
	stateKey *storage.StateKey
}

// head is the room's head while a batch is being built.
type head struct {
	view        stateView
	depth       int64
	extremities []*event.Event
}

// prepare builds and checks a batch on the builder's head. A request whose
// events fail is answered with its error and leaves nothing behind; the
// others go to the committer (nil when none are left).
func (r *room) prepare(batch []*request) *prepared {
	p := &prepared{counts: map[*request]int{}, answers: map[*request]result{}}
	answer := func(req *request, res result) {
		p.answers[req] = res
		req.done <- res
	}
	batch, dups, err := r.dedupeTxns(batch)
	p.dups = dups
	if err != nil {
		for _, req := range batch {
			answer(req, result{err: err})
		}
		r.answerDups(p)
		return nil
	}
	h := head{
		view:        stateView{base: r.bstate, overlay: map[storage.StateKey]*event.Event{}},
		depth:       r.bdepth,
		extremities: r.bext,
	}
	for _, req := range batch {
		// Build a request's events on a copy of the head so that a refusal
		// midway leaves no trace on the next request.
		trial := head{view: stateView{base: h.view.base, overlay: copyState(h.view.overlay)}, depth: h.depth, extremities: h.extremities}
		var evs []built
		var err error
		for _, proto := range req.protos {
			var b built
			if b, err = r.buildOne(req, proto, &trial); err != nil {
				break
			}
			evs = append(evs, b)
		}
		if err != nil {
			answer(req, result{err: err})
			continue
		}
		h = trial
		p.all = append(p.all, evs...)
		p.accepted = append(p.accepted, req)
		p.counts[req] = len(evs)
		if k, ok := txnKey(req); ok {
			p.txns = append(p.txns, k)
		}
	}
	if len(p.all) == 0 {
		r.answerDups(p)
		return nil
	}
	// The builder's head moves on at once; the committer catches up.
	for k, ev := range h.view.overlay {
		r.bstate[k] = ev
	}
	r.bdepth, r.bext = h.depth, h.extremities
	p.h = h
	r.txnMu.Lock()
	for _, k := range p.txns {
		r.pendingTxns[k] = true
	}
	r.txnMu.Unlock()
	return p
}

// answerDups gives repeats of a request in the same batch the first's answer.
func (r *room) answerDups(p *prepared) {
	for dup, first := range p.dups {
		dup.done <- p.answers[first]
	}
}

// commitLoop persists prepared batches in order.
func (r *room) commitLoop() {
	for p := range r.commits {
		r.commit(p)
		r.txnMu.Lock()
		for _, k := range p.txns {
			delete(r.pendingTxns, k)
		}
		r.txnMu.Unlock()
		r.inflight.Done()
	}
}

// commit persists a batch, moves the committed head and tells everyone.
func (r *room) commit(p *prepared) {
	answer := func(req *request, res result) {
		p.answers[req] = res
		req.done <- res
	}
	defer r.answerDups(p)
	var pos int64
	err := errors.New("rooms: an earlier batch of this room could not be stored")
	if !r.failed.Load() {
		pos, err = r.persist(p.all, p.h)
	}
	if err != nil {
		r.failed.Store(true)
		r.e.cfg.Log.WithError(err).WithField("room_id", r.id).Error("persisting events failed")
		for _, req := range p.accepted {
			answer(req, result{err: err})
		}
		if r.e.cfg.Notifier != nil {
			// The abandoned positions may have been holding back other
			// rooms' wake-ups.
			r.e.cfg.Notifier.OnNewEvents(0, nil)
		}
		return
	}
	all := p.all
	r.mu.Lock()
	for k, ev := range p.h.view.overlay {
		r.state[k] = ev
	}
	if len(p.h.view.overlay) > 0 {
		r.stateGen++
	}
	r.depth, r.extremities = p.h.depth, p.h.extremities
	r.mu.Unlock()

	// Listeners hear of the events before their senders get an answer,
	// so that whatever a client does next (a /sync, a receipt) finds them
	// already handed on (push evaluation, application services).
	first := pos - int64(len(all)) + 1
	for i, b := range all {
		r.e.emit(b.ev, first+int64(i))
	}
	i := 0
	for _, req := range p.accepted {
		n := p.counts[req]
		evs := make([]*event.Event, n)
		for j := range evs {
			evs[j] = all[i+j].ev
		}
		answer(req, result{events: evs, pos: pos})
		i += n
	}
	r.notify(all, pos)
	out := make([]*event.Event, 0, len(all))
	for _, b := range all {
		if serverOf(b.ev.Sender()) == r.e.cfg.ServerName {
			out = append(out, b.ev)
		}
	}
	r.sendOut(out)
}

func copyState(m map[storage.StateKey]*event.Event) map[storage.StateKey]*event.Event {
	out := make(map[storage.StateKey]*event.Event, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// buildOne turns a proto into a signed event on top of h, checks it and
// advances h.
func (r *room) buildOne(req *request, p Proto, h *head) (built, error) {
	if req.check != nil {
		if err := req.check(p, h.view); err != nil {
			return built{}, err
		}
	}
	ev, err := r.build(p, h)
	if err != nil {
		return built{}, err
	}
	if err := authrules.Allowed(ev, h.view); err != nil {
		return built{}, wrapf(ErrForbidden, "%v", err)
	}
	if r.e.fed != nil && ev.Type() == "m.room.member" && serverOf(*ev.StateKey()) != r.e.cfg.ServerName {
		if m, _ := ev.Membership(); m == "invite" {
			// A remote invitee's server must countersign the invite.
			if ev, err = r.inviteRemote(req.ctx, ev); err != nil {
				return built{}, err
			}
		}
	}
	b := built{ev: ev, proto: p}
	if sk := ev.StateKey(); sk != nil {
		k := storage.StateKey{Type: ev.Type(), StateKey: *sk}
		h.view.overlay[k] = ev
		b.stateKey = &k
	}
	h.depth = ev.Depth()
	h.extremities = []*event.Event{ev}
	return b, nil
}

// build fills a proto's prev events, auth events and depth from h, then
// hashes and signs it.
func (r *room) build(p Proto, h *head) (*event.Event, error) {
	content := p.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	pe := event.ProtoEvent{
		Type:           p.Type,
		StateKey:       p.StateKey,
		Sender:         p.Sender,
		RoomID:         r.id,
		Content:        content,
		Depth:          h.depth + 1,
		OriginServerTS: r.e.now().UnixMilli(),
		Redacts:        p.Redacts,
	}
	if p.Type == "m.room.create" && r.info.CreateEventIsRoomID {
		pe.RoomID = ""
	}
	if r.info.EventIDFormat == event.EventIDFormatV1 {
		pe.ReferenceHashes = map[string]string{}
	}
	refs := func(ev *event.Event) (string, error) {
		if pe.ReferenceHashes != nil {
			sum, err := ev.ReferenceHash()
			if err != nil {
				return "", err
			}
			pe.ReferenceHashes[ev.EventID()] = base64.RawStdEncoding.EncodeToString(sum[:])
		}
		return ev.EventID(), nil
	}
	for _, prev := range h.extremities {
		id, err := refs(prev)
		if err != nil {
			return nil, err
		}
		pe.PrevEvents = append(pe.PrevEvents, id)
	}
	if p.Type != "m.room.create" {
		for _, t := range authrules.AuthEventsNeeded(r.info, p.Type, p.StateKey, p.Sender, content) {
			if ev := h.view.Get(t.EventType, t.StateKey); ev != nil {
				id, err := refs(ev)
				if err != nil {
					return nil, err
				}
				pe.AuthEvents = append(pe.AuthEvents, id)
			}
		}
	}
	key := r.e.cfg.SigningKey
	ev, err := pe.Build(r.version, r.e.cfg.ServerName, key.KeyID, key.Key)
	if errors.Is(err, event.ErrEventTooLarge) {
		return nil, wrapf(ErrTooLarge, "%v", err)
	}
	if err != nil {
		return nil, wrapf(ErrBadRequest, "%v", err)
	}
	return ev, nil
}

// persist writes a batch in one transaction: events, state snapshots,
// memberships, redactions and the room's new head.
func (r *room) persist(all []built, h head) (int64, error) {
	e := r.e
	first := e.cfg.Positions.Allocate(len(all))
	defer e.cfg.Positions.Done(first)
	ctx := context.Background() // the batch outlives any one caller
	snapshot := r.snapshotNow()
	err := e.db.WithTx(ctx, func(tx *storage.Tx) error {
		if all[0].ev.Type() == "m.room.create" && snapshot == 0 {
			if err := storage.InsertRoom(ctx, tx, storage.Room{RoomID: r.id, Version: string(r.version), CreatedTS: all[0].ev.OriginServerTS()}); err != nil {
				return err
			}
		}
		rows := make([]*storage.EventRow, 0, len(all))
		for i, b := range all {
			ev := b.ev
			row := &storage.EventRow{
				EventID: ev.EventID(), RoomID: r.id, Type: ev.Type(), StateKey: ev.StateKey(), Sender: ev.Sender(),
				Depth: ev.Depth(), OriginServerTS: ev.OriginServerTS(), StreamPos: first + int64(i),
				StateBefore: snapshot, JSON: string(ev.JSON()),
			}
			if t := b.proto.Txn; t != nil {
				row.TxnUser, row.TxnDevice, row.TxnID = t.UserID, t.DeviceID, t.TxnID
			}
			rows = append(rows, row)
			if b.stateKey != nil {
				var err error
				if snapshot, err = e.db.InsertSnapshot(ctx, tx, r.id, snapshot, storage.StateMap{*b.stateKey: ev.EventID()}); err != nil {
					return err
				}
				if ev.Type() == "m.room.member" {
					membership, _ := ev.Membership()
					if err := storage.SetMembership(ctx, tx, storage.Membership{RoomID: r.id, UserID: *ev.StateKey(),
						Membership: membership, EventID: ev.EventID(), StreamPos: row.StreamPos}); err != nil {
						return err
					}
				}
			}
		}
		if err := e.db.InsertEvents(ctx, tx, rows); err != nil {
			return err
		}
		// After the insert, so that a redaction of an event of the same
		// batch finds its target.
		for _, b := range all {
			if target := b.ev.Redacts(); target != "" {
				if err := storage.MarkRedacted(ctx, tx, target, b.ev.EventID()); err != nil {
					return err
				}
			}
		}
		ext := make([]string, len(h.extremities))
		for i, ev := range h.extremities {
			ext[i] = ev.EventID()
		}
		return storage.SetRoomHead(ctx, tx, r.id, snapshot, h.depth, ext)
	})
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.snapshot = snapshot
	r.mu.Unlock()
	return first + int64(len(all)) - 1, nil
}

func (r *room) snapshotNow() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.snapshot
}

func (r *room) stateCopy() map[storage.StateKey]*event.Event {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return copyState(r.state)
}

// notify wakes the local users the batch concerns: everyone local who is
// joined (or invited, or knocking) after it, and the targets of its
// membership events (who must see their own leave, kick or ban).
func (r *room) notify(all []built, pos int64) {
	if r.e.cfg.Notifier == nil {
		return
	}
	users, set := r.localInterested()
	suffix := ":" + r.e.cfg.ServerName
	for _, b := range all {
		if b.ev.Type() != "m.room.member" {
			continue
		}
		if u := *b.ev.StateKey(); strings.HasSuffix(u, suffix) && !set[u] {
			// A copy: the cached list is shared.
			users = append(users[:len(users):len(users)], u)
		}
	}
	r.e.cfg.Notifier.OnNewEvents(pos, users)
}

// interestCache is what the room's current state says about who hears of
// its events: the local users joined, invited or knocking (notify) and
// the other servers with users joined (where its events are sent). Walking
// the whole state for every batch would cost the size of the room each
// time.
type interestCache struct {
	mu     sync.Mutex
	ok     bool
	gen    uint64
	users  []string // never changed once cached: a new list replaces it
	set    map[string]bool
	remote []string
}

// localInterested returns the local users joined, invited or knocking in
// the committed state, as a list and a set (both read-only).
func (r *room) localInterested() ([]string, map[string]bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c := r.interestLocked()
	return c.users, c.set
}

// interestLocked brings the cache up to date with the committed state and
// returns it (read-only). The caller holds r.mu.
func (r *room) interestLocked() *interestCache {
	c := &r.interest
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && c.gen == r.stateGen {
		return c
	}
	local := r.e.cfg.ServerName
	users, set, remote, seen := []string{}, map[string]bool{}, []string{}, map[string]bool{}
	for k, ev := range r.state {
		if k.Type != "m.room.member" {
			continue
		}
		m, _ := ev.Membership()
		switch server := serverOf(k.StateKey); {
		case server == local && (m == "join" || m == "invite" || m == "knock"):
			users = append(users, k.StateKey)
			set[k.StateKey] = true
		case server != local && server != "" && m == "join" && !seen[server]:
			seen[server] = true
			remote = append(remote, server)
		}
	}
	c.ok, c.gen, c.users, c.set, c.remote = true, r.stateGen, users, set, remote
	return c
}

// errorf formats an internal error.
func errorf(format string, args ...any) error { return fmt.Errorf("rooms: "+format, args...) }

// txnKey is the client transaction of a single-event request, if any.
func txnKey(req *request) (storage.TxnKey, bool) {
	if len(req.protos) != 1 || req.protos[0].Txn == nil {
		return storage.TxnKey{}, false
	}
	t := req.protos[0].Txn
	return storage.TxnKey{User: t.UserID, Device: t.DeviceID, TxnID: t.TxnID}, true
}

// dedupeTxns makes /send idempotent for a whole batch with one query:
// requests whose transaction was persisted before are answered with that
// event at once; a repeat of a request in the same batch waits for the
// first's answer (dups maps each repeat to its first). What is left to
// build is returned.
func (r *room) dedupeTxns(batch []*request) ([]*request, map[*request]*request, error) {
	var keys []storage.TxnKey
	for _, req := range batch {
		if k, ok := txnKey(req); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return batch, nil, nil
	}
	r.txnMu.Lock()
	retryInFlight := false
	for _, k := range keys {
		retryInFlight = retryInFlight || r.pendingTxns[k]
	}
	r.txnMu.Unlock()
	if retryInFlight {
		// A retry of a request still being committed: let it land, then
		// answer from the database.
		r.inflight.Wait()
	}
	existing, err := r.e.db.EventIDsByTxn(context.Background(), keys)
	if err != nil {
		return batch, nil, err
	}
	first := map[storage.TxnKey]*request{}
	dups := map[*request]*request{}
	rest := batch[:0:0]
	for _, req := range batch {
		k, ok := txnKey(req)
		if !ok {
			rest = append(rest, req)
			continue
		}
		if id, done := existing[k]; done {
			req.done <- r.earlierResult(id)
			continue
		}
		if f, seen := first[k]; seen {
			dups[req] = f
			continue
		}
		first[k] = req
		rest = append(rest, req)
	}
	return rest, dups, nil
}

// earlierResult answers a retried request with the event it created.
func (r *room) earlierResult(eventID string) result {
	row, err := r.e.db.GetEvent(context.Background(), eventID)
	if err != nil {
		return result{err: err}
	}
	if row.RoomID != r.id {
		return result{err: wrapf(ErrBadRequest, "transaction ID %q was already used in another room", row.TxnID)}
	}
	ev, err := event.NewEventFromTrustedJSONWithEventID(row.EventID, []byte(row.JSON), r.version)
	if err != nil {
		return result{err: err}
	}
	return result{events: []*event.Event{ev}, pos: row.StreamPos}
}
