package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Transaction limits from the spec.
const (
	maxPDUsPerTxn = 50
	maxEDUsPerTxn = 100
)

// Backoff for unreachable destinations, and catch-up after an outage.
const (
	minBackoff = 2 * time.Second
	maxBackoff = 30 * time.Minute
	// catchUpThreshold: a destination that comes back with more queued
	// than this gets only the latest catchUpPerRoom events of each room;
	// it fetches the rest with get_missing_events if it wants them.
	catchUpThreshold = 200
	catchUpPerRoom   = 10
)

// Sender delivers our events to other servers: a persisted queue per
// destination, drained by one goroutine per destination, so that a dead
// server never delays the others and a restart loses nothing.
type Sender struct {
	a   *API
	db  *storage.DB
	log logrus.FieldLogger

	mu      sync.Mutex
	workers map[string]*destinationWorker
	ctx     context.Context
}

type destinationWorker struct {
	wake chan struct{}
	// alive cuts a backoff short: the destination was just heard from.
	alive chan struct{}
}

// NewSender returns a sender; Start resumes queues left by a previous run.
func NewSender(a *API, db *storage.DB) *Sender {
	return &Sender{a: a, db: db, log: a.cfg.Log.WithField("component", "federation-sender"), workers: map[string]*destinationWorker{}}
}

// Start resumes delivery of everything queued and runs until ctx ends.
func (s *Sender) Start(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	dests, err := s.db.OutboundDestinations(ctx)
	if err != nil {
		return err
	}
	eduDests, err := s.db.EDUDestinations(ctx)
	if err != nil {
		return err
	}
	for _, d := range append(dests, eduDests...) {
		s.poke(d)
	}
	return nil
}

// EDU is an ephemeral data unit for another server.
type EDU struct {
	Type    string
	Content any
}

// EnqueueEDU persists an EDU for destinations and wakes their workers.
// EDUs go in the same transactions as events, up to 100 per transaction.
func (s *Sender) EnqueueEDU(destinations []string, edu EDU) {
	content, err := json.Marshal(edu.Content)
	if err != nil {
		s.log.WithError(err).Error("could not encode an EDU")
		return
	}
	var rows []storage.OutboxEDU
	for _, d := range destinations {
		if d != s.a.cfg.ServerName && s.a.policy.Allowed(d) {
			rows = append(rows, storage.OutboxEDU{Destination: d, Type: edu.Type, Content: string(content)})
		}
	}
	if len(rows) == 0 {
		return
	}
	if err := s.db.EnqueueEDUs(context.Background(), rows); err != nil {
		s.log.WithError(err).Error("could not queue EDUs for federation")
		return
	}
	for _, r := range rows {
		s.poke(r.Destination)
	}
}

// Enqueue persists events for destinations and wakes their workers.
func (s *Sender) Enqueue(destinations []string, evs []*event.Event) {
	var rows []storage.OutboxEvent
	for _, d := range destinations {
		if d == s.a.cfg.ServerName || !s.a.policy.Allowed(d) {
			continue
		}
		for _, ev := range evs {
			rows = append(rows, storage.OutboxEvent{Destination: d, RoomID: ev.RoomID(), EventID: ev.EventID(), JSON: string(ev.JSON())})
		}
	}
	if len(rows) == 0 {
		return
	}
	if err := s.db.EnqueueOutbound(context.Background(), rows); err != nil {
		s.log.WithError(err).Error("could not queue events for federation")
		return
	}
	for _, d := range destinations {
		s.poke(d)
	}
}

// poke starts the destination's worker, or wakes it.
func (s *Sender) poke(dest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return // not started: Start will pick the queue up
	}
	if w, ok := s.workers[dest]; ok {
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
	w := &destinationWorker{wake: make(chan struct{}, 1), alive: make(chan struct{}, 1)}
	s.workers[dest] = w
	go s.run(s.ctx, dest, w)
}

// Alive tells the sender that dest has just made a request to us: a
// destination we were backing off from is up again, so its queue is
// retried now rather than when the backoff ends (after a restart or an
// outage that would otherwise cost up to maxBackoff of delay).
func (s *Sender) Alive(dest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.workers[dest]; ok {
		select {
		case w.alive <- struct{}{}:
		default:
		}
	}
}

// run drains one destination's queue, backing off while it fails.
func (s *Sender) run(ctx context.Context, dest string, w *destinationWorker) {
	log := s.log.WithField("destination", dest)
	backoff := time.Duration(0)
	failedBefore := false
	for {
		if backoff > 0 {
			timer := time.NewTimer(backoff)
			select {
			case <-timer.C:
			case <-w.alive:
				timer.Stop()
			case <-ctx.Done():
				timer.Stop()
				return
			}
			if failedBefore {
				if n, err := s.db.OutboundCount(ctx, dest); err == nil && n > catchUpThreshold {
					log.WithField("queued", n).Info("catching up: sending only the latest events of each room")
					_ = s.db.TrimOutbound(ctx, dest, catchUpPerRoom)
				}
			}
		}
		batch, err := s.db.PendingOutbound(ctx, dest, maxPDUsPerTxn)
		var edus []storage.OutboxEDU
		if err == nil {
			edus, err = s.db.PendingEDUs(ctx, dest, maxEDUsPerTxn)
		}
		if err != nil {
			log.WithError(err).Error("reading the federation queue")
			backoff = minBackoff
			continue
		}
		if len(batch) == 0 && len(edus) == 0 {
			// Nothing queued: stop, unless woken meanwhile.
			s.mu.Lock()
			select {
			case <-w.wake:
				s.mu.Unlock()
				continue
			default:
			}
			delete(s.workers, dest)
			s.mu.Unlock()
			return
		}
		if err := s.sendTxn(ctx, dest, batch, edus); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(backoff*2, minBackoff), maxBackoff)
			failedBefore = true
			log.WithError(err).WithField("retry_in", backoff).Info("transaction failed")
			continue
		}
		backoff, failedBefore = 0, false
		if len(batch) > 0 {
			if err := s.db.AckOutbound(ctx, dest, batch[len(batch)-1].Seq); err != nil {
				log.WithError(err).Error("acknowledging sent events")
			}
		}
		if len(edus) > 0 {
			if err := s.db.AckEDUs(ctx, dest, edus[len(edus)-1].Seq); err != nil {
				log.WithError(err).Error("acknowledging sent EDUs")
			}
		}
	}
}

// sendTxn sends one transaction. The transaction ID is derived from the
// queue positions, so a retry after a lost response repeats the same ID and
// the receiver answers it without processing it twice.
func (s *Sender) sendTxn(ctx context.Context, dest string, batch []storage.OutboxEvent, edus []storage.OutboxEDU) error {
	pdus := make([]json.RawMessage, len(batch))
	for i, e := range batch {
		pdus[i] = json.RawMessage(e.JSON)
	}
	eduList := make([]map[string]any, len(edus))
	for i, e := range edus {
		eduList[i] = map[string]any{"edu_type": e.Type, "content": json.RawMessage(e.Content)}
	}
	var first, last int64 = 0, 0
	if len(batch) > 0 {
		first, last = batch[0].Seq, batch[len(batch)-1].Seq
	}
	var eFirst, eLast int64
	if len(edus) > 0 {
		eFirst, eLast = edus[0].Seq, edus[len(edus)-1].Seq
	}
	txnID := fmt.Sprintf("%d-%d-%d-%d", first, last, eFirst, eLast)
	body := map[string]any{
		"origin":           s.a.cfg.ServerName,
		"origin_server_ts": time.Now().UnixMilli(),
		"pdus":             pdus,
		"edus":             eduList,
	}
	var resp struct {
		PDUs map[string]struct {
			Error string `json:"error"`
		} `json:"pdus"`
	}
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.a.client.Do(tctx, dest, "PUT", "/_matrix/federation/v1/send/"+esc(txnID), body, &resp); err != nil {
		return err
	}
	for id, r := range resp.PDUs {
		if r.Error != "" {
			s.log.WithFields(logrus.Fields{"destination": dest, "event_id": id, "error": r.Error}).Info("destination refused an event")
		}
	}
	return nil
}
