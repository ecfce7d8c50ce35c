// Package receipts stores read receipts (m.read, and m.read.private, which
// only its owner sees), unthreaded and threaded: from local users through
// the client API and from other servers through m.receipt EDUs. /sync shows
// them as m.receipt ephemeral events; public receipts of local users go to
// the other servers in the room.
//
// Other services read a user's position in a room with LatestReadReceipt
// and hear of every new receipt through Hooks.OnReceipt.
package receipts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/parley-chat/parley/matrix/id"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/storage"
)

// Receipt types.
const (
	// Read is the public read receipt.
	Read = "m.read"
	// ReadPrivate is the read receipt that only its owner sees.
	ReadPrivate = storage.ReceiptPrivate
	// MainThread is the thread ID of a threaded receipt in the main
	// timeline.
	MainThread = "main"
)

// Errors a client can cause (test with errors.Is).
var (
	// ErrForbidden: the user is not joined to the room.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such event in the room.
	ErrNotFound = errors.New("not found")
	// ErrInvalidParam: an unknown receipt type or an unusable thread ID.
	ErrInvalidParam = errors.New("invalid parameter")
)

// Rooms is what the service needs to know of rooms.
type Rooms interface {
	// IsJoined reports whether the user is joined to the room now.
	IsJoined(ctx context.Context, roomID, userID string) (bool, error)
	// JoinedMembers lists the users, local and remote, joined to the room.
	JoinedMembers(ctx context.Context, roomID string) ([]string, error)
}

// Notifier wakes the /sync requests of users.
type Notifier interface {
	Wake(userIDs ...string)
}

// Federation sends EDUs to other servers.
type Federation interface {
	SendEDU(destinations []string, eduType string, content any)
}

// Hooks are told of receipts.
type Hooks struct {
	// OnReceipt is called after a local user's receipt (of either type,
	// in any thread) moved, for instance to recompute the user's unread
	// counts in the room. It runs on the request's goroutine: keep it
	// quick.
	OnReceipt func(roomID, userID string)
}

// Config wires the service.
type Config struct {
	ServerName string
	DB         *storage.DB
	Rooms      Rooms
	Notifier   Notifier
	Log        logrus.FieldLogger
}

// Service stores and distributes receipts.
type Service struct {
	cfg Config
	fed atomic.Pointer[Federation]
	// observer is told of every receipt that moved (see SetObserver).
	observer atomic.Pointer[func(storage.Receipt)]
	hooks    atomic.Pointer[Hooks]
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Service{cfg: cfg}
}

// SetFederation installs the sender of EDUs to other servers.
func (s *Service) SetFederation(f Federation) { s.fed.Store(&f) }

// SetObserver installs a function told of every receipt that moved, local
// or remote (application services receive receipts this way).
func (s *Service) SetObserver(f func(storage.Receipt)) { s.observer.Store(&f) }

func (s *Service) observe(r storage.Receipt) {
	if f := s.observer.Load(); f != nil {
		(*f)(r)
	}
}

// SetHooks installs the hooks, replacing earlier ones.
func (s *Service) SetHooks(h Hooks) { s.hooks.Store(&h) }

// LatestReadReceipt is where the user has read up to in the room's main
// timeline: the later (in the event stream) of their m.read and
// m.read.private receipts, unthreaded or in thread "main". It returns the
// event ID and its event stream position, or "" and 0 when the user has
// sent no such receipt.
func (s *Service) LatestReadReceipt(ctx context.Context, roomID, userID string) (eventID string, streamPos int64, err error) {
	r, err := s.cfg.DB.LatestReadReceipt(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	return r.EventID, r.EventStreamPos, nil
}

// CheckEvent checks that the user is joined to the room (ErrForbidden) and
// that the event belongs to it (ErrNotFound), and returns the event's row.
// The read markers endpoint uses it for m.fully_read.
func (s *Service) CheckEvent(ctx context.Context, roomID, userID, eventID string) (*storage.EventRow, error) {
	joined, err := s.cfg.Rooms.IsJoined(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if !joined {
		return nil, fmt.Errorf("%w: you are not joined to this room", ErrForbidden)
	}
	row, err := s.cfg.DB.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || err == nil && row.RoomID != roomID {
		return nil, fmt.Errorf("%w: no event %s in this room", ErrNotFound, eventID)
	}
	if err != nil {
		return nil, err
	}
	return row, nil
}

// Send records a local user's receipt: receiptType is m.read or
// m.read.private, threadID "" (unthreaded), "main" or a thread root's
// event ID. A receipt behind the one stored is accepted and ignored.
func (s *Service) Send(ctx context.Context, roomID, userID, receiptType, eventID, threadID string) error {
	if receiptType != Read && receiptType != ReadPrivate {
		return fmt.Errorf("%w: the receipt type must be m.read, m.read.private or m.fully_read", ErrInvalidParam)
	}
	if threadID != "" && threadID != MainThread && !strings.HasPrefix(threadID, "$") {
		return fmt.Errorf("%w: thread_id must be \"main\" or a thread root's event ID", ErrInvalidParam)
	}
	row, err := s.CheckEvent(ctx, roomID, userID, eventID)
	if err != nil {
		return err
	}
	if root := threadOf(row.JSON); threadID != "" && root != "" && threadID != root {
		return fmt.Errorf("%w: event %s is in thread %s, not in %s", ErrInvalidParam, eventID, root, threadID)
	}
	r := storage.Receipt{RoomID: roomID, UserID: userID, Type: receiptType, ThreadID: threadID,
		EventID: eventID, EventStreamPos: row.StreamPos, TS: time.Now().UnixMilli()}
	pos, err := s.cfg.DB.PutReceipt(ctx, r)
	if err != nil || pos == 0 {
		return err
	}
	s.observe(r)
	if receiptType == ReadPrivate {
		s.cfg.Notifier.Wake(userID)
	} else {
		members := s.wakeRoom(ctx, roomID)
		s.federate(roomID, members, r)
	}
	if h := s.hooks.Load(); h != nil && h.OnReceipt != nil {
		h.OnReceipt(roomID, userID)
	}
	return nil
}

// threadOf is the thread root an event names with an m.thread relation,
// "" when it has none. Only that direct relation is checked against a
// receipt's thread: events reach a thread through other relations too
// (a reaction to a threaded reply), which the client knows best.
func threadOf(eventJSON string) string {
	var ev struct {
		Content struct {
			RelatesTo struct {
				RelType string `json:"rel_type"`
				EventID string `json:"event_id"`
			} `json:"m.relates_to"`
		} `json:"content"`
	}
	if json.Unmarshal([]byte(eventJSON), &ev) != nil || ev.Content.RelatesTo.RelType != "m.thread" {
		return ""
	}
	return ev.Content.RelatesTo.EventID
}

// wakeRoom wakes the room's members and returns them.
func (s *Service) wakeRoom(ctx context.Context, roomID string) []string {
	members, err := s.cfg.Rooms.JoinedMembers(ctx, roomID)
	if err != nil {
		s.cfg.Log.WithError(err).WithField("room_id", roomID).Warn("receipts: listing members to wake")
		return nil
	}
	s.cfg.Notifier.Wake(members...)
	return members
}

// receiptEDU is the content of an m.receipt EDU: room ID → receipt type →
// user ID → receipt.
type receiptEDU map[string]map[string]map[string]eduReceipt

type eduReceipt struct {
	EventIDs []string       `json:"event_ids"`
	Data     eduReceiptData `json:"data"`
}

type eduReceiptData struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// federate sends a local user's public receipt to the other servers in the
// room. Private receipts never leave the server.
func (s *Service) federate(roomID string, members []string, r storage.Receipt) {
	f := s.fed.Load()
	if f == nil {
		return
	}
	dests := id.ServersOf(members, s.cfg.ServerName)
	if len(dests) == 0 {
		return
	}
	edu := receiptEDU{roomID: {Read: {r.UserID: {EventIDs: []string{r.EventID}, Data: eduReceiptData{TS: r.TS, ThreadID: r.ThreadID}}}}}
	(*f).SendEDU(dests, "m.receipt", edu)
}

// HandleEDU stores the receipts of an m.receipt EDU from origin: public
// receipts only, of origin's own users, in rooms where origin has joined
// users.
func (s *Service) HandleEDU(ctx context.Context, origin string, content json.RawMessage) {
	var edu map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(content, &edu); err != nil || origin == s.cfg.ServerName {
		return
	}
	for roomID, byType := range edu {
		users := byType[Read]
		if len(users) == 0 {
			continue
		}
		members, err := s.cfg.Rooms.JoinedMembers(ctx, roomID)
		if err != nil || !hasServer(members, origin) {
			continue
		}
		stored := false
		for userID, raw := range users {
			if id.ServerOf(userID) != origin {
				continue
			}
			if s.storeRemote(ctx, roomID, userID, raw) {
				stored = true
			}
		}
		if stored {
			s.cfg.Notifier.Wake(members...)
		}
	}
}

// storeRemote stores one remote user's receipt and reports whether it moved.
func (s *Service) storeRemote(ctx context.Context, roomID, userID string, raw json.RawMessage) bool {
	var rec struct {
		EventIDs []string `json:"event_ids"`
		Data     struct {
			TS       int64   `json:"ts"`
			ThreadID *string `json:"thread_id"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &rec) != nil || len(rec.EventIDs) == 0 {
		return false
	}
	// The spec allows a single event ID; the last one is the furthest.
	eventID := rec.EventIDs[len(rec.EventIDs)-1]
	if !strings.HasPrefix(eventID, "$") {
		return false
	}
	threadID := ""
	if t := rec.Data.ThreadID; t != nil {
		if *t == "" || *t != MainThread && !strings.HasPrefix(*t, "$") {
			return false
		}
		threadID = *t
	}
	r := storage.Receipt{RoomID: roomID, UserID: userID, Type: Read, ThreadID: threadID, EventID: eventID, TS: rec.Data.TS}
	if r.TS <= 0 {
		r.TS = time.Now().UnixMilli()
	}
	// The event may not have arrived yet; its position is then unknown.
	if row, err := s.cfg.DB.GetEvent(ctx, eventID); err == nil {
		if row.RoomID != roomID {
			return false
		}
		r.EventStreamPos = row.StreamPos
	}
	pos, err := s.cfg.DB.PutReceipt(ctx, r)
	if err != nil {
		s.cfg.Log.WithError(err).WithField("room_id", roomID).Warn("receipts: storing a remote receipt")
		return false
	}
	if pos > 0 {
		s.observe(r)
	}
	return pos > 0
}

func hasServer(userIDs []string, server string) bool {
	for _, u := range userIDs {
		if id.ServerOf(u) == server {
			return true
		}
	}
	return false
}
