// Package rooms is the room engine: it builds local events, checks them
// against the authorization rules and the room's current state, and persists
// them, one sequencer per room so that concurrent sends to a room cost one
// transaction per batch rather than one per event (group commit).
package rooms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/keys"
	"github.com/parley-chat/parley/homeserver/stream"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Errors the client API maps to Matrix errors.
var (
	// ErrNotFound: no such room (or event) that the user may know of.
	ErrNotFound = errors.New("not found")
	// ErrForbidden: the authorization rules or the user's membership refuse.
	ErrForbidden = errors.New("forbidden")
	// ErrBadRequest: the request itself is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrRoomInUse: the requested alias is taken.
	ErrRoomInUse = errors.New("room alias in use")
	// ErrUnsupportedRoomVersion: the requested room version is unknown.
	ErrUnsupportedRoomVersion = errors.New("unsupported room version")
	// ErrTooLarge: the event would exceed the size limit.
	ErrTooLarge = errors.New("event too large")
)

func wrapf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}

// Notifier is told which users should wake up after events are persisted.
type Notifier interface {
	OnNewEvents(pos int64, userIDs []string)
}

// ProfileLookup returns a local user's display name and avatar URL, which
// go into their membership events.
type ProfileLookup func(ctx context.Context, userID string) (displayName, avatarURL string)

// Config wires the engine.
type Config struct {
	DB                 *storage.DB
	ServerName         string
	SigningKey         *keys.SigningKey
	Positions          *stream.Positions
	Notifier           Notifier
	Profiles           ProfileLookup
	DefaultRoomVersion event.RoomVersion
	// EncryptPrivateRooms turns on Megolm encryption in every new private
	// room and direct chat, as organisations usually want.
	EncryptPrivateRooms bool
	Log                 logrus.FieldLogger
}

// Engine owns every room's sequencer.
type Engine struct {
	cfg       Config
	fed       Federation // nil: local rooms only
	listeners []Listener
	// aggregator adds bundled aggregations when events are served.
	aggregator Aggregator
	// contentCache holds content fields the visibility rules read.
	contentCache stringCache
	// namespaces are the application services' hooks (namespaces.go).
	namespaces NamespaceHooks
	db         *storage.DB
	mu         sync.Mutex
	rooms      map[string]*room
	now        func() time.Time
}

// New returns a room engine.
func New(cfg Config) *Engine {
	if cfg.DefaultRoomVersion == "" {
		cfg.DefaultRoomVersion = event.DefaultRoomVersion
	}
	if cfg.Profiles == nil {
		cfg.Profiles = func(context.Context, string) (string, string) { return "", "" }
	}
	return &Engine{cfg: cfg, db: cfg.DB, rooms: map[string]*room{}, now: time.Now}
}

// ServerName is the name of this server.
func (e *Engine) ServerName() string { return e.cfg.ServerName }

// room returns the loaded room, loading it on first use.
func (e *Engine) room(ctx context.Context, roomID string) (*room, error) {
	e.mu.Lock()
	r, ok := e.rooms[roomID]
	e.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := e.loadRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if existing, ok := e.rooms[roomID]; ok {
		return existing, nil // another request loaded it meanwhile
	}
	e.rooms[roomID] = r
	go r.run()
	return r, nil
}

func (e *Engine) loadRoom(ctx context.Context, roomID string) (*room, error) {
	row, err := e.db.GetRoom(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, wrapf(ErrNotFound, "unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	version := event.RoomVersion(row.Version)
	info, err := version.Info()
	if err != nil {
		return nil, err
	}
	snap, err := e.db.LoadSnapshot(ctx, row.CurrentSnapshot)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(snap))
	for _, id := range snap {
		ids = append(ids, id)
	}
	extremities, err := e.db.ForwardExtremities(ctx, roomID)
	if err != nil {
		return nil, err
	}
	evs, err := e.loadEvents(ctx, append(ids, extremities...), version)
	if err != nil {
		return nil, err
	}
	r := newRoom(e, roomID, version, info)
	for k, id := range snap {
		ev, ok := evs[id]
		if !ok {
			return nil, fmt.Errorf("rooms: state event %s of %s is missing", id, roomID)
		}
		r.state[k] = ev
	}
	r.snapshot, r.depth = row.CurrentSnapshot, row.Depth
	for _, id := range extremities {
		if ev, ok := evs[id]; ok {
			r.extremities = append(r.extremities, ev)
		}
	}
	return r, nil
}

// loadEvents parses stored events into a map by ID.
func (e *Engine) loadEvents(ctx context.Context, ids []string, version event.RoomVersion) (map[string]*event.Event, error) {
	rows, err := e.db.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*event.Event, len(rows))
	for _, row := range rows {
		ev, err := event.NewEventFromTrustedJSONWithEventID(row.EventID, []byte(row.JSON), version)
		if err != nil {
			return nil, fmt.Errorf("rooms: stored event %s: %w", row.EventID, err)
		}
		out[row.EventID] = ev
	}
	return out, nil
}

// RoomVersion is the version of a known room.
func (e *Engine) RoomVersion(ctx context.Context, roomID string) (event.RoomVersion, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return "", err
	}
	return r.version, nil
}

// CurrentState returns a copy of the room's current state.
func (e *Engine) CurrentState(ctx context.Context, roomID string) (map[storage.StateKey]*event.Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return r.stateCopy(), nil
}

// CurrentStateEvent returns one current state event, or nil.
func (e *Engine) CurrentStateEvent(ctx context.Context, roomID, eventType, stateKey string) (*event.Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.state[storage.StateKey{Type: eventType, StateKey: stateKey}], nil
}

// Listener is told of every event added to a room's timeline, local or
// remote, after it is committed, in order within each room. Listeners run
// on the room's sequencer: they must be quick (queue work elsewhere) and
// must not call back into the room.
type Listener func(ev *event.Event, streamPos int64)

// AddListener registers a listener (push rules, application services,
// relations...). Register before the server starts serving.
func (e *Engine) AddListener(l Listener) { e.listeners = append(e.listeners, l) }

func (e *Engine) emit(ev *event.Event, pos int64) {
	for _, l := range e.listeners {
		l(ev, pos)
	}
}
