// Package reports takes users' reports of events, rooms and users (the
// spec's "Reporting content") and keeps them for the server's admins.
package reports

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/storage"
)

// ErrNotFound: the reported event, room or user is unknown to the reporter.
var ErrNotFound = errors.New("not found")

// maxReason bounds the stored reason.
const maxReason = 4096

// Service stores and lists reports.
type Service struct {
	db         *storage.DB
	rooms      *rooms.Engine
	serverName string
	now        func() time.Time
}

// New returns the reports service.
func New(db *storage.DB, engine *rooms.Engine, serverName string) *Service {
	return &Service{db: db, rooms: engine, serverName: serverName, now: time.Now}
}

// ReportEvent records a report of an event. The reporter must be joined to
// the room and able to see the event; otherwise, as for an unknown event,
// ErrNotFound, so that a report reveals nothing.
func (s *Service) ReportEvent(ctx context.Context, reporter, roomID, eventID, reason string) error {
	if m, err := s.rooms.Membership(ctx, roomID, reporter); err != nil || m != "join" {
		return fmt.Errorf("%w: the event was not found or you are not joined to the room", ErrNotFound)
	}
	ev, err := s.rooms.EventForUser(ctx, rooms.Viewer{UserID: reporter}, roomID, eventID)
	if err != nil {
		return fmt.Errorf("%w: the event was not found or you are not joined to the room", ErrNotFound)
	}
	_, err = s.db.InsertReport(ctx, storage.Report{ReceivedTS: s.now().UnixMilli(), Reporter: reporter, RoomID: roomID,
		EventID: eventID, TargetUser: ev.Sender, Reason: clip(reason)})
	return err
}

// ReportRoom records a report of a room, which the reporter need not be in.
func (s *Service) ReportRoom(ctx context.Context, reporter, roomID, reason string) error {
	if _, err := s.db.GetRoom(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: the room was not found", ErrNotFound)
	} else if err != nil {
		return err
	}
	_, err := s.db.InsertReport(ctx, storage.Report{ReceivedTS: s.now().UnixMilli(), Reporter: reporter, RoomID: roomID, Reason: clip(reason)})
	return err
}

// ReportUser records a report of a user. Local users must exist; remote
// ones cannot be checked and are taken as named.
func (s *Service) ReportUser(ctx context.Context, reporter, userID, reason string) error {
	if local, ok := strings.CutSuffix(userID, ":"+s.serverName); ok && strings.HasPrefix(local, "@") {
		if _, err := s.db.GetProfile(ctx, local[1:]); errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: the user was not found", ErrNotFound)
		} else if err != nil {
			return err
		}
	}
	_, err := s.db.InsertReport(ctx, storage.Report{ReceivedTS: s.now().UnixMilli(), Reporter: reporter, TargetUser: userID, Reason: clip(reason)})
	return err
}

// List returns reports newest first, those with an ID below before (0:
// from the newest), and the total number of reports.
func (s *Service) List(ctx context.Context, before int64, limit int) ([]storage.Report, int, error) {
	return s.db.Reports(ctx, before, min(max(limit, 1), 1000))
}

func clip(reason string) string {
	if len(reason) > maxReason {
		return strings.ToValidUTF8(reason[:maxReason], "")
	}
	return reason
}
