package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Rooms is what the push service reads of rooms: the room engine.
type Rooms interface {
	CurrentState(ctx context.Context, roomID string) (map[storage.StateKey]*event.Event, error)
	// CurrentStateEvent returns one event of the current state, or nil.
	CurrentStateEvent(ctx context.Context, roomID, eventType, stateKey string) (*event.Event, error)
	RoomVersion(ctx context.Context, roomID string) (event.RoomVersion, error)
	FormatRows(ctx context.Context, rows []*storage.EventRow, viewer rooms.Viewer) ([]*rooms.ClientEvent, error)
}

// RuleStore keeps each user's push rules: the users service, which stores
// them as their m.push_rules account data.
type RuleStore interface {
	// PushRules returns the stored content, nil when there is none.
	PushRules(ctx context.Context, userID string) ([]byte, error)
	// UpdatePushRules replaces it with what update makes of it, in one
	// transaction; update may return storage.ErrUnchanged.
	UpdatePushRules(ctx context.Context, userID string, update func(old []byte) ([]byte, error)) error
}

// Waker wakes a user's waiting /sync requests: the sync notifier.
type Waker interface {
	Wake(userIDs ...string)
}

// Config wires the service.
type Config struct {
	DB         *storage.DB
	ServerName string
	Rooms      Rooms
	Rules      RuleStore
	Notifier   Waker
	Log        logrus.FieldLogger
	// Workers is the number of evaluation workers; rooms are spread over
	// them so that each room's events are evaluated in order. 0 means 4.
	Workers int
	// AllowPrivateGateways lets pushers deliver to loopback, private and
	// other non-public addresses (see config push.allow_private_addresses).
	AllowPrivateGateways bool
	// HTTPClient, when set, replaces the gateway client (tests).
	HTTPClient *http.Client
	// Retention is how long notifications are kept for /notifications;
	// 0 means 30 days.
	Retention time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Ignored returns the users a local user ignores (their
	// m.ignored_user_list): their events never notify. Nil: no one is
	// ignored.
	Ignored func(ctx context.Context, userID string) (map[string]bool, error)
}

// Service is the push notification service.
type Service struct {
	cfg  Config
	log  logrus.FieldLogger
	db   *storage.DB
	eval *Evaluator

	cacheMu gosync.Mutex
	cache   map[string]*compiledRules
	// epoch changes whenever a user's rules change, so that a load that
	// raced with a change does not cache what it read before it.
	epoch uint64

	shards   []*shard
	progress progress
	gateway  *gateway

	runMu   gosync.Mutex
	running bool
	started atomic.Bool
	// maxSeen is the highest stream position queued, for the watermark.
	maxSeen atomic.Int64
	// seen is the highest position handed over per room, and seenFloor
	// the newest position at Start: events up to it were evaluated before
	// or are caught up. /sync uses them to wait for the events it returns.
	seenMu    gosync.Mutex
	seen      map[string]int64
	seenFloor atomic.Int64
	stop      chan struct{}
	wg        gosync.WaitGroup
}

// maxCachedUsers bounds the compiled rules kept in memory.
const maxCachedUsers = 200000

// cacheTTL is how long compiled rules and ignore lists are used before
// they are read again: rule changes made here invalidate them at once, but
// the ignore list is account data the push service is not told about.
const cacheTTL = time.Minute

// New returns the push service. Call Start to begin evaluating events
// (events that arrive before are queued) and Stop to end.
func New(cfg Config) *Service {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		cfg.Log = l
	}
	s := &Service{cfg: cfg, log: cfg.Log, db: cfg.DB, eval: NewEvaluator(), cache: map[string]*compiledRules{},
		seen: map[string]int64{}}
	s.progress.init()
	for range cfg.Workers {
		s.shards = append(s.shards, newShard(s))
	}
	s.gateway = newGateway(s)
	return s
}

// decodeStored reads stored m.push_rules content; anything unusable counts
// as no stored rules.
func decodeStored(raw []byte) *Ruleset {
	if len(raw) == 0 {
		return nil
	}
	var c PushRulesContent
	if json.Unmarshal(raw, &c) != nil || c.Global == nil {
		return nil
	}
	return c.Global
}

// Rules returns the user's effective push rules.
func (s *Service) Rules(ctx context.Context, userID string) (*Ruleset, error) {
	raw, err := s.cfg.Rules.PushRules(ctx, userID)
	if err != nil {
		return nil, err
	}
	return Merge(decodeStored(raw), userID), nil
}

// PushRulesEvent returns the content of the user's m.push_rules event as
// /sync shows it.
func (s *Service) PushRulesEvent(ctx context.Context, userID string) (json.RawMessage, error) {
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(PushRulesContent{Global: rs})
}

// Rule returns one of the user's rules, or ErrNotFound.
func (s *Service) Rule(ctx context.Context, userID string, k Kind, ruleID string) (*Rule, error) {
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return nil, err
	}
	r, _ := rs.Find(k, ruleID)
	if r == nil {
		return nil, ErrNotFound
	}
	return r, nil
}

// update changes the user's rules in one transaction and drops their
// compiled rules from the cache.
func (s *Service) update(ctx context.Context, userID string, change func(*Ruleset) error) error {
	err := s.cfg.Rules.UpdatePushRules(ctx, userID, func(old []byte) ([]byte, error) {
		rs := Merge(decodeStored(old), userID)
		if err := change(rs); err != nil {
			return nil, err
		}
		return json.Marshal(PushRulesContent{Global: rs})
	})
	s.invalidate(userID)
	if errors.Is(err, storage.ErrUnchanged) {
		return nil
	}
	return err
}

// PutRule adds or replaces a user-defined rule (see the /pushrules API).
func (s *Service) PutRule(ctx context.Context, userID string, k Kind, ruleID, before, after string, in RuleInput) error {
	return s.update(ctx, userID, func(rs *Ruleset) error { return putRule(rs, k, ruleID, before, after, in) })
}

// DeleteRule removes a user-defined rule.
func (s *Service) DeleteRule(ctx context.Context, userID string, k Kind, ruleID string) error {
	return s.update(ctx, userID, func(rs *Ruleset) error { return deleteRule(rs, k, ruleID) })
}

// SetRuleEnabled enables or disables a rule.
func (s *Service) SetRuleEnabled(ctx context.Context, userID string, k Kind, ruleID string, enabled bool) error {
	return s.update(ctx, userID, func(rs *Ruleset) error { return setEnabled(rs, k, ruleID, enabled) })
}

// SetRuleActions replaces a rule's actions.
func (s *Service) SetRuleActions(ctx context.Context, userID string, k Kind, ruleID string, actions []json.RawMessage) error {
	return s.update(ctx, userID, func(rs *Ruleset) error { return setActions(rs, k, ruleID, actions) })
}

// Invalidate drops what the service keeps of a user's account data (push
// rules and ignore list), to be read again at the next event: call it
// when the user's account data changed.
func (s *Service) Invalidate(userID string) { s.invalidate(userID) }

func (s *Service) invalidate(userID string) {
	s.cacheMu.Lock()
	delete(s.cache, userID)
	s.epoch++
	s.cacheMu.Unlock()
}

// compiled returns the user's compiled rules and ignore list, from the
// cache when it can.
// now is passed in so that one event's many users cost one clock read.
func (s *Service) compiled(ctx context.Context, userID string, now time.Time) (*compiledRules, error) {
	s.cacheMu.Lock()
	c, ok := s.cache[userID]
	epoch := s.epoch
	s.cacheMu.Unlock()
	if ok && now.Sub(c.loaded) < cacheTTL {
		return c, nil
	}
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("push: loading %s's rules: %w", userID, err)
	}
	c = s.eval.Compile(userID, rs)
	c.loaded = now
	if s.cfg.Ignored != nil {
		if c.ignored, err = s.cfg.Ignored(ctx, userID); err != nil {
			return nil, fmt.Errorf("push: loading %s's ignore list: %w", userID, err)
		}
	}
	s.cacheMu.Lock()
	if s.epoch == epoch {
		if len(s.cache) >= maxCachedUsers {
			clear(s.cache)
		}
		s.cache[userID] = c
	}
	s.cacheMu.Unlock()
	return c, nil
}

// Start begins evaluating queued and new events and delivering to push
// gateways. It also prunes old notifications once an hour.
func (s *Service) Start() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.running {
		return
	}
	s.running = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	upTo, err := s.db.MaxStreamPos(ctx)
	cancel()
	if err != nil {
		s.log.WithError(err).Warn("push: reading the stream position; nothing will be caught up")
		upTo = 0
	}
	s.seenFloor.Store(upTo)
	s.started.Store(true)
	s.stop = make(chan struct{})
	for _, sh := range s.shards {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sh.run(s.stop)
		}()
	}
	s.gateway.start()
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.pruneLoop(s.stop)
	}()
	catchUp := make(chan struct{})
	go func() {
		defer s.wg.Done()
		defer close(catchUp)
		s.catchUp(s.stop, upTo)
	}()
	go func() {
		defer s.wg.Done()
		s.watermarkLoop(s.stop, catchUp)
	}()
}

// Stop evaluates what is still queued, then stops the workers and the
// gateway deliveries (deliveries waiting for a retry are dropped: the
// retry queue is in memory). Events the room engine hands over after Stop
// are evaluated after the next Start (see catchUp).
func (s *Service) Stop() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if !s.running {
		return
	}
	s.running = false
	s.started.Store(false)
	close(s.stop)
	s.wg.Wait()
	s.gateway.stop()
}

func (s *Service) pruneLoop(stop <-chan struct{}) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			n, err := s.db.PrunePushNotifications(ctx, s.cfg.Now().Add(-s.cfg.Retention).UnixMilli())
			cancel()
			if err != nil {
				s.log.WithError(err).Warn("push: pruning old notifications")
			} else if n > 0 {
				s.log.WithField("deleted", n).Debug("push: pruned old notifications")
			}
		}
	}
}
