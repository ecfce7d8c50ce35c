package relations

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/homeserver/ignored"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// RecursionDepth is how many levels of relations GET /relations follows
// with recurse=true (the spec asks for at least 3).
const RecursionDepth = 3

// maxPageScans bounds the database pages read to fill one response when
// history visibility hides many of the children.
const maxPageScans = 10

// ChildrenRequest is a GET /relations request. Positions are pagination
// tokens: a token T lies between stream positions T and T+1.
type ChildrenRequest struct {
	Viewer    rooms.Viewer
	RoomID    string
	EventID   string
	RelType   string // "" for any
	EventType string // "" for any
	From, To  int64  // -1: not given
	Backwards bool
	Limit     int
	Recurse   bool
}

// Page is a page of events and the token of the next page (-1: none).
type Page struct {
	Chunk []*rooms.ClientEvent
	Next  int64
}

// Children returns a page of the children of an event that the viewer may
// see: ErrNotFound when they may not see the event itself.
func (s *Service) Children(ctx context.Context, req ChildrenRequest) (*Page, error) {
	if err := s.checkVisible(ctx, req.Viewer.UserID, req.RoomID, req.EventID); err != nil {
		return nil, err
	}
	s.waitIndex(ctx)
	ign, err := ignored.Users(ctx, s.db, s.serverName, req.Viewer.UserID)
	if err != nil {
		return nil, err
	}
	limit := pageLimit(req.Limit)
	depth := 1
	if req.Recurse {
		depth = RecursionDepth
	}
	page := &Page{Chunk: []*rooms.ClientEvent{}, Next: -1}
	cursor := req.From
	for range maxPageScans {
		want := limit - len(page.Chunk)
		rows, err := s.db.RelationChildren(ctx, storage.ChildQuery{RoomID: req.RoomID, Parent: req.EventID,
			RelType: req.RelType, EventType: req.EventType, Excluded: ign.List(),
			From: cursor, To: req.To, Backwards: req.Backwards, Limit: want, Depth: depth})
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			page.Next = -1
			break
		}
		last := rows[len(rows)-1].StreamPos
		if req.Backwards {
			cursor = last - 1
		} else {
			cursor = last
		}
		page.Next = cursor
		visible, err := s.rooms.VisibleRows(ctx, req.Viewer.UserID, req.RoomID, rows)
		if err != nil {
			return nil, err
		}
		evs, err := s.rooms.FormatRows(ctx, visible, req.Viewer)
		if err != nil {
			return nil, err
		}
		page.Chunk = append(page.Chunk, evs...)
		if len(rows) < want {
			page.Next = -1 // nothing further
			break
		}
		if len(page.Chunk) >= limit {
			break
		}
	}
	return page, nil
}

// checkVisible returns rooms.ErrNotFound unless the user may see the
// event, in the room: as for an unknown event, so that nothing is revealed.
func (s *Service) checkVisible(ctx context.Context, userID, roomID, eventID string) error {
	row, err := s.db.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && row.RoomID != roomID) {
		return fmt.Errorf("%w: event not found", rooms.ErrNotFound)
	}
	if err != nil {
		return err
	}
	visible, err := s.rooms.VisibleRows(ctx, userID, roomID, []*storage.EventRow{row})
	if err != nil {
		return err
	}
	if len(visible) == 0 {
		return fmt.Errorf("%w: event not found", rooms.ErrNotFound)
	}
	return nil
}

// ThreadsRequest is a GET /threads request.
type ThreadsRequest struct {
	Viewer rooms.Viewer
	RoomID string
	// Participated keeps only threads the viewer started or replied to.
	Participated bool
	From         int64 // -1: from the most recent
	Limit        int
}

// Threads returns a page of a room's thread roots that the viewer may see,
// by latest reply, newest first. Roots sent by users the viewer ignores
// are shown redacted, as a client aggregating the thread itself would.
func (s *Service) Threads(ctx context.Context, req ThreadsRequest) (*Page, error) {
	if _, err := s.rooms.StateForUser(ctx, req.Viewer.UserID, req.RoomID); err != nil {
		return nil, err
	}
	s.waitIndex(ctx)
	ign, err := ignored.Users(ctx, s.db, s.serverName, req.Viewer.UserID)
	if err != nil {
		return nil, err
	}
	limit := pageLimit(req.Limit)
	participant := ""
	if req.Participated {
		participant = req.Viewer.UserID
	}
	version, err := s.rooms.RoomVersion(ctx, req.RoomID)
	if err != nil {
		return nil, err
	}
	page := &Page{Chunk: []*rooms.ClientEvent{}, Next: -1}
	cursor := req.From
	for range maxPageScans {
		want := limit - len(page.Chunk)
		roots, err := s.db.ThreadRoots(ctx, req.RoomID, participant, cursor, want, ign.List())
		if err != nil {
			return nil, err
		}
		if len(roots) == 0 {
			page.Next = -1
			break
		}
		cursor = roots[len(roots)-1].Latest - 1
		page.Next = cursor
		rows := make([]*storage.EventRow, len(roots))
		for i, r := range roots {
			rows[i] = r.Root
		}
		visible, err := s.rooms.VisibleRows(ctx, req.Viewer.UserID, req.RoomID, rows)
		if err != nil {
			return nil, err
		}
		evs, err := s.rooms.FormatRows(ctx, visible, req.Viewer)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if ign.Hides(ev.Sender, ev.StateKey != nil) {
				if err := redactContent(ev, version); err != nil {
					return nil, err
				}
			}
		}
		page.Chunk = append(page.Chunk, evs...)
		if len(roots) < want {
			page.Next = -1
			break
		}
		if len(page.Chunk) >= limit {
			break
		}
	}
	return page, nil
}

// redactContent replaces a formatted event's content by its redacted form.
func redactContent(ev *rooms.ClientEvent, version event.RoomVersion) error {
	if ev.Stored == nil {
		return nil
	}
	parsed, err := event.NewEventFromTrustedJSONWithEventID(ev.EventID, []byte(ev.Stored.JSON), version)
	if err != nil {
		return fmt.Errorf("relations: %w", err)
	}
	red, err := parsed.Redacted()
	if err != nil {
		return fmt.Errorf("relations: %w", err)
	}
	ev.Content = red.Content()
	return nil
}

// pageLimit is a page's size: 10 when not asked for, at most 100.
func pageLimit(asked int) int {
	if asked <= 0 {
		return 10
	}
	return min(asked, 100)
}
