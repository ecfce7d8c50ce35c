package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/homeserver/ignored"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/storage"
)

// Search answers a room_events search: the matching events of the rooms
// the searcher is or was in that the history visibility rules let them
// see (nothing from after they left a room).
func (s *Service) Search(ctx context.Context, req Request) (*RoomEvents, error) {
	for _, k := range req.Keys {
		if k != KeyBody && k != KeyName && k != KeyTopic {
			return nil, fmt.Errorf("%w: unknown key %q", ErrBadRequest, k)
		}
	}
	for _, g := range req.GroupBy {
		if g != "room_id" && g != "sender" {
			return nil, fmt.Errorf("%w: unknown group key %q", ErrBadRequest, g)
		}
	}
	cur := cursor{Recent: req.Recent, Term: req.Term}
	if req.NextBatch != "" {
		c, err := decodeCursor(req.NextBatch)
		if err != nil {
			return nil, err
		}
		if c.Recent != req.Recent || c.Term != req.Term {
			return nil, fmt.Errorf("%w: next_batch belongs to another search", ErrBadRequest)
		}
		cur = c
	}
	if s.catchUp != nil {
		_ = s.catchUp(ctx) // behind after the wait: search what is indexed
	}
	words := Words(req.Term)
	resp := &RoomEvents{Highlights: words, Results: []Result{}}
	if resp.Highlights == nil {
		resp.Highlights = []string{}
	}
	searchRooms, err := s.searchableRooms(ctx, req)
	if err != nil {
		return nil, err
	}
	ign, err := ignored.Users(ctx, s.db, s.serverName, req.Viewer.UserID)
	if err != nil {
		return nil, err
	}
	q := storage.SearchQuery{Words: words, Rooms: searchRooms, Keys: req.Keys, Recent: req.Recent}
	limit := defaultLimit
	if req.Filter != nil {
		limit = req.Filter.LimitOr(defaultLimit, maxLimit)
	}
	limit = max(limit, 1)
	keep := func(row *storage.EventRow) bool {
		if ign.Hides(row.Sender, row.StateKey != nil) {
			return false
		}
		return req.Filter.Allows(row.Type, row.Sender, row.RoomID, hasURL(row))
	}

	var hits []storage.SearchHit
	more := false
	for scan := 0; ; scan++ {
		// Ranked results page by offset, recent ones by stream position
		// (which new messages do not shift).
		q.Offset, q.Before, q.Limit = 0, 0, limit
		if req.Recent {
			q.Before = cur.Before
		} else {
			q.Offset = cur.Offset
		}
		page, err := s.db.SearchEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		visible, err := s.visible(ctx, req.Viewer.UserID, page)
		if err != nil {
			return nil, err
		}
		for i, h := range page {
			if visible[h.Event.EventID] && keep(h.Event) {
				hits = append(hits, h)
			}
			cur.Offset++
			cur.Before = h.Event.StreamPos
			if len(hits) == limit {
				// More may follow this one if the page went on or was full.
				more = i < len(page)-1 || len(page) == q.Limit
				break
			}
		}
		if len(hits) == limit {
			break
		}
		if len(page) < q.Limit {
			break // every match was read
		}
		if scan == maxScans-1 {
			more = true // the scan budget ran out with matches left
			break
		}
	}
	if more {
		resp.NextBatch = cur.encode()
	}

	rows := make([]*storage.EventRow, len(hits))
	for i, h := range hits {
		rows[i] = h.Event
	}
	evs, err := s.rooms.FormatRows(ctx, rows, req.Viewer)
	if err != nil {
		return nil, err
	}
	for i, ev := range evs {
		r := Result{Rank: hits[i].Rank, Result: ev}
		if req.Context != nil {
			if r.Context, err = s.eventContext(ctx, req, ign, hits[i].Event); err != nil {
				return nil, err
			}
		}
		resp.Results = append(resp.Results, r)
	}
	if resp.Count, err = s.count(ctx, req, q, keep); err != nil {
		return nil, err
	}
	if len(req.GroupBy) > 0 {
		resp.Groups = groups(req.GroupBy, evs)
	}
	if req.IncludeState {
		if resp.State, err = s.roomStates(ctx, req.Viewer, evs); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// searchableRooms are the rooms the searcher is in and those they left (up
// to their leave), that the filter allows.
func (s *Service) searchableRooms(ctx context.Context, req Request) ([]storage.SearchRoom, error) {
	ms, err := s.db.UserMemberships(ctx, req.Viewer.UserID, "join", "leave", "ban")
	if err != nil {
		return nil, err
	}
	var out []storage.SearchRoom
	for _, m := range ms {
		if m.EventID == "" || !req.Filter.AllowsRoom(m.RoomID) {
			continue // a declined invite to a room never joined
		}
		r := storage.SearchRoom{RoomID: m.RoomID}
		if m.Membership != "join" {
			r.MaxPos = m.StreamPos
		}
		out = append(out, r)
	}
	return out, nil
}

// visible checks history visibility for a page of hits, room by room.
func (s *Service) visible(ctx context.Context, userID string, hits []storage.SearchHit) (map[string]bool, error) {
	byRoom := map[string][]*storage.EventRow{}
	for _, h := range hits {
		byRoom[h.Event.RoomID] = append(byRoom[h.Event.RoomID], h.Event)
	}
	out := make(map[string]bool, len(hits))
	for roomID, rows := range byRoom {
		kept, err := s.rooms.VisibleRows(ctx, userID, roomID, rows)
		if errors.Is(err, rooms.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, r := range kept {
			out[r.EventID] = true
		}
	}
	return out, nil
}

// count estimates the number of results: exact up to countSample matches,
// extrapolated from the share of them the searcher may see beyond that,
// so that the count says nothing precise about hidden events.
func (s *Service) count(ctx context.Context, req Request, q storage.SearchQuery, keep func(*storage.EventRow) bool) (int, error) {
	total, err := s.db.CountSearch(ctx, q)
	if err != nil || total == 0 {
		return 0, err
	}
	q.Offset, q.Before, q.Limit = 0, 0, countSample
	sample, err := s.db.SearchEvents(ctx, q)
	if err != nil || len(sample) == 0 {
		return 0, err
	}
	visible, err := s.visible(ctx, req.Viewer.UserID, sample)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range sample {
		if visible[h.Event.EventID] && keep(h.Event) {
			n++
		}
	}
	if total <= len(sample) {
		return n, nil
	}
	return int(int64(n) * int64(total) / int64(len(sample))), nil
}

// hasURL reports whether an event's content has a url key (the filter's
// contains_url).
func hasURL(row *storage.EventRow) bool {
	var ev struct {
		Content struct {
			URL json.RawMessage `json:"url"`
		} `json:"content"`
	}
	_ = json.Unmarshal([]byte(row.JSON), &ev)
	return len(ev.Content.URL) > 0
}

// eventContext is the events around a result that the searcher may see,
// and optionally the senders' profiles as they were at the result.
func (s *Service) eventContext(ctx context.Context, req Request, ign ignored.Set, row *storage.EventRow) (*EventContext, error) {
	before, after := req.Context.BeforeLimit, req.Context.AfterLimit
	match := func(r *storage.EventRow) bool { return !ign.Hides(r.Sender, r.StateKey != nil) }
	out := &EventContext{Start: token(row.StreamPos - 1), End: token(row.StreamPos),
		EventsBefore: []*rooms.ClientEvent{}, EventsAfter: []*rooms.ClientEvent{}}
	if before > 0 {
		page, err := s.rooms.Messages(ctx, rooms.MessagesRequest{Viewer: req.Viewer, RoomID: row.RoomID,
			From: row.StreamPos - 1, To: -1, Backwards: true, Limit: before, Match: match})
		if err != nil {
			return nil, err
		}
		if n := len(page.Chunk); n > 0 {
			out.EventsBefore = page.Chunk
			out.Start = token(page.Chunk[n-1].Stored.StreamPos - 1)
		}
	}
	if after > 0 {
		page, err := s.rooms.Messages(ctx, rooms.MessagesRequest{Viewer: req.Viewer, RoomID: row.RoomID,
			From: row.StreamPos, To: -1, Limit: after, Match: match})
		if err != nil {
			return nil, err
		}
		if n := len(page.Chunk); n > 0 {
			out.EventsAfter = page.Chunk
			out.End = token(page.Chunk[n-1].Stored.StreamPos)
		}
	}
	if req.Context.IncludeProfile {
		st, err := s.rooms.StateAtEvent(ctx, row)
		if err != nil {
			return nil, err
		}
		out.ProfileInfo = map[string]Profile{}
		senders := []string{row.Sender}
		for _, ev := range append(append([]*rooms.ClientEvent{}, out.EventsBefore...), out.EventsAfter...) {
			senders = append(senders, ev.Sender)
		}
		for _, u := range senders {
			if _, done := out.ProfileInfo[u]; done {
				continue
			}
			id, ok := st[storage.StateKey{Type: "m.room.member", StateKey: u}]
			if !ok {
				continue
			}
			var p Profile
			if m, err := s.db.GetAnyEvent(ctx, id); err == nil {
				var ev struct {
					Content struct {
						DisplayName string `json:"displayname"`
						AvatarURL   string `json:"avatar_url"`
					} `json:"content"`
				}
				_ = json.Unmarshal([]byte(m.JSON), &ev)
				p = Profile{DisplayName: ev.Content.DisplayName, AvatarURL: ev.Content.AvatarURL}
			}
			out.ProfileInfo[u] = p
		}
	}
	return out, nil
}

// groups partitions the results by the requested keys.
func groups(keys []string, evs []*rooms.ClientEvent) map[string]map[string]*Group {
	out := map[string]map[string]*Group{}
	for _, k := range keys {
		g := map[string]*Group{}
		for _, ev := range evs {
			v := ev.RoomID
			if k == "sender" {
				v = ev.Sender
			}
			if g[v] == nil {
				g[v] = &Group{Order: len(g) + 1, Results: []string{}}
			}
			g[v].Results = append(g[v].Results, ev.EventID)
		}
		out[k] = g
	}
	return out
}

// roomStates is the current state of each room in the results, as the
// searcher may see it.
func (s *Service) roomStates(ctx context.Context, viewer rooms.Viewer, evs []*rooms.ClientEvent) (map[string][]*rooms.ClientEvent, error) {
	out := map[string][]*rooms.ClientEvent{}
	for _, ev := range evs {
		if _, done := out[ev.RoomID]; done {
			continue
		}
		st, err := s.rooms.StateForUser(ctx, viewer.UserID, ev.RoomID)
		if err != nil {
			continue // no longer readable: leave it out
		}
		state, err := s.rooms.StateEvents(ctx, st, viewer)
		if err != nil {
			return nil, err
		}
		out[ev.RoomID] = state
	}
	return out, nil
}
