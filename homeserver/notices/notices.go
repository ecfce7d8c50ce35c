// Package notices sends server notices (the spec's "Server Notices"
// module): messages from the server to one user, in a room only the server
// notices user and that user are in, which the user's client recognises by
// its m.server_notice tag. Each user has exactly one such room, created
// with their first notice; they are invited, not joined.
package notices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage"
)

// Tag marks the server notices room in the user's room tags.
const Tag = "m.server_notice"

// Errors the admin API maps to Matrix errors.
var (
	// ErrDisabled: server_notices.enabled is off.
	ErrDisabled = errors.New("server notices are not enabled")
	// ErrBadRequest: the request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrNotFound: the recipient is not an active local user.
	ErrNotFound = errors.New("user not found")
)

// Config configures server notices.
type Config struct {
	Enabled bool
	// SenderLocalpart is the localpart of the user notices come from,
	// created when the first notice is sent (it cannot log in).
	SenderLocalpart string
	// RoomName is the name of every server notices room.
	RoomName   string
	ServerName string
}

// Service sends server notices.
type Service struct {
	cfg   Config
	db    *storage.DB
	rooms *rooms.Engine
	users *users.Service

	// mu serialises sends, so that two first notices to one user do not
	// create two rooms.
	mu sync.Mutex
}

// New returns the server notices service.
func New(cfg Config, db *storage.DB, engine *rooms.Engine, us *users.Service) *Service {
	return &Service{cfg: cfg, db: db, rooms: engine, users: us}
}

// Sender is the user ID notices come from.
func (s *Service) Sender() string { return "@" + s.cfg.SenderLocalpart + ":" + s.cfg.ServerName }

// Send sends a notice (an event of eventType, m.room.message when empty,
// with content) to a local user, creating their server notices room and
// inviting them when needed. It returns the notice's event ID.
func (s *Service) Send(ctx context.Context, userID, eventType string, content json.RawMessage) (string, error) {
	if !s.cfg.Enabled {
		return "", ErrDisabled
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(content, &obj) != nil || obj == nil {
		return "", fmt.Errorf("%w: content must be a JSON object", ErrBadRequest)
	}
	if eventType == "" {
		eventType = "m.room.message"
	}
	localpart, ok := strings.CutSuffix(strings.TrimPrefix(userID, "@"), ":"+s.cfg.ServerName)
	if !ok || !strings.HasPrefix(userID, "@") || localpart == s.cfg.SenderLocalpart {
		return "", fmt.Errorf("%w: %s is not a user of this server", ErrNotFound, userID)
	}
	if p, err := s.db.GetProfile(ctx, localpart); errors.Is(err, storage.ErrNotFound) || (err == nil && p.Deactivated) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, userID)
	} else if err != nil {
		return "", err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	roomID, err := s.room(ctx, userID, localpart)
	if err != nil {
		return "", err
	}
	ev, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: eventType, Sender: s.Sender(), Content: content})
	if err != nil {
		return "", err
	}
	return ev.EventID(), nil
}

// room returns the user's server notices room, creating it, or inviting
// the user again if they left it.
func (s *Service) room(ctx context.Context, userID, localpart string) (string, error) {
	if err := s.db.CreateAccount(ctx, storage.Account{Localpart: s.cfg.SenderLocalpart}); err != nil && !errors.Is(err, storage.ErrUserExists) {
		return "", err
	}
	roomID, err := s.db.ServerNoticeRoom(ctx, userID)
	if err != nil {
		return "", err
	}
	if roomID == "" {
		name := s.cfg.RoomName
		// Users cannot write in the room: it is the server speaking.
		roomID, err = s.rooms.CreateRoom(ctx, rooms.CreateRequest{Creator: s.Sender(), Preset: "private_chat", Name: &name,
			Invite: []string{userID}, PowerLevelContentOverride: map[string]json.RawMessage{"users_default": json.RawMessage(`-10`)}})
		if err != nil {
			return "", err
		}
		if err := s.db.SetServerNoticeRoom(ctx, userID, roomID); err != nil {
			return "", err
		}
	} else if m, err := s.rooms.Membership(ctx, roomID, userID); err != nil {
		return "", err
	} else if m != "join" && m != "invite" {
		if _, err := s.rooms.ChangeMembership(ctx, roomID, s.Sender(), userID, "invite", "", false); err != nil {
			return "", err
		}
	}
	// The tag is how the user's clients know this room; set it every time
	// in case the user removed it (setting it again changes nothing).
	dev := &users.Device{UserID: userID, Localpart: localpart}
	if err := s.users.SetTag(ctx, dev, roomID, Tag, []byte(`{}`)); err != nil {
		return "", err
	}
	return roomID, nil
}
