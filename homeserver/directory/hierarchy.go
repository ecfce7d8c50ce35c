package directory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Limits of a space hierarchy walk: rooms per page, depth, and rooms
// visited in all (so a huge or cyclic space costs a bounded amount).
const (
	DefaultHierarchyLimit    = 20
	MaxHierarchyLimit        = 100
	DefaultHierarchyMaxDepth = 5
	MaxHierarchyMaxDepth     = 10
	maxHierarchyRooms        = 500
)

// ErrHierarchyForbidden: the user may not see the space's root room.
var ErrHierarchyForbidden = errors.New("you may not view this room")

// ErrHierarchyToken: the from token is unknown or the walk's parameters
// changed between pages.
var ErrHierarchyToken = errors.New("invalid hierarchy pagination token")

// HierarchyRoom is a room of a space hierarchy: its summary and the
// m.space.child events naming its children.
type HierarchyRoom struct {
	PublicRoom
	// AllowedRoomIDs are the rooms whose members may join a restricted room.
	AllowedRoomIDs []string     `json:"allowed_room_ids,omitempty"`
	Encryption     string       `json:"encryption,omitempty"`
	RoomVersion    string       `json:"room_version,omitempty"`
	ChildrenState  []ChildState `json:"children_state"`
}

// ChildState is an m.space.child event in stripped form, with its timestamp.
type ChildState struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

// via lists the servers an m.space.child event names.
func (c ChildState) via() []string {
	var v struct {
		Via []string `json:"via"`
	}
	_ = json.Unmarshal(c.Content, &v)
	return v.Via
}

// HierarchyRequest is a /hierarchy request.
type HierarchyRequest struct {
	UserID, RoomID string
	SuggestedOnly  bool
	Limit          int
	MaxDepth       int
	From           string
}

// HierarchyPage is a page of the walk; NextBatch is empty on the last.
type HierarchyPage struct {
	Rooms     []HierarchyRoom `json:"rooms"`
	NextBatch string          `json:"next_batch,omitempty"`
}

// Hierarchy walks a space breadth first from RoomID through its
// m.space.child events, listing the rooms the user is in, may join
// (invited, public, restricted to rooms the user is in, knockable) or may
// read (world readable), as the spec describes. Rooms this server is not
// in are asked of the servers their m.space.child events name
// (SetRemoteHierarchy).
func (s *Service) Hierarchy(ctx context.Context, req HierarchyRequest) (*HierarchyPage, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultHierarchyLimit
	}
	limit = min(limit, MaxHierarchyLimit)
	depth := req.MaxDepth
	if depth < 0 {
		depth = DefaultHierarchyMaxDepth
	}
	depth = min(depth, MaxHierarchyMaxDepth)
	offset := 0
	if req.From != "" {
		var err error
		if offset, err = parseHierarchyToken(req.From, req.SuggestedOnly, depth); err != nil {
			return nil, err
		}
	}
	w := &walk{s: s, userID: req.UserID, suggestedOnly: req.SuggestedOnly,
		learnt: map[string]HierarchyRoom{}, inaccessible: map[string]bool{}}
	root, ok, err := w.room(ctx, req.RoomID, rootVia(req.RoomID))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrHierarchyForbidden
	}
	all := []HierarchyRoom{root}
	seen := map[string]bool{req.RoomID: true}
	type queued struct {
		room  HierarchyRoom
		depth int
	}
	queue := []queued{{root, 0}}
	for len(queue) > 0 && len(all) < maxHierarchyRooms {
		q := queue[0]
		queue = queue[1:]
		if q.depth >= depth {
			continue
		}
		for _, child := range q.room.ChildrenState {
			if seen[child.StateKey] || len(all) >= maxHierarchyRooms {
				continue
			}
			seen[child.StateKey] = true
			hr, ok, err := w.room(ctx, child.StateKey, child.via())
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			all = append(all, hr)
			queue = append(queue, queued{hr, q.depth + 1})
		}
	}
	page := &HierarchyPage{Rooms: []HierarchyRoom{}}
	if offset < len(all) {
		end := min(offset+limit, len(all))
		page.Rooms = all[offset:end]
		if end < len(all) {
			page.NextBatch = hierarchyToken(end, req.SuggestedOnly, depth)
		}
	}
	return page, nil
}

// rootVia is where to ask for a space the server is not in: the server
// of its room ID, when the ID names one (room version 12 IDs do not).
func rootVia(roomID string) []string {
	if _, server, ok := strings.Cut(roomID, ":"); ok {
		return []string{server}
	}
	return nil
}

// walk is one /hierarchy walk: what it learnt from other servers is kept
// for the rest of it.
type walk struct {
	s             *Service
	userID        string
	suggestedOnly bool
	// learnt are summaries of rooms we are not in, from other servers'
	// answers (a space's answer also describes its children).
	learnt map[string]HierarchyRoom
	// inaccessible are rooms another server said no server can reach.
	inaccessible map[string]bool
	asked        int
}

// room describes a room of the walk and says whether the user may see it:
// from the room's state when this server is in it, otherwise from what
// the servers in via say.
func (w *walk) room(ctx context.Context, roomID string, via []string) (HierarchyRoom, bool, error) {
	s := w.s
	hr, st, err := s.localRoom(ctx, roomID, w.suggestedOnly)
	if err == nil {
		membership := ""
		if ev := st[storage.StateKey{Type: "m.room.member", StateKey: w.userID}]; ev != nil {
			membership, _ = ev.Membership()
		}
		ok, err := s.userMaySee(ctx, w.userID, membership, hr)
		return hr, ok, err
	}
	if !errors.Is(err, errNotHere) {
		return HierarchyRoom{}, false, err
	}
	hr, ok := w.remote(ctx, roomID, via)
	if !ok {
		return HierarchyRoom{}, false, nil
	}
	membership := ""
	if m, err := s.db.GetMembership(ctx, roomID, w.userID); err == nil {
		membership = m.Membership // an invite to a room of another server
	}
	ok, err = s.userMaySee(ctx, w.userID, membership, hr)
	return hr, ok, err
}

// Bounds on asking other servers during one walk.
const (
	maxViaPerRoom     = 3
	maxRemoteRequests = 20
)

// remote describes a room this server is not in, from another server.
func (w *walk) remote(ctx context.Context, roomID string, via []string) (HierarchyRoom, bool) {
	if w.inaccessible[roomID] {
		return HierarchyRoom{}, false
	}
	learnt, known := w.learnt[roomID]
	if known && learnt.ChildrenState != nil {
		return learnt, true
	}
	if w.s.remoteHierarchy.Load() != nil {
		tried := 0
		for _, server := range via {
			if server == w.s.cfg.ServerName || tried >= maxViaPerRoom || w.asked >= maxRemoteRequests {
				continue
			}
			tried++
			w.asked++
			resp, err := w.s.askHierarchy(ctx, server, roomID, w.suggestedOnly)
			if err != nil || resp.Room.RoomID != roomID {
				continue
			}
			for _, c := range resp.Children {
				if _, ok := w.learnt[c.RoomID]; !ok && strings.HasPrefix(c.RoomID, "!") && len(w.learnt) < maxHierarchyRooms {
					if c.ChildrenState != nil { // nil: not told, asked if needed
						c.ChildrenState = validChildren(c.ChildrenState, w.suggestedOnly)
					}
					w.learnt[c.RoomID] = c
				}
			}
			for _, id := range resp.InaccessibleChildren {
				w.inaccessible[id] = true
			}
			room := resp.Room
			room.ChildrenState = validChildren(room.ChildrenState, w.suggestedOnly)
			w.learnt[roomID] = room
			return room, true
		}
	}
	if known {
		// Described by its parent's server, but nobody told us its
		// children: listed without them.
		learnt.ChildrenState = []ChildState{}
		return learnt, true
	}
	return HierarchyRoom{}, false
}

// validChildren keeps the m.space.child events of another server's answer
// that name a room and servers (and are suggested, when asked), in order.
func validChildren(cs []ChildState, suggestedOnly bool) []ChildState {
	out := []ChildState{}
	for _, c := range cs {
		var v struct {
			Via       []string `json:"via"`
			Suggested bool     `json:"suggested"`
		}
		if c.Type != "m.space.child" || !strings.HasPrefix(c.StateKey, "!") || json.Unmarshal(c.Content, &v) != nil ||
			len(v.Via) == 0 || (suggestedOnly && !v.Suggested) {
			continue
		}
		out = append(out, c)
	}
	sortChildren(out)
	return out
}

// userMaySee says whether a user may see a room in a hierarchy: a member,
// invited, or the room is public, knockable, world readable, or
// restricted to a room the user is in.
func (s *Service) userMaySee(ctx context.Context, userID, membership string, hr HierarchyRoom) (bool, error) {
	switch {
	case membership == "join" || membership == "invite" || hr.WorldReadable:
		return true, nil
	case membership == "ban":
		return false, nil
	}
	switch hr.JoinRule {
	case "public", "knock", "knock_restricted":
		return true, nil
	case "restricted":
		for _, allowed := range hr.AllowedRoomIDs {
			m, err := s.db.GetMembership(ctx, allowed, userID)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, err
			}
			if m.Membership == "join" {
				return true, nil
			}
		}
	}
	return false, nil
}

// errNotHere: this server is not in the room (or no longer).
var errNotHere = errors.New("this server is not in the room")

// localRoom describes a room this server is in from its current state.
func (s *Service) localRoom(ctx context.Context, roomID string, suggestedOnly bool) (HierarchyRoom, map[storage.StateKey]*event.Event, error) {
	st, err := s.rooms.CurrentState(ctx, roomID)
	if errors.Is(err, rooms.ErrNotFound) {
		return HierarchyRoom{}, nil, errNotHere
	}
	if err != nil {
		return HierarchyRoom{}, nil, err
	}
	members, err := s.db.RoomMembers(ctx, roomID, "join")
	if err != nil {
		return HierarchyRoom{}, nil, err
	}
	here := false
	for _, m := range members {
		here = here || id.ServerOf(m.UserID) == s.cfg.ServerName
	}
	if !here {
		// What we hold of a room we left is out of date: ask its servers.
		return HierarchyRoom{}, nil, errNotHere
	}
	summary, err := s.publicRoom(ctx, roomID)
	if err != nil {
		return HierarchyRoom{}, nil, err
	}
	summary.NumJoinedMembers = len(members)
	hr := HierarchyRoom{PublicRoom: summary, ChildrenState: []ChildState{}}
	content := func(t string) []byte {
		if ev := st[storage.StateKey{Type: t}]; ev != nil {
			return ev.Content()
		}
		return nil
	}
	var create struct {
		RoomVersion string `json:"room_version"`
	}
	_ = json.Unmarshal(content("m.room.create"), &create)
	hr.RoomVersion = cmp.Or(create.RoomVersion, "1")
	var enc struct {
		Algorithm string `json:"algorithm"`
	}
	_ = json.Unmarshal(content("m.room.encryption"), &enc)
	hr.Encryption = enc.Algorithm
	if hr.JoinRule == "restricted" || hr.JoinRule == "knock_restricted" {
		var jr struct {
			Allow []struct {
				Type   string `json:"type"`
				RoomID string `json:"room_id"`
			} `json:"allow"`
		}
		_ = json.Unmarshal(content("m.room.join_rules"), &jr)
		for _, a := range jr.Allow {
			if a.Type == "m.room_membership" && a.RoomID != "" {
				hr.AllowedRoomIDs = append(hr.AllowedRoomIDs, a.RoomID)
			}
		}
	}
	for k, ev := range st {
		if k.Type != "m.space.child" {
			continue
		}
		var c struct {
			Via       []string `json:"via"`
			Suggested bool     `json:"suggested"`
		}
		// A child without via is no child: the spec's way of removing one.
		if json.Unmarshal(ev.Content(), &c) != nil || len(c.Via) == 0 || (suggestedOnly && !c.Suggested) {
			continue
		}
		hr.ChildrenState = append(hr.ChildrenState, ChildState{Type: k.Type, StateKey: k.StateKey, Content: ev.Content(),
			Sender: ev.Sender(), OriginServerTS: ev.OriginServerTS()})
	}
	sortChildren(hr.ChildrenState)
	return hr, st, nil
}

// sortChildren orders a space's children as the spec asks: by their
// `order` string (children without one last), then by when they were
// added, then by room ID.
func sortChildren(cs []ChildState) {
	order := func(c ChildState) (string, bool) {
		var v struct {
			Order *string `json:"order"`
		}
		if json.Unmarshal(c.Content, &v) != nil || v.Order == nil || len(*v.Order) > 50 {
			return "", false
		}
		return *v.Order, true
	}
	sort.SliceStable(cs, func(i, j int) bool {
		oi, hi := order(cs[i])
		oj, hj := order(cs[j])
		if hi != hj {
			return hi
		}
		if oi != oj {
			return oi < oj
		}
		if cs[i].OriginServerTS != cs[j].OriginServerTS {
			return cs[i].OriginServerTS < cs[j].OriginServerTS
		}
		return cs[i].StateKey < cs[j].StateKey
	})
}

// The token carries the offset and the walk's parameters, which must not
// change between pages.
func hierarchyToken(offset int, suggestedOnly bool, depth int) string {
	return fmt.Sprintf("h%d_%t_%d", offset, suggestedOnly, depth)
}

func parseHierarchyToken(tok string, suggestedOnly bool, depth int) (int, error) {
	parts := strings.Split(strings.TrimPrefix(tok, "h"), "_")
	if !strings.HasPrefix(tok, "h") || len(parts) != 3 {
		return 0, ErrHierarchyToken
	}
	offset, err := strconv.Atoi(parts[0])
	if err != nil || offset < 0 {
		return 0, ErrHierarchyToken
	}
	if parts[1] != strconv.FormatBool(suggestedOnly) || parts[2] != strconv.Itoa(depth) {
		return 0, fmt.Errorf("%w: suggested_only and max_depth cannot change between pages", ErrHierarchyToken)
	}
	return offset, nil
}
