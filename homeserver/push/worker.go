package push

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strings"
	gosync "sync"
	"time"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// job is one new timeline event to evaluate.
type job struct {
	ev  *event.Event
	pos int64
	seq uint64 // the shard's sequence number, for progress
}

// shard is one evaluation worker with its queue. Rooms are assigned to
// shards by a hash of their ID, so that a room's events are evaluated in
// the order they were added, and a shard's room cache is its own.
type shard struct {
	s *Service

	mu       gosync.Mutex
	queue    []job
	enqueued uint64 // sequence number of the last queued job
	// inflight is the lowest position of the batch being evaluated, 0
	// when none.
	inflight int64
	signal   chan struct{}

	rooms map[string]*roomInfo // used only by the worker goroutine
}

// maxQueue bounds each shard's queue. Beyond it events are not evaluated
// (and logged): memory matters more than the counts of a flood.
const maxQueue = 100000

// maxBatch is the most events written in one transaction.
const maxBatch = 128

// maxRoomCache bounds the rooms each shard keeps a context for.
const maxRoomCache = 5000

func newShard(s *Service) *shard {
	return &shard{s: s, signal: make(chan struct{}, 1), rooms: map[string]*roomInfo{}}
}

// OnEvent is the room engine listener: it queues a new timeline event for
// evaluation and returns at once.
func (s *Service) OnEvent(ev *event.Event, pos int64) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ev.RoomID()))
	sh := s.shards[int(h.Sum32()%uint32(len(s.shards)))]
	s.seenMu.Lock()
	if pos > s.seen[ev.RoomID()] {
		s.seen[ev.RoomID()] = pos
	}
	s.seenMu.Unlock()
	sh.mu.Lock()
	if len(sh.queue) >= maxQueue {
		sh.mu.Unlock()
		s.log.WithField("event_id", ev.EventID()).Error("push: evaluation queue full; event not evaluated")
		return
	}
	sh.enqueued++
	sh.queue = append(sh.queue, job{ev: ev, pos: pos, seq: sh.enqueued})
	sh.mu.Unlock()
	for {
		seen := s.maxSeen.Load()
		if pos <= seen || s.maxSeen.CompareAndSwap(seen, pos) {
			break
		}
	}
	select {
	case sh.signal <- struct{}{}:
	default:
	}
}

// run evaluates queued events until stop is closed and the queue is empty.
func (sh *shard) run(stop <-chan struct{}) {
	for {
		sh.mu.Lock()
		n := min(len(sh.queue), maxBatch)
		batch := append([]job(nil), sh.queue[:n]...)
		sh.queue = sh.queue[n:]
		if len(sh.queue) == 0 {
			sh.queue = nil // let the backing array go
		}
		sh.inflight = 0
		for _, j := range batch {
			if sh.inflight == 0 || j.pos < sh.inflight {
				sh.inflight = j.pos
			}
		}
		sh.mu.Unlock()
		if len(batch) > 0 {
			sh.process(batch)
			sh.mu.Lock()
			sh.inflight = 0
			sh.mu.Unlock()
			sh.s.progress.done(sh, batch[len(batch)-1].seq)
			continue
		}
		select {
		case <-sh.signal:
		case <-stop:
			sh.mu.Lock()
			empty := len(sh.queue) == 0
			sh.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// roomInfo is what a shard knows of a room between state changes. Only
// the shard's worker goroutine uses it, and only while it evaluates one
// event (a result keeps copies of the few fields the gateway needs), so a
// membership change updates it in place: copying the maps of a room of
// thousands of members for every join would cost what caching saves.
type roomInfo struct {
	ctx *RoomContext
	// joined are the joined members: a membership change must know whether
	// its target was counted, display name or not.
	joined map[string]struct{}
	// local are the joined members of this server.
	local []string
	name  string
	alias string
	// built is when it was read from the whole current state.
	built time.Time
}

// stateTypesThatMatter are the state events that change a roomInfo.
var stateTypesThatMatter = map[string]bool{
	"m.room.member": true, "m.room.power_levels": true, "m.room.create": true,
	"m.room.name": true, "m.room.canonical_alias": true,
}

// maxRoomInfoAge is how long a roomInfo is kept up to date one membership
// at a time before it is read again from the whole current state. State
// resolution (a remote fork merged) can change memberships without an
// event for each of them; reading again now and then bounds how long the
// shard misses such changes, at the cost of one full read per room and
// period, however many members join.
const maxRoomInfoAge = time.Minute

// room returns the shard's context of a room, brought up to date with ev
// when ev changed what it holds: a membership by itself, anything else by
// reading the current state again.
func (sh *shard) room(ctx context.Context, ev *event.Event) (*roomInfo, error) {
	roomID := ev.RoomID()
	ri, ok := sh.rooms[roomID]
	if ok && ev.StateKey() != nil && stateTypesThatMatter[ev.Type()] && !sh.update(ctx, ri, ev) {
		delete(sh.rooms, roomID) // not left stale if reading fails
		ok = false
	}
	if ok {
		return ri, nil
	}
	st, err := sh.s.cfg.Rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ri = buildRoomInfo(st, sh.s.cfg.ServerName)
	ri.built = sh.s.cfg.Now()
	if len(sh.rooms) >= maxRoomCache {
		clear(sh.rooms)
	}
	sh.rooms[roomID] = ri
	return ri, nil
}

// update brings ri up to date with ev, a state event that changes it, and
// reports whether it could without reading the whole current state: it
// can with a membership that is its target's in the current state, in a
// roomInfo younger than maxRoomInfoAge. A membership may not be current:
// the engine hands events over in order within a room, but catch-up (see
// watermark.go) hands older ones over among them; a later event of the
// same user may be queued behind ev; ev may have lost in state resolution.
func (sh *shard) update(ctx context.Context, ri *roomInfo, ev *event.Event) bool {
	if ev.Type() != "m.room.member" || sh.s.cfg.Now().Sub(ri.built) >= maxRoomInfoAge {
		return false
	}
	userID := *ev.StateKey()
	cur, err := sh.s.cfg.Rooms.CurrentStateEvent(ctx, ev.RoomID(), "m.room.member", userID)
	if err != nil || cur == nil || cur.EventID() != ev.EventID() {
		return false
	}
	ri.setMember(userID, ev, sh.s.cfg.ServerName)
	return true
}

// setMember makes the member event ev userID's membership in ri, counted
// as buildRoomInfo counts it.
func (ri *roomInfo) setMember(userID string, ev *event.Event, serverName string) {
	_, was := ri.joined[userID]
	m, _ := ev.Membership()
	is := m == "join"
	local := strings.HasSuffix(userID, ":"+serverName)
	switch {
	case is && !was:
		ri.joined[userID] = struct{}{}
		ri.ctx.MemberCount++
		if local {
			ri.local = append(ri.local, userID)
		}
	case !is && was:
		delete(ri.joined, userID)
		ri.ctx.MemberCount--
		if local {
			ri.local = removeUser(ri.local, userID)
		}
	}
	delete(ri.ctx.DisplayNames, userID)
	if !is {
		return
	}
	if name := displayName(ev); name != "" {
		ri.ctx.DisplayNames[userID] = name
	}
}

// removeUser removes userID from users, whose order does not matter.
func removeUser(users []string, userID string) []string {
	for i, u := range users {
		if u == userID {
			last := len(users) - 1
			users[i] = users[last]
			return users[:last]
		}
	}
	return users
}

// displayName is the displayname of a member event's content, "" when it
// has none.
func displayName(ev *event.Event) string {
	var c struct {
		DisplayName string `json:"displayname"`
	}
	_ = json.Unmarshal(ev.Content(), &c)
	return c.DisplayName
}

// buildRoomInfo reads a room's members, names and power levels from its
// state.
func buildRoomInfo(st map[storage.StateKey]*event.Event, serverName string) *roomInfo {
	ri := &roomInfo{ctx: &RoomContext{DisplayNames: map[string]string{}}, joined: map[string]struct{}{}}
	suffix := ":" + serverName
	var create, power *event.Event
	for k, ev := range st {
		switch k.Type {
		case "m.room.member":
			if m, _ := ev.Membership(); m != "join" {
				continue
			}
			ri.joined[k.StateKey] = struct{}{}
			ri.ctx.MemberCount++
			if name := displayName(ev); name != "" {
				ri.ctx.DisplayNames[k.StateKey] = name
			}
			if strings.HasSuffix(k.StateKey, suffix) {
				ri.local = append(ri.local, k.StateKey)
			}
		case "m.room.create":
			if k.StateKey == "" {
				create = ev
			}
		case "m.room.power_levels":
			if k.StateKey == "" {
				power = ev
			}
		case "m.room.name":
			if k.StateKey == "" {
				var c struct {
					Name string `json:"name"`
				}
				_ = json.Unmarshal(ev.Content(), &c)
				ri.name = c.Name
			}
		case "m.room.canonical_alias":
			if k.StateKey == "" {
				var c struct {
					Alias string `json:"alias"`
				}
				_ = json.Unmarshal(ev.Content(), &c)
				ri.alias = c.Alias
			}
		}
	}
	if create != nil {
		ri.ctx.Power, _ = authrules.NewPowerLevels(create, power)
	}
	return ri
}

// evaluated is the outcome of one event for one user.
type evaluated struct {
	userID  string
	outcome *Outcome
}

// result is what one event produced.
type result struct {
	job job
	// senderName, roomName and roomAlias are the room's context as the
	// event saw it, for the push gateway, which runs after the whole
	// batch: the roomInfo itself changes with the batch's memberships.
	senderName, roomName, roomAlias string
	threadID                        string
	notified                        []evaluated
}

// process evaluates a batch and records it in one transaction.
func (sh *shard) process(batch []job) {
	s := sh.s
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		results []result
		notifs  []storage.PushNotification
		reads   []storage.PushRead
	)
	now := s.cfg.Now().UnixMilli()
	for _, j := range batch {
		r, err := sh.evaluate(ctx, j)
		if err != nil {
			s.log.WithError(err).WithField("event_id", j.ev.EventID()).Warn("push: evaluating event")
			continue
		}
		if s.isLocal(j.ev.Sender()) {
			// Sending an event reads everything before it (in its thread).
			reads = append(reads, storage.PushRead{UserID: j.ev.Sender(), RoomID: j.ev.RoomID(),
				ThreadID: r.threadID, StreamPos: j.pos})
		}
		for _, n := range r.notified {
			notifs = append(notifs, storage.PushNotification{UserID: n.userID, RoomID: j.ev.RoomID(),
				EventID: j.ev.EventID(), ThreadID: r.threadID, StreamPos: j.pos, TS: now,
				Actions: string(n.outcome.ActionsJSON), Highlight: n.outcome.Highlight})
		}
		if len(r.notified) > 0 {
			results = append(results, r)
		}
	}
	var rec storage.PushRecorded
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if rec, err = s.db.RecordPush(ctx, notifs, reads); err == nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err != nil {
		s.log.WithError(err).WithField("events", len(batch)).Error("push: recording notifications failed")
		return
	}
	if len(rec.Changed) > 0 && s.cfg.Notifier != nil {
		s.cfg.Notifier.Wake(rec.Changed...)
	}
	s.gateway.notify(ctx, onlyNew(results, rec.Inserted))
}

// onlyNew keeps the notifications that were recorded for the first time:
// an event evaluated again (after a restart) is not pushed again.
func onlyNew(results []result, inserted []storage.PushNotification) []result {
	fresh := make(map[[2]any]bool, len(inserted))
	for _, n := range inserted {
		fresh[[2]any{n.UserID, n.StreamPos}] = true
	}
	out := results[:0]
	for _, r := range results {
		kept := r.notified[:0]
		for _, n := range r.notified {
			if fresh[[2]any{n.userID, r.job.pos}] {
				kept = append(kept, n)
			}
		}
		if len(kept) > 0 {
			r.notified = kept
			out = append(out, r)
		}
	}
	return out
}

// threadOf returns the thread an event belongs to: the root of the m.thread
// relation it has, or that of the event it relates to, following at most
// three relations as the spec recommends; storage.ThreadMain otherwise.
func (sh *shard) threadOf(ctx context.Context, ev *event.Event) string {
	content := ev.Content()
	for hop := 0; hop < 3; hop++ {
		var c struct {
			RelatesTo struct {
				RelType string `json:"rel_type"`
				EventID string `json:"event_id"`
			} `json:"m.relates_to"`
		}
		if json.Unmarshal(content, &c) != nil || c.RelatesTo.EventID == "" {
			return storage.ThreadMain
		}
		if c.RelatesTo.RelType == "m.thread" {
			return c.RelatesTo.EventID
		}
		row, err := sh.s.db.GetEvent(ctx, c.RelatesTo.EventID)
		if err != nil || row.RoomID != ev.RoomID() {
			return storage.ThreadMain
		}
		var wrapper struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(row.JSON), &wrapper) != nil {
			return storage.ThreadMain
		}
		content = wrapper.Content
	}
	return storage.ThreadMain
}

// evaluate runs every recipient's rules on one event.
func (sh *shard) evaluate(ctx context.Context, j job) (result, error) {
	s := sh.s
	ev := j.ev
	r := result{job: j, threadID: storage.ThreadMain}
	ri, err := sh.room(ctx, ev)
	if err != nil {
		return r, err
	}
	r.senderName, r.roomName, r.roomAlias = ri.ctx.DisplayNames[ev.Sender()], ri.name, ri.alias
	recipients := ri.local
	if ev.Type() == "m.room.member" && ev.StateKey() != nil {
		// An invitee is not joined yet, but .m.rule.invite_for_me is for
		// them.
		if m, _ := ev.Membership(); m == "invite" && s.isLocal(*ev.StateKey()) {
			recipients = append(append([]string(nil), recipients...), *ev.StateKey())
		}
	}
	p := s.eval.Prepare(ev, ri.ctx)
	now := s.cfg.Now()
	sender := ev.Sender()
	isState := ev.StateKey() != nil
	isInvite := false
	if ev.Type() == "m.room.member" && isState {
		m, _ := ev.Membership()
		isInvite = m == "invite"
	}
	for _, u := range recipients {
		if u == sender {
			continue
		}
		rules, err := s.compiled(ctx, u, now)
		if err != nil {
			s.log.WithError(err).Warn("push: skipping a user whose rules do not load")
			continue
		}
		// Events the user does not see never notify them: those of users
		// they ignore, invites from them included.
		if rules.ignored[sender] && (!isState || isInvite) {
			continue
		}
		if o := s.eval.Evaluate(p, rules); o != nil && o.Notify {
			r.notified = append(r.notified, evaluated{userID: u, outcome: o})
		}
	}
	if len(r.notified) > 0 || s.isLocal(sender) {
		r.threadID = sh.threadOf(ctx, ev)
	}
	return r, nil
}

func (s *Service) isLocal(userID string) bool {
	return strings.HasSuffix(userID, ":"+s.cfg.ServerName)
}

// progress lets readers wait until the events queued so far are
// evaluated: /sync does, so that a new event's counts come in the same
// response as the event, as the spec requires.
type progress struct {
	mu      gosync.Mutex
	reached map[*shard]uint64
	changed chan struct{}
}

func (p *progress) init() {
	p.reached = map[*shard]uint64{}
	p.changed = make(chan struct{})
}

func (p *progress) done(sh *shard, seq uint64) {
	p.mu.Lock()
	p.reached[sh] = seq
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// waitSeen waits until the room engine has handed over the room's event
// at pos, which /sync is about to return: the engine answers the sender
// before it hands the event over, so /sync can see an event first.
func (s *Service) waitSeen(ctx context.Context, roomID string, pos int64, deadline time.Time) {
	if !s.started.Load() || pos <= s.seenFloor.Load() {
		return
	}
	for {
		s.seenMu.Lock()
		seen := s.seen[roomID]
		s.seenMu.Unlock()
		if seen >= pos || time.Now().After(deadline) || ctx.Err() != nil {
			return
		}
		// The wait is a few scheduler slices at most: polling is simpler
		// than a wake-up per event for the rare reader that needs it.
		time.Sleep(time.Millisecond)
	}
}

// WaitEvaluated waits until every event queued before the call has been
// evaluated and recorded, or until timeout or ctx ends. It reports whether
// it got there.
func (s *Service) WaitEvaluated(ctx context.Context, timeout time.Duration) bool {
	if !s.started.Load() {
		return false // nothing evaluates yet: do not hold readers up
	}
	want := make(map[*shard]uint64, len(s.shards))
	for _, sh := range s.shards {
		sh.mu.Lock()
		want[sh] = sh.enqueued
		sh.mu.Unlock()
	}
	var timer <-chan time.Time
	for {
		p := &s.progress
		p.mu.Lock()
		behind := false
		for sh, seq := range want {
			if p.reached[sh] < seq {
				behind = true
				break
			}
		}
		ch := p.changed
		p.mu.Unlock()
		if !behind {
			return true
		}
		if timer == nil {
			t := time.NewTimer(timeout)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
