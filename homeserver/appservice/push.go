package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// How events reach the services. One scanner reads the event stream in
// order, up to the committed position, and queues for each service (in
// the same database transaction that records how far it has read) the
// events the service is interested in: a crash anywhere loses nothing and
// queues nothing twice. One pusher per service turns its queue into
// transactions of up to maxTxnItems, stores each before sending it, and
// resends it under the same ID until the service answers 200.
const (
	// maxTxnItems bounds a transaction: events plus ephemeral data.
	maxTxnItems = 100
	// scanBatch is how many events the scanner reads at once.
	scanBatch = 200
	// scanTick is how often the scanner looks at the stream even when no
	// listener woke it (positions abandoned by a failed write, events
	// stored by paths that do not announce themselves).
	scanTick = time.Second
	// idleTick is how often an idle pusher looks at its queue unwoken.
	idleTick = 30 * time.Second
	// maxCachedRooms bounds the member cache; past it the cache starts over.
	maxCachedRooms = 50000
)

type pushState struct {
	pushers   []*pusher
	byID      map[string]*pusher
	scanWake  chan struct{}
	announced atomic.Int64 // highest stream position a listener reported
	members   memberCache

	// positions is how far the stream has been examined for each pusher's
	// service; only the scanner touches it once started.
	positions map[string]int64

	mu      sync.Mutex
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// pusher delivers one service's queue.
type pusher struct {
	reg *Registration
	// wake says that the queue grew; retryNow that the service answered a
	// ping, so a transaction waiting out its backoff may go at once.
	wake, retryNow chan struct{}
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// initPush gives every service with a URL its queue position (new ones
// start at the current end of the stream) and loads the positions.
func (s *Service) initPush(ctx context.Context) error {
	s.push = &pushState{byID: map[string]*pusher{}, scanWake: make(chan struct{}, 1), members: memberCache{s: s}}
	if s.db == nil {
		return nil
	}
	var current int64
	if s.cfg.Rooms != nil {
		current = s.cfg.Rooms.CommittedPosition()
	} else {
		var err error
		if current, err = s.db.MaxStreamPos(ctx); err != nil {
			return err
		}
	}
	for _, r := range s.regs {
		if r.URL == "" {
			continue
		}
		if err := s.db.InitAppServiceStream(ctx, r.ID, current); err != nil {
			return err
		}
		p := &pusher{reg: r, wake: make(chan struct{}, 1), retryNow: make(chan struct{}, 1)}
		s.push.pushers = append(s.push.pushers, p)
		s.push.byID[r.ID] = p
	}
	positions, err := s.db.AppServiceStreamPositions(ctx)
	if err != nil {
		return err
	}
	s.push.positions = positions
	return nil
}

// Start starts pushing: the scanner and one pusher per service with a
// URL. Transactions left unacknowledged by a previous run go first.
func (s *Service) Start() {
	ps := s.push
	if ps == nil || len(ps.pushers) == 0 || s.cfg.Rooms == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps.cancel = cancel
	ps.running.Add(1 + len(ps.pushers))
	go func() {
		defer ps.running.Done()
		s.runScanner(ctx)
	}()
	for _, p := range ps.pushers {
		go func() {
			defer ps.running.Done()
			s.runPusher(ctx, p)
		}()
	}
}

// Stop stops pushing and waits for the pushers: a transaction in flight
// is abandoned and sent again, under the same ID, after the next Start.
func (s *Service) Stop() {
	ps := s.push
	if ps == nil {
		return
	}
	ps.mu.Lock()
	cancel := ps.cancel
	ps.cancel = nil
	ps.mu.Unlock()
	if cancel != nil {
		cancel()
		ps.running.Wait()
	}
}

// OnEvent is the room engine's listener: it wakes the scanner, which reads
// the event from storage once every position before it is committed.
func (s *Service) OnEvent(_ *event.Event, pos int64) {
	ps := s.push
	if ps == nil || len(ps.pushers) == 0 {
		return
	}
	for {
		old := ps.announced.Load()
		if pos <= old || ps.announced.CompareAndSwap(old, pos) {
			break
		}
	}
	poke(ps.scanWake)
}

func (s *Service) runScanner(ctx context.Context) {
	tick := time.NewTicker(scanTick)
	defer tick.Stop()
	for {
		reached, err := s.scan(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WithError(err).Error("appservice: reading the event stream")
		}
		// An event announced before its position was committed (remote
		// events are) is picked up shortly after.
		var soon <-chan time.Time
		if err == nil && s.push.announced.Load() > reached {
			soon = time.After(20 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.push.scanWake:
		case <-tick.C:
		case <-soon:
		}
	}
}

// scan queues the events committed since the last scan for the services
// interested in them, and returns how far it got.
func (s *Service) scan(ctx context.Context) (int64, error) {
	ps := s.push
	target := s.cfg.Rooms.CommittedPosition()
	for {
		from := target
		for _, p := range ps.pushers {
			from = min(from, ps.positions[p.reg.ID])
		}
		if from >= target {
			return target, nil
		}
		rows, err := s.db.StreamEvents(ctx, from, target, scanBatch)
		if err != nil {
			return from, err
		}
		end := target
		if len(rows) == scanBatch {
			end = rows[len(rows)-1].StreamPos
		}
		items := s.interestedItems(ctx, rows)
		var moved []string
		for _, p := range ps.pushers {
			if ps.positions[p.reg.ID] < end {
				moved = append(moved, p.reg.ID)
			}
		}
		if err := s.db.QueueAppServiceEvents(ctx, items, moved, end); err != nil {
			// The member cache may have moved past what is stored; it is
			// rebuilt from the database.
			s.push.members.reset()
			return from, err
		}
		for _, id := range moved {
			ps.positions[id] = end
		}
		woken := map[string]bool{}
		for _, it := range items {
			if !woken[it.ServiceID] {
				woken[it.ServiceID] = true
				poke(ps.byID[it.ServiceID].wake)
			}
		}
	}
}

// interestedItems decides, for each event in order, which services want
// it.
func (s *Service) interestedItems(ctx context.Context, rows []*storage.EventRow) []storage.AppServiceItem {
	ps := s.push
	aliases := map[string][]string{} // per room, for this batch
	var items []storage.AppServiceItem
	for _, row := range rows {
		for _, p := range ps.pushers {
			if ps.positions[p.reg.ID] >= row.StreamPos {
				continue
			}
			if s.interestedInEvent(ctx, p.reg, row, aliases) {
				items = append(items, storage.AppServiceItem{ServiceID: p.reg.ID, Kind: storage.AppServiceEvent, EventID: row.EventID})
			}
		}
		if row.Type == "m.room.member" && row.StateKey != nil {
			ps.members.update(row.RoomID, *row.StateKey, membershipOf(row.JSON))
		}
	}
	return items
}

// interestedInEvent applies the spec's rules: the sender or the target of
// a membership change is one of the service's users, the room is in its
// room namespace or has an alias in its alias namespace, or one of its
// users is joined to the room.
func (s *Service) interestedInEvent(ctx context.Context, r *Registration, row *storage.EventRow, aliases map[string][]string) bool {
	if r.IsUser(row.Sender) {
		return true
	}
	if row.Type == "m.room.member" && row.StateKey != nil && r.IsUser(*row.StateKey) {
		return true
	}
	return s.interestedInRoom(ctx, r, row.RoomID, aliases)
}

func (s *Service) interestedInRoom(ctx context.Context, r *Registration, roomID string, aliases map[string][]string) bool {
	if r.MatchesRoom(roomID) || s.interestedByAlias(ctx, r, roomID, aliases) {
		return true
	}
	return s.push.members.hasUserOf(ctx, roomID, r)
}

// interestedByAlias reports whether one of the room's aliases is in r's
// alias namespaces; aliases memoises the rooms' aliases (nil: no memo).
func (s *Service) interestedByAlias(ctx context.Context, r *Registration, roomID string, aliases map[string][]string) bool {
	if len(r.Aliases) == 0 {
		return false
	}
	list, ok := aliases[roomID]
	if !ok {
		list = s.roomAliases(ctx, roomID)
		if aliases != nil {
			aliases[roomID] = list
		}
	}
	for _, a := range list {
		if m, _ := r.MatchesAlias(a); m {
			return true
		}
	}
	return false
}

// roomAliases lists a room's local aliases and those its canonical alias
// event names.
func (s *Service) roomAliases(ctx context.Context, roomID string) []string {
	list, err := s.db.RoomAliases(ctx, roomID)
	if err != nil {
		s.log.WithError(err).WithField("room_id", roomID).Warn("appservice: reading room aliases")
	}
	if s.cfg.Rooms == nil {
		return list
	}
	if ev, err := s.cfg.Rooms.CurrentStateEvent(ctx, roomID, "m.room.canonical_alias", ""); err == nil && ev != nil {
		var c struct {
			Alias      string   `json:"alias"`
			AltAliases []string `json:"alt_aliases"`
		}
		if json.Unmarshal(ev.Content(), &c) == nil {
			if c.Alias != "" {
				list = append(list, c.Alias)
			}
			list = append(list, c.AltAliases...)
		}
	}
	return list
}

func membershipOf(pdu string) string {
	var ev struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	_ = json.Unmarshal([]byte(pdu), &ev)
	return ev.Content.Membership
}

// memberCache holds, per room, the joined users that some service may act
// as: enough to tell which services a room's events concern without
// reading its members for every event. The scanner keeps it current from
// the membership events it reads.
type memberCache struct {
	s     *Service
	mu    sync.Mutex
	rooms map[string]map[string]bool
}

func (c *memberCache) reset() {
	c.mu.Lock()
	c.rooms = nil
	c.mu.Unlock()
}

// relevant reports whether any service may act as userID.
func (c *memberCache) relevant(userID string) bool {
	for _, r := range c.s.regs {
		if r.IsUser(userID) {
			return true
		}
	}
	return false
}

func (c *memberCache) members(ctx context.Context, roomID string) map[string]bool {
	c.mu.Lock()
	m, ok := c.rooms[roomID]
	c.mu.Unlock()
	if ok {
		return m
	}
	joined, err := c.s.db.RoomMembers(ctx, roomID, "join")
	if err != nil {
		c.s.log.WithError(err).WithField("room_id", roomID).Warn("appservice: reading room members")
		return nil
	}
	m = map[string]bool{}
	for _, j := range joined {
		if c.relevant(j.UserID) {
			m[j.UserID] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if existing, ok := c.rooms[roomID]; ok {
		return existing
	}
	if c.rooms == nil || len(c.rooms) >= maxCachedRooms {
		c.rooms = map[string]map[string]bool{}
	}
	c.rooms[roomID] = m
	return m
}

// update applies a membership change read from the stream. Rooms not
// cached yet are read from the database when needed, which already has it.
func (c *memberCache) update(roomID, userID, membership string) {
	if !c.relevant(userID) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.rooms[roomID]
	if !ok {
		return
	}
	// Copy on write: readers hold the old map without the lock.
	next := make(map[string]bool, len(m)+1)
	for k := range m {
		next[k] = true
	}
	if membership == "join" {
		next[userID] = true
	} else {
		delete(next, userID)
	}
	c.rooms[roomID] = next
}

func (c *memberCache) hasUserOf(ctx context.Context, roomID string, r *Registration) bool {
	for u := range c.members(ctx, roomID) {
		if r.IsUser(u) {
			return true
		}
	}
	return false
}

func (s *Service) runPusher(ctx context.Context, p *pusher) {
	log := s.log.WithField("appservice", p.reg.ID)
	backoff := time.Duration(0)
	for {
		txn, err := s.nextTxn(ctx, p.reg)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.WithError(err).Error("appservice: building a transaction")
			if !sleep(ctx, s.cfg.MinBackoff, nil) {
				return
			}
			continue
		}
		if txn == nil {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-p.retryNow:
			case <-time.After(idleTick):
			}
			continue
		}
		if err := s.sendTxn(ctx, p.reg, txn); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(backoff*2, s.cfg.MinBackoff), s.cfg.MaxBackoff)
			log.WithError(err).WithField("txn_id", txn.TxnID).WithField("retry_in", backoff.String()).
				Info("appservice: transaction not delivered")
			if !sleep(ctx, backoff, p.retryNow) {
				return
			}
			continue
		}
		if backoff > 0 {
			log.Info("appservice: the application service is reachable again")
		}
		backoff = 0
		if err := s.db.CompleteAppServiceTxn(ctx, p.reg.ID, txn.TxnID); err != nil && ctx.Err() == nil {
			// It is sent again; the service ignores a transaction ID it
			// has seen.
			log.WithError(err).Error("appservice: recording a delivered transaction")
		}
	}
}

// sleep waits d, or less when early fires; false means ctx ended.
func sleep(ctx context.Context, d time.Duration, early <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-early:
	}
	return true
}

// nextTxn returns the transaction to send: the unacknowledged one, or a
// new one from the head of the queue; nil when there is nothing to send.
func (s *Service) nextTxn(ctx context.Context, r *Registration) (*storage.AppServiceTxn, error) {
	t, err := s.db.PendingAppServiceTxn(ctx, r.ID)
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	items, err := s.db.AppServiceQueue(ctx, r.ID, maxTxnItems)
	if err != nil || len(items) == 0 {
		return nil, err
	}
	body, err := s.txnBody(ctx, r, items)
	if err != nil {
		return nil, err
	}
	return s.db.StartAppServiceTxn(ctx, r.ID, items[len(items)-1].Seq, body)
}

// txnBody builds a transaction's JSON: events in the client-server
// format, and ephemeral data under both the stable key and MSC2409's,
// which older bridges read.
func (s *Service) txnBody(ctx context.Context, r *Registration, items []storage.AppServiceItem) (string, error) {
	var ids []string
	for _, it := range items {
		if it.Kind == storage.AppServiceEvent {
			ids = append(ids, it.EventID)
		}
	}
	rows, err := s.db.GetEvents(ctx, ids)
	if err != nil {
		return "", err
	}
	byID := make(map[string]*storage.EventRow, len(rows))
	for _, row := range rows {
		byID[row.EventID] = row
	}
	events := []json.RawMessage{}
	var ephemeral, toDevice []json.RawMessage
	for _, it := range items {
		switch it.Kind {
		case storage.AppServiceEphemeral:
			ephemeral = append(ephemeral, json.RawMessage(it.JSON))
		case storage.AppServiceToDevice:
			toDevice = append(toDevice, json.RawMessage(it.JSON))
		case storage.AppServiceEvent:
			row, ok := byID[it.EventID]
			if !ok {
				s.log.WithField("event_id", it.EventID).Warn("appservice: a queued event is gone; skipping it")
				continue
			}
			// Events the service sent itself carry their transaction ID,
			// as for the client that sent them.
			var viewer rooms.Viewer
			if row.TxnUser != "" && r.IsUser(row.TxnUser) {
				viewer = rooms.Viewer{UserID: row.TxnUser, DeviceID: row.TxnDevice}
			}
			ces, err := s.cfg.Rooms.FormatRows(ctx, []*storage.EventRow{row}, viewer)
			if err != nil {
				return "", fmt.Errorf("formatting %s: %w", row.EventID, err)
			}
			b, err := json.Marshal(ces[0])
			if err != nil {
				return "", err
			}
			events = append(events, b)
		}
	}
	body := map[string]any{"events": events}
	if len(ephemeral) > 0 {
		body["ephemeral"] = ephemeral
		body["de.sorunome.msc2409.ephemeral"] = ephemeral
	}
	if len(toDevice) > 0 {
		// Not in the stable spec yet: the proposal's name and the name
		// bridge libraries read.
		body["de.sorunome.msc2409.to_device"] = toDevice
		body["to_device"] = toDevice
	}
	b, err := json.Marshal(body)
	return string(b), err
}

// Ephemeral is typing, receipt or presence data for the services that
// asked for it (receive_ephemeral). The typing, receipt and presence
// services call PushEphemeral with each update.
type Ephemeral struct {
	// RoomID is the room of m.typing and m.receipt; "" for m.presence.
	// Event must then carry it as room_id, as the spec asks.
	RoomID string
	// UserID is the user m.presence is about, or the owner of a private
	// receipt.
	UserID string
	// Private marks data only the services covering UserID may see (an
	// m.read.private receipt): send those apart from the public ones.
	Private bool
	// Event is the data as /sync would show it: {"type": ..., "content": ...}.
	Event json.RawMessage
}

// PushEphemeral queues ephemeral data for the services interested in it:
// room data for services interested in the room (by namespace, alias or a
// joined user), presence for services covering the user or sharing a room
// with them.
func (s *Service) PushEphemeral(ctx context.Context, e Ephemeral) error {
	if s == nil || s.push == nil || len(s.push.pushers) == 0 {
		return nil
	}
	var items []storage.AppServiceItem
	var userRooms []string
	loadedRooms := false
	var joined map[string]bool
	aliases := map[string][]string{}
	for _, p := range s.push.pushers {
		r := p.reg
		if !r.ReceiveEphemeral {
			continue
		}
		var want bool
		switch {
		case e.Private:
			want = r.IsUser(e.UserID)
		case e.RoomID != "":
			// The current members, not the scanner's view, which may not
			// have reached a join that just happened.
			if joined == nil {
				ms, err := s.db.RoomMembers(ctx, e.RoomID, "join")
				if err != nil {
					return err
				}
				joined = map[string]bool{}
				for _, m := range ms {
					joined[m.UserID] = true
				}
			}
			want = r.MatchesRoom(e.RoomID) || s.interestedByAlias(ctx, r, e.RoomID, aliases)
			for u := range joined {
				want = want || r.IsUser(u)
			}
		default:
			want = r.IsUser(e.UserID)
			if !want {
				if !loadedRooms {
					loadedRooms = true
					ms, err := s.db.UserMemberships(ctx, e.UserID, "join")
					if err != nil {
						return err
					}
					for _, m := range ms {
						userRooms = append(userRooms, m.RoomID)
					}
				}
				for _, room := range userRooms {
					if s.push.members.hasUserOf(ctx, room, r) {
						want = true
						break
					}
				}
			}
		}
		if want {
			items = append(items, storage.AppServiceItem{ServiceID: r.ID, Kind: storage.AppServiceEphemeral, JSON: string(e.Event)})
		}
	}
	if err := s.db.QueueAppServiceItems(ctx, items); err != nil {
		return err
	}
	for _, it := range items {
		poke(s.push.byID[it.ServiceID].wake)
	}
	return nil
}

// PushToDevice queues a to-device message for the services whose user
// namespace holds its recipient and that asked for ephemeral events
// (MSC2409/MSC4203: bridges with end-to-end encryption need them).
func (s *Service) PushToDevice(ctx context.Context, m storage.ToDeviceMessage) error {
	if s == nil || s.push == nil || len(s.push.pushers) == 0 {
		return nil
	}
	var items []storage.AppServiceItem
	for _, p := range s.push.pushers {
		if !p.reg.ReceiveEphemeral || !p.reg.IsUser(m.UserID) {
			continue
		}
		b, err := json.Marshal(map[string]any{"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content),
			"to_user_id": m.UserID, "to_device_id": m.DeviceID})
		if err != nil {
			return err
		}
		items = append(items, storage.AppServiceItem{ServiceID: p.reg.ID, Kind: storage.AppServiceToDevice, JSON: string(b)})
	}
	if len(items) == 0 {
		return nil
	}
	if err := s.db.QueueAppServiceItems(ctx, items); err != nil {
		return err
	}
	for _, it := range items {
		poke(s.push.byID[it.ServiceID].wake)
	}
	return nil
}
