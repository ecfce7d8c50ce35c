// Package presence tracks whether users are online, idle (unavailable) or
// offline, with a status message and the time of their last activity.
//
// Local users' presence follows their clients: /sync requests keep a user
// connected (set_presence chooses online, unavailable or, with offline,
// nothing), PUT /presence sets it explicitly, and sending events counts as
// activity. A user who stops syncing goes offline after SyncTimeout; an
// online user inactive for IdleTimeout becomes unavailable. Remote users'
// presence arrives in m.presence EDUs. Changes are stored with a position
// of the presence stream, shown in /sync to the users who share a room
// with the user, and sent to the other servers those users are on.
//
// With presence disabled the service does nothing at all: no storage, no
// tracking, no EDUs, and its /sync extension runs no query.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/parley-chat/parley/matrix/id"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/storage"
)

// Presence states.
const (
	Online      = "online"
	Unavailable = "unavailable"
	Offline     = "offline"
)

// Defaults of the timeouts in Config.
const (
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultSyncTimeout  = 30 * time.Second
	DefaultActiveWindow = time.Minute
)

// MaxStatusLength bounds status messages, in bytes.
const MaxStatusLength = 1024

// Errors a client can cause (test with errors.Is).
var (
	// ErrForbidden: the caller may not see (or set) this user's presence.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalidParam: an unknown presence state or an overlong status.
	ErrInvalidParam = errors.New("invalid parameter")
)

// Notifier wakes the /sync requests of users.
type Notifier interface {
	Wake(userIDs ...string)
}

// Federation sends EDUs to other servers.
type Federation interface {
	SendEDU(destinations []string, eduType string, content any)
}

// Config wires the service.
type Config struct {
	// Enabled turns presence on; off, the service does nothing.
	Enabled    bool
	ServerName string
	DB         *storage.DB
	Notifier   Notifier
	Log        logrus.FieldLogger
	// IdleTimeout turns an online user without activity unavailable.
	IdleTimeout time.Duration
	// SyncTimeout turns a user offline once no /sync of theirs has been
	// running for this long.
	SyncTimeout time.Duration
	// ActiveWindow is how long after an activity a user counts as
	// currently active. While they are, further activity is not
	// broadcast: clients take currently_active to mean "active now".
	ActiveWindow time.Duration
}

// Service tracks presence.
type Service struct {
	cfg Config
	fed atomic.Pointer[Federation]
	// observer is told of every stored change (see SetObserver).
	observer atomic.Pointer[func(userID string, st Status)]
	now      func() time.Time

	mu gosync.Mutex
	// local holds the local users with presence to track: those who are
	// not offline, or who are syncing.
	local map[string]*localUser
}

// localUser is a local user's presence as tracked in memory.
type localUser struct {
	mu gosync.Mutex
	// loaded: state holds what storage holds. removed: the user was
	// dropped from Service.local; whoever holds it must look again.
	loaded, removed bool
	// state is the presence as stored, which is what clients were told.
	state storage.Presence
	// lastActive is the latest activity (milliseconds), ahead of
	// state.LastActiveTS while the user is currently active.
	lastActive int64
	// syncing counts the user's /sync requests in flight that keep them
	// connected; lastSync is when the last one ended.
	syncing  int
	lastSync time.Time
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = DefaultSyncTimeout
	}
	if cfg.ActiveWindow <= 0 {
		cfg.ActiveWindow = DefaultActiveWindow
	}
	return &Service{cfg: cfg, now: time.Now, local: map[string]*localUser{}}
}

// Enabled reports whether presence is on.
func (s *Service) Enabled() bool { return s.cfg.Enabled }

// SetFederation installs the sender of EDUs to other servers.
func (s *Service) SetFederation(f Federation) { s.fed.Store(&f) }

func (s *Service) isLocal(userID string) bool { return id.ServerOf(userID) == s.cfg.ServerName }

// Run applies the timeouts until ctx ends. Local users still online from
// before a restart get SyncTimeout to come back before going offline.
func (s *Service) Run(ctx context.Context) {
	if !s.cfg.Enabled {
		return
	}
	if rows, err := s.cfg.DB.PresenceNotOffline(ctx); err != nil {
		s.cfg.Log.WithError(err).Warn("presence: loading the users online before the restart")
	} else {
		now := s.now()
		s.mu.Lock()
		for _, p := range rows {
			if s.isLocal(p.UserID) && s.local[p.UserID] == nil {
				s.local[p.UserID] = &localUser{loaded: true, state: p, lastActive: p.LastActiveTS, lastSync: now}
			}
		}
		s.mu.Unlock()
	}
	tick := min(s.cfg.SyncTimeout, s.cfg.IdleTimeout, s.cfg.ActiveWindow) / 4
	t := time.NewTicker(max(tick, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.applyTimeouts(ctx)
		}
	}
}

// applyTimeouts moves users who stopped syncing offline, idle users to
// unavailable, and ends currently_active; it forgets offline users who do
// not sync.
func (s *Service) applyTimeouts(ctx context.Context) {
	s.mu.Lock()
	users := make([]string, 0, len(s.local))
	for id := range s.local {
		users = append(users, id)
	}
	s.mu.Unlock()
	for _, id := range users {
		_ = s.update(ctx, id, func(u *localUser, now time.Time) (string, string, bool) {
			p, status := u.state.Presence, u.state.StatusMsg
			nowMS := now.UnixMilli()
			switch {
			case p != Offline && u.syncing == 0 && now.Sub(u.lastSync) > s.cfg.SyncTimeout:
				p = Offline
			case p == Online && nowMS-u.lastActive > s.cfg.IdleTimeout.Milliseconds():
				p = Unavailable
			}
			return p, status, p == Online && nowMS-u.lastActive <= s.cfg.ActiveWindow.Milliseconds()
		})
		s.mu.Lock()
		if u := s.local[id]; u != nil && u.mu.TryLock() {
			if u.state.Presence == Offline && u.syncing == 0 {
				u.removed = true
				delete(s.local, id)
			}
			u.mu.Unlock()
		}
		s.mu.Unlock()
	}
}

// update changes a local user's presence: change returns the new state,
// status message and currently_active from the tracked user, and the
// change is stored (and told to those concerned) when any of them
// differs from what clients were told. change may also adjust the
// tracking fields.
func (s *Service) update(ctx context.Context, userID string, change func(u *localUser, now time.Time) (presence, status string, active bool)) error {
	u, err := s.acquire(ctx, userID)
	if err != nil {
		return err
	}
	now := s.now()
	p, status, active := change(u, now)
	if p == u.state.Presence && status == u.state.StatusMsg && active == u.state.CurrentlyActive {
		u.mu.Unlock()
		return nil
	}
	next := storage.Presence{UserID: userID, Presence: p, StatusMsg: status, LastActiveTS: u.lastActive, CurrentlyActive: active}
	pos, err := s.cfg.DB.PutPresence(ctx, next)
	if err != nil {
		u.mu.Unlock()
		return err
	}
	next.StreamPos = pos
	u.state = next
	u.mu.Unlock()
	s.announce(ctx, next)
	return nil
}

// acquire returns the tracked local user, loaded and locked.
func (s *Service) acquire(ctx context.Context, userID string) (*localUser, error) {
	for {
		s.mu.Lock()
		u := s.local[userID]
		if u == nil {
			u = &localUser{lastSync: s.now()}
			s.local[userID] = u
		}
		s.mu.Unlock()
		u.mu.Lock()
		if u.removed {
			u.mu.Unlock()
			continue
		}
		if !u.loaded {
			p, err := s.cfg.DB.GetPresence(ctx, userID)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				u.state = storage.Presence{UserID: userID, Presence: Offline}
			case err != nil:
				u.mu.Unlock()
				return nil, err
			default:
				u.state = *p
			}
			u.lastActive = u.state.LastActiveTS
			u.loaded = true
		}
		return u, nil
	}
}

// SetObserver installs a function told of every presence change, local
// or remote (application services receive presence this way).
func (s *Service) SetObserver(f func(userID string, st Status)) { s.observer.Store(&f) }

func (s *Service) observe(p storage.Presence) {
	if f := s.observer.Load(); f != nil {
		(*f)(p.UserID, s.status(p))
	}
}

// announce wakes the users who share a room with the user (and the user)
// and sends a local user's presence to the other servers they are on.
func (s *Service) announce(ctx context.Context, p storage.Presence) {
	s.observe(p)
	users, err := s.cfg.DB.UsersSharingRooms(ctx, p.UserID)
	if err != nil {
		s.cfg.Log.WithError(err).Warn("presence: listing the users to tell")
		return
	}
	s.cfg.Notifier.Wake(users...)
	if s.isLocal(p.UserID) {
		s.federate(id.ServersOf(users, s.cfg.ServerName), []storage.Presence{p})
	}
}

// Set is PUT /presence/{userId}/status: the user sets their presence and
// status message (an empty one clears it), which counts as activity.
func (s *Service) Set(ctx context.Context, userID, presence, statusMsg string) error {
	if err := checkState(presence); err != nil {
		return err
	}
	if len(statusMsg) > MaxStatusLength {
		return fmt.Errorf("%w: status_msg is longer than %d bytes", ErrInvalidParam, MaxStatusLength)
	}
	if !s.cfg.Enabled {
		return nil
	}
	return s.update(ctx, userID, func(u *localUser, now time.Time) (string, string, bool) {
		u.lastActive = now.UnixMilli()
		// Setting presence is a sign of life, like a /sync.
		u.lastSync = now
		return presence, statusMsg, presence == Online
	})
}

func checkState(p string) error {
	switch p {
	case Online, Unavailable, Offline:
		return nil
	}
	return fmt.Errorf("%w: presence must be online, unavailable or offline", ErrInvalidParam)
}

// Syncing is called at the start of every /sync with its set_presence
// parameter ("" means online) and returns the function to call when the
// request ends. While a /sync runs, and for SyncTimeout after, the user is
// connected: an offline user comes online (or unavailable, as asked). With
// "offline" the request does not count.
func (s *Service) Syncing(ctx context.Context, userID, setPresence string) (done func()) {
	nothing := func() {}
	if !s.cfg.Enabled || setPresence == Offline {
		return nothing
	}
	if setPresence == "" {
		setPresence = Online
	}
	if checkState(setPresence) != nil {
		return nothing
	}
	err := s.update(ctx, userID, func(u *localUser, now time.Time) (string, string, bool) {
		u.syncing++
		u.lastSync = now
		p, active := u.state.Presence, u.state.CurrentlyActive
		switch {
		case p == Offline && setPresence == Online:
			// Coming online is an activity.
			p, active = Online, true
			u.lastActive = now.UnixMilli()
		case setPresence == Unavailable && p != Unavailable:
			p, active = Unavailable, false
		}
		return p, u.state.StatusMsg, active
	})
	if err != nil {
		s.cfg.Log.WithError(err).WithField("user_id", userID).Warn("presence: recording a /sync")
		return nothing
	}
	return func() {
		s.mu.Lock()
		u := s.local[userID]
		s.mu.Unlock()
		if u == nil {
			return
		}
		u.mu.Lock()
		if u.syncing > 0 {
			u.syncing--
		}
		u.lastSync = s.now()
		u.mu.Unlock()
	}
}

// Active records an activity of a local user, such as sending an event:
// it refreshes their last active time and brings them back from
// unavailable to online (not from offline, which may be a wish to appear
// so). While the user is currently active this touches memory only.
func (s *Service) Active(ctx context.Context, userID string) {
	if !s.cfg.Enabled || !s.isLocal(userID) {
		return
	}
	err := s.update(ctx, userID, func(u *localUser, now time.Time) (string, string, bool) {
		u.lastActive = now.UnixMilli()
		p := u.state.Presence
		if p == Unavailable {
			p = Online
		}
		return p, u.state.StatusMsg, p == Online
	})
	if err != nil {
		s.cfg.Log.WithError(err).WithField("user_id", userID).Warn("presence: recording an activity")
	}
}

// Status is a user's presence as the client API shows it.
type Status struct {
	Presence        string  `json:"presence"`
	LastActiveAgo   *int64  `json:"last_active_ago,omitempty"`
	StatusMsg       *string `json:"status_msg,omitempty"`
	CurrentlyActive *bool   `json:"currently_active,omitempty"`
}

// Get is GET /presence/{userId}/status: the presence of userID as viewer
// may see it, which needs them to share a room (ErrForbidden otherwise).
// With presence disabled everyone is offline.
func (s *Service) Get(ctx context.Context, viewer, userID string) (*Status, error) {
	if !s.cfg.Enabled {
		return &Status{Presence: Offline}, nil
	}
	if viewer != userID {
		ok, err := s.cfg.DB.ShareRoom(ctx, viewer, userID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: you do not share a room with %s", ErrForbidden, userID)
		}
	}
	p, err := s.current(ctx, userID)
	if err != nil {
		return nil, err
	}
	st := s.status(p)
	return &st, nil
}

// current is the user's presence with an up-to-date last active time.
func (s *Service) current(ctx context.Context, userID string) (storage.Presence, error) {
	if s.isLocal(userID) {
		if p, ok := s.tracked(userID); ok {
			return p, nil
		}
	}
	p, err := s.cfg.DB.GetPresence(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Presence{UserID: userID, Presence: Offline}, nil
	}
	if err != nil {
		return storage.Presence{}, err
	}
	return s.withLastActive(*p), nil
}

// tracked is the presence of a local user tracked in memory, with an
// up-to-date last active time; false when the user is not tracked.
func (s *Service) tracked(userID string) (storage.Presence, bool) {
	s.mu.Lock()
	u := s.local[userID]
	s.mu.Unlock()
	if u == nil {
		return storage.Presence{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.loaded {
		return storage.Presence{}, false
	}
	p := u.state
	p.LastActiveTS = u.lastActive
	return p, true
}

// withLastActive brings a stored local presence's last active time up to
// date from memory.
func (s *Service) withLastActive(p storage.Presence) storage.Presence {
	if !s.isLocal(p.UserID) {
		return p
	}
	s.mu.Lock()
	u := s.local[p.UserID]
	s.mu.Unlock()
	if u != nil {
		u.mu.Lock()
		if u.loaded && u.lastActive > p.LastActiveTS {
			p.LastActiveTS = u.lastActive
		}
		u.mu.Unlock()
	}
	return p
}

func (s *Service) status(p storage.Presence) Status {
	st := Status{Presence: p.Presence}
	if p.LastActiveTS > 0 {
		ago := max(s.now().UnixMilli()-p.LastActiveTS, 0)
		st.LastActiveAgo = &ago
	}
	if p.StatusMsg != "" {
		msg := p.StatusMsg
		st.StatusMsg = &msg
	}
	if p.Presence == Online {
		active := p.CurrentlyActive
		st.CurrentlyActive = &active
	}
	return st
}

// pushEntry is one user's presence in an m.presence EDU.
type pushEntry struct {
	UserID          string  `json:"user_id"`
	Presence        string  `json:"presence"`
	StatusMsg       *string `json:"status_msg,omitempty"`
	LastActiveAgo   int64   `json:"last_active_ago"`
	CurrentlyActive bool    `json:"currently_active"`
}

type presenceEDU struct {
	Push []pushEntry `json:"push"`
}

// federate sends presence to servers.
func (s *Service) federate(servers []string, ps []storage.Presence) {
	f := s.fed.Load()
	if f == nil || len(servers) == 0 || len(ps) == 0 {
		return
	}
	edu := presenceEDU{Push: make([]pushEntry, 0, len(ps))}
	for _, p := range ps {
		st := s.status(p)
		e := pushEntry{UserID: p.UserID, Presence: p.Presence, StatusMsg: st.StatusMsg, CurrentlyActive: p.Presence == Online && p.CurrentlyActive}
		if st.LastActiveAgo != nil {
			e.LastActiveAgo = *st.LastActiveAgo
		}
		edu.Push = append(edu.Push, e)
	}
	(*f).SendEDU(servers, "m.presence", edu)
}

// HandleEDU stores the presence of an m.presence EDU from origin: only of
// origin's own users, and only of those who share a room with a local user.
func (s *Service) HandleEDU(ctx context.Context, origin string, content json.RawMessage) {
	if !s.cfg.Enabled || origin == s.cfg.ServerName {
		return
	}
	var edu struct {
		Push []struct {
			UserID          string  `json:"user_id"`
			Presence        string  `json:"presence"`
			StatusMsg       *string `json:"status_msg"`
			LastActiveAgo   int64   `json:"last_active_ago"`
			CurrentlyActive bool    `json:"currently_active"`
		} `json:"push"`
	}
	if json.Unmarshal(content, &edu) != nil {
		return
	}
	for _, e := range edu.Push {
		if id.ServerOf(e.UserID) != origin || checkState(e.Presence) != nil {
			continue
		}
		users, err := s.cfg.DB.UsersSharingRooms(ctx, e.UserID)
		if err != nil {
			s.cfg.Log.WithError(err).Warn("presence: listing the users to tell")
			return
		}
		if !s.anyLocal(users) {
			continue
		}
		p := storage.Presence{UserID: e.UserID, Presence: e.Presence, LastActiveTS: s.now().UnixMilli() - max(e.LastActiveAgo, 0),
			CurrentlyActive: e.Presence == Online && e.CurrentlyActive}
		if e.StatusMsg != nil && len(*e.StatusMsg) <= MaxStatusLength {
			p.StatusMsg = *e.StatusMsg
		}
		if _, err := s.cfg.DB.PutPresence(ctx, p); err != nil {
			s.cfg.Log.WithError(err).Warn("presence: storing a remote user's presence")
			return
		}
		s.observe(p)
		s.cfg.Notifier.Wake(users...)
	}
}

func (s *Service) anyLocal(userIDs []string) bool {
	for _, u := range userIDs {
		if s.isLocal(u) {
			return true
		}
	}
	return false
}

// MemberJoined sends presence to servers that newly share a room: a remote
// user's join brings them the presence of the room's local members, a
// local user's join brings the room's other servers that user's presence.
// The room engine's listener calls it (in a goroutine of its own).
func (s *Service) MemberJoined(ctx context.Context, roomID, userID string) {
	if !s.cfg.Enabled || s.fed.Load() == nil {
		return
	}
	if s.isLocal(userID) {
		s.localJoined(ctx, roomID, userID)
	} else {
		s.remoteJoined(ctx, roomID, userID)
	}
}

// localJoined sends a local joiner's presence to the room's other servers.
// The joiner's presence comes first: an offline joiner (a bridged user who
// never syncs, say) has nothing to send, and the room's members, thousands
// in a large room, are listed only when there is something to send.
func (s *Service) localJoined(ctx context.Context, roomID, userID string) {
	p, err := s.current(ctx, userID)
	if err != nil || p.Presence == Offline {
		return
	}
	members, err := s.cfg.DB.RoomMembers(ctx, roomID, "join")
	if err != nil {
		s.cfg.Log.WithError(err).WithField("room_id", roomID).Warn("presence: listing members")
		return
	}
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.UserID)
	}
	s.federate(id.ServersOf(ids, s.cfg.ServerName), []storage.Presence{p})
}

// remoteJoined sends the remote joiner's server the presence of the
// room's local members who are not offline. Those are all tracked in
// memory (see Service.local; Run loads the ones a restart left online):
// with no one tracked there is nothing to send and the members are not
// listed; only the local members are read (RoomMembersOf), and their
// presence from memory, not with a query each.
func (s *Service) remoteJoined(ctx context.Context, roomID, userID string) {
	s.mu.Lock()
	none := len(s.local) == 0
	s.mu.Unlock()
	if none {
		return
	}
	members, err := s.cfg.DB.RoomMembersOf(ctx, roomID, "join", s.cfg.ServerName)
	if err != nil {
		s.cfg.Log.WithError(err).WithField("room_id", roomID).Warn("presence: listing members")
		return
	}
	var ps []storage.Presence
	for _, m := range members {
		if !s.isLocal(m.UserID) {
			continue // LIKE matched more than the server part would
		}
		if p, ok := s.tracked(m.UserID); ok && p.Presence != Offline {
			ps = append(ps, p)
		}
	}
	s.federate([]string{id.ServerOf(userID)}, ps)
}
