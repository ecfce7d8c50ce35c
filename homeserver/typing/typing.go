// Package typing keeps track of who is typing in which room: set by local
// users through the client API and by other servers through m.typing EDUs,
// forgotten when the typing times out, shown in /sync as the full list of
// a room's typing users whenever it changes.
//
// Typing lasts seconds and clients keep renewing it, so it is held in
// memory only: after a restart everyone has simply stopped typing.
package typing

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/parley-chat/parley/matrix/id"
	"sort"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Timeouts of typing notifications.
const (
	// DefaultTimeout applies when a client says it is typing without a
	// timeout.
	DefaultTimeout = 30 * time.Second
	// MaxTimeout bounds what a client may ask for, so that a forgotten
	// "typing" does not linger.
	MaxTimeout = 2 * time.Minute
	// RemoteTimeout is how long a remote user stays typing: m.typing EDUs
	// carry no timeout, and the sending server renews them while its user
	// keeps typing.
	RemoteTimeout = time.Minute
)

// ErrForbidden means that the user may not type in the room: they are not
// joined to it.
var ErrForbidden = errors.New("forbidden")

// Rooms is what the service needs to know of rooms.
type Rooms interface {
	// IsJoined reports whether the user is joined to the room now (false
	// for a room the server does not know).
	IsJoined(ctx context.Context, roomID, userID string) (bool, error)
	// JoinedMembers lists the users, local and remote, joined to the room.
	JoinedMembers(ctx context.Context, roomID string) ([]string, error)
	// JoinedAt is the event stream position of the user's current
	// membership of the room and whether it is a join.
	JoinedAt(ctx context.Context, roomID, userID string) (pos int64, joined bool, err error)
}

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
	ServerName string
	Rooms      Rooms
	Notifier   Notifier
	Log        logrus.FieldLogger
}

// Service holds the typing users of every room.
type Service struct {
	cfg Config
	fed atomic.Pointer[Federation]
	// observer is told of every change (see SetObserver).
	observer atomic.Pointer[func(roomID string, userIDs []string)]

	// pos numbers the changes of typing lists: the position /sync tokens
	// carry. It starts at the clock's milliseconds so that it keeps
	// increasing across restarts, and tokens issued before one still
	// order before every change after it.
	pos   atomic.Int64
	mu    gosync.Mutex
	rooms map[string]*room
}

// room is one room's typing users.
type room struct {
	typing map[string]*typist
	// pos is the position of the list's last change.
	pos int64
}

type typist struct {
	expires time.Time
	timer   *time.Timer
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	s := &Service{cfg: cfg, rooms: map[string]*room{}}
	s.pos.Store(time.Now().UnixMilli())
	return s
}

// SetFederation installs the sender of EDUs to other servers.
func (s *Service) SetFederation(f Federation) { s.fed.Store(&f) }

// SetTyping records that a local user is typing in a room for timeout (0
// means DefaultTimeout; it is capped at MaxTimeout), or has stopped. The
// user must be joined to the room (ErrForbidden otherwise).
func (s *Service) SetTyping(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration) error {
	joined, err := s.cfg.Rooms.IsJoined(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if !joined {
		return ErrForbidden
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	changed := s.set(roomID, userID, typing, min(timeout, MaxTimeout))
	if changed {
		s.wakeRoom(ctx, roomID)
	}
	// Typing is sent on every renewal, not only on changes, since other
	// servers time it out on their own.
	if typing || changed {
		s.federate(ctx, roomID, userID, typing)
	}
	return nil
}

// typingEDU is the content of an m.typing EDU.
type typingEDU struct {
	RoomID string `json:"room_id"`
	UserID string `json:"user_id"`
	Typing bool   `json:"typing"`
}

// HandleEDU applies an m.typing EDU from origin: only for origin's own
// users, and only for users joined to the room, as the spec asks.
func (s *Service) HandleEDU(ctx context.Context, origin string, content json.RawMessage) {
	var edu typingEDU
	if err := json.Unmarshal(content, &edu); err != nil || edu.RoomID == "" {
		return
	}
	if id.ServerOf(edu.UserID) != origin || origin == s.cfg.ServerName {
		return
	}
	joined, err := s.cfg.Rooms.IsJoined(ctx, edu.RoomID, edu.UserID)
	if err != nil || !joined {
		return
	}
	if s.set(edu.RoomID, edu.UserID, edu.Typing, RemoteTimeout) {
		s.wakeRoom(ctx, edu.RoomID)
	}
}

// MemberLeft forgets a user's typing in a room they are no longer joined
// to. The room engine's listener calls it for every membership change
// other than a join; it returns at once, waking the room's members in the
// background.
func (s *Service) MemberLeft(roomID, userID string) {
	if s.set(roomID, userID, false, 0) {
		go s.wakeRoom(context.Background(), roomID)
	}
}

// Typing lists the users typing in a room, sorted.
func (s *Service) Typing(roomID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked(s.rooms[roomID])
}

// set changes one user's typing and reports whether the room's list
// changed.
func (s *Service) set(roomID, userID string, typing bool, timeout time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		if !typing {
			return false
		}
		r = &room{typing: map[string]*typist{}}
		s.rooms[roomID] = r
	}
	t, was := r.typing[userID]
	if !typing {
		if !was {
			return false
		}
		t.timer.Stop()
		delete(r.typing, userID)
		r.pos = s.pos.Add(1)
		return true
	}
	expires := time.Now().Add(timeout)
	if was {
		// A renewal: the list stays as it is.
		t.timer.Stop()
	} else {
		t = &typist{}
		r.typing[userID] = t
		r.pos = s.pos.Add(1)
	}
	t.expires = expires
	t.timer = time.AfterFunc(timeout, func() { s.expire(roomID, userID, expires) })
	return !was
}

// expire ends a user's typing when its time is up, unless it was renewed
// or ended meanwhile.
func (s *Service) expire(roomID, userID string, expires time.Time) {
	s.mu.Lock()
	r := s.rooms[roomID]
	var t *typist
	if r != nil {
		t = r.typing[userID]
	}
	if t == nil || !t.expires.Equal(expires) {
		s.mu.Unlock()
		return
	}
	delete(r.typing, userID)
	r.pos = s.pos.Add(1)
	s.mu.Unlock()
	ctx := context.Background()
	s.wakeRoom(ctx, roomID)
	if id.ServerOf(userID) == s.cfg.ServerName {
		s.federate(ctx, roomID, userID, false)
	}
}

func (s *Service) listLocked(r *room) []string {
	out := []string{}
	if r == nil {
		return out
	}
	for u := range r.typing {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// SetObserver installs a function told of every change of a room's
// typing users (application services receive typing this way).
func (s *Service) SetObserver(f func(roomID string, userIDs []string)) { s.observer.Store(&f) }

// wakeRoom wakes the /sync requests of the room's members; every change of
// typing goes through it.
func (s *Service) wakeRoom(ctx context.Context, roomID string) {
	if f := s.observer.Load(); f != nil {
		(*f)(roomID, s.Typing(roomID))
	}
	members, err := s.cfg.Rooms.JoinedMembers(ctx, roomID)
	if err != nil {
		s.cfg.Log.WithError(err).WithField("room_id", roomID).Warn("typing: listing members to wake")
		return
	}
	s.cfg.Notifier.Wake(members...)
}

// federate tells the other servers in the room about a local user's typing.
func (s *Service) federate(ctx context.Context, roomID, userID string, typing bool) {
	f := s.fed.Load()
	if f == nil {
		return
	}
	members, err := s.cfg.Rooms.JoinedMembers(ctx, roomID)
	if err != nil {
		s.cfg.Log.WithError(err).WithField("room_id", roomID).Warn("typing: listing servers")
		return
	}
	if dests := id.ServersOf(members, s.cfg.ServerName); len(dests) > 0 {
		(*f).SendEDU(dests, "m.typing", typingEDU{RoomID: roomID, UserID: userID, Typing: typing})
	}
}
