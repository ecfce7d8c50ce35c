package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/homeserver/rooms"
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
	ChildrenState []ChildState `json:"children_state"`
}

// ChildState is an m.space.child event in stripped form, with its timestamp.
type ChildState struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
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
// (invited, public, knockable) or may read (world readable), as the spec
// describes. Rooms this server is not in are left out: they would have
// to be asked of other servers over federation, which is not done yet.
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
	root, ok, err := s.hierarchyRoom(ctx, req.UserID, req.RoomID, req.SuggestedOnly)
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
			hr, ok, err := s.hierarchyRoom(ctx, req.UserID, child.StateKey, req.SuggestedOnly)
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

// hierarchyRoom describes a room if the user may see it in a hierarchy.
func (s *Service) hierarchyRoom(ctx context.Context, userID, roomID string, suggestedOnly bool) (HierarchyRoom, bool, error) {
	st, err := s.rooms.CurrentState(ctx, roomID)
	if errors.Is(err, rooms.ErrNotFound) {
		return HierarchyRoom{}, false, nil
	}
	if err != nil {
		return HierarchyRoom{}, false, err
	}
	summary, err := s.publicRoom(ctx, roomID)
	if err != nil {
		return HierarchyRoom{}, false, err
	}
	membership := ""
	if ev := st[storage.StateKey{Type: "m.room.member", StateKey: userID}]; ev != nil {
		membership, _ = ev.Membership()
	}
	joinRule := summary.JoinRule
	visible := membership == "join" || membership == "invite" || summary.WorldReadable ||
		(membership != "ban" && (joinRule == "public" || joinRule == "knock" || joinRule == "knock_restricted"))
	if !visible {
		return HierarchyRoom{}, false, nil
	}
	members, err := s.db.RoomMembers(ctx, roomID, "join")
	if err != nil {
		return HierarchyRoom{}, false, err
	}
	summary.NumJoinedMembers = len(members)
	hr := HierarchyRoom{PublicRoom: summary, ChildrenState: []ChildState{}}
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
	return hr, true, nil
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
