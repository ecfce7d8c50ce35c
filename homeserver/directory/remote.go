package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// RemoteDirectory fetches another server's public room directory (over
// federation).
type RemoteDirectory func(ctx context.Context, server string, req PublicRoomsRequest) (*PublicRoomsPage, error)

// ErrNoRemoteDirectory: another server's directory was asked for and no
// way to fetch it is installed.
var ErrNoRemoteDirectory = errors.New("listing the room directory of another server is not available")

// ErrRemoteDirectory wraps a failure of the other server.
var ErrRemoteDirectory = errors.New("the other server's room directory could not be fetched")

// SetRemote installs how other servers' directories are fetched.
func (s *Service) SetRemote(f RemoteDirectory) { s.remote.Store(&f) }

// PublicRoomsOf lists server's directory: ours for "" or our name,
// another server's through the installed RemoteDirectory.
func (s *Service) PublicRoomsOf(ctx context.Context, server string, req PublicRoomsRequest) (*PublicRoomsPage, error) {
	if server == "" || server == s.cfg.ServerName {
		return s.PublicRooms(ctx, req)
	}
	f := s.remote.Load()
	if f == nil {
		return nil, ErrNoRemoteDirectory
	}
	page, err := (*f)(ctx, server, req)
	if err != nil {
		return nil, errors.Join(ErrRemoteDirectory, err)
	}
	return page, nil
}

// ServerHierarchy is the federation answer about a space
// (GET /_matrix/federation/v1/hierarchy/{roomId}): the room and those of
// its children the asking server may reach, one level deep.
type ServerHierarchy struct {
	Room                 HierarchyRoom   `json:"room"`
	Children             []HierarchyRoom `json:"children"`
	InaccessibleChildren []string        `json:"inaccessible_children"`
}

// RemoteHierarchy asks a server about a space (over federation).
type RemoteHierarchy func(ctx context.Context, server, roomID string, suggestedOnly bool) (*ServerHierarchy, error)

// SetRemoteHierarchy installs how other servers are asked about spaces
// this server is not in.
func (s *Service) SetRemoteHierarchy(f RemoteHierarchy) { s.remoteHierarchy.Store(&f) }

// hierarchyCacheTTL is how long another server's answer about a space is
// reused, as the spec suggests: clients page through a hierarchy and ask
// again as users open spaces.
const (
	hierarchyCacheTTL  = time.Minute
	hierarchyCacheSize = 1000
)

// hierarchyCache keeps other servers' answers about spaces.
type hierarchyCache struct {
	mu sync.Mutex
	m  map[string]cachedHierarchy
}

type cachedHierarchy struct {
	answer  *ServerHierarchy
	expires time.Time
}

// askHierarchy asks server about a space through the installed
// RemoteHierarchy, or answers from the cache.
func (s *Service) askHierarchy(ctx context.Context, server, roomID string, suggestedOnly bool) (*ServerHierarchy, error) {
	f := s.remoteHierarchy.Load()
	if f == nil {
		return nil, ErrNoRemoteDirectory
	}
	key := fmt.Sprintf("%s|%s|%t", server, roomID, suggestedOnly)
	c := &s.hierarchies
	now := time.Now()
	c.mu.Lock()
	if e, ok := c.m[key]; ok && now.Before(e.expires) {
		c.mu.Unlock()
		return e.answer, nil
	}
	c.mu.Unlock()
	answer, err := (*f)(ctx, server, roomID, suggestedOnly)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= hierarchyCacheSize {
		c.m = map[string]cachedHierarchy{} // crude but bounded
	}
	c.m[key] = cachedHierarchy{answer: answer, expires: now.Add(hierarchyCacheTTL)}
	c.mu.Unlock()
	return answer, nil
}

// ErrHierarchyNotFound: the room is not known here, or the asking server
// may not reach it.
var ErrHierarchyNotFound = errors.New("room not found or not accessible to this server")

// HierarchyFor answers another server about a space: the room and its
// children, each only if the server could reach it (it is world readable,
// public or knockable, one of the server's users is in it or invited, or
// it is restricted to a room one of them is in). Children we know but the
// server may not reach are listed as inaccessible; children we are not in
// are left out.
func (s *Service) HierarchyFor(ctx context.Context, server, roomID string, suggestedOnly bool) (*ServerHierarchy, error) {
	root, st, err := s.localRoom(ctx, roomID, suggestedOnly)
	if errors.Is(err, errNotHere) {
		return nil, ErrHierarchyNotFound
	}
	if err != nil {
		return nil, err
	}
	if ok, err := s.serverMaySee(ctx, server, root, st); err != nil {
		return nil, err
	} else if !ok {
		return nil, ErrHierarchyNotFound
	}
	out := &ServerHierarchy{Room: root, Children: []HierarchyRoom{}, InaccessibleChildren: []string{}}
	for _, c := range root.ChildrenState {
		hr, cst, err := s.localRoom(ctx, c.StateKey, suggestedOnly)
		if errors.Is(err, errNotHere) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ok, err := s.serverMaySee(ctx, server, hr, cst); err != nil {
			return nil, err
		} else if ok {
			out.Children = append(out.Children, hr)
		} else {
			out.InaccessibleChildren = append(out.InaccessibleChildren, c.StateKey)
		}
	}
	return out, nil
}

// serverMaySee says whether a server could peek into or join a room.
func (s *Service) serverMaySee(ctx context.Context, server string, hr HierarchyRoom, st map[storage.StateKey]*event.Event) (bool, error) {
	switch hr.JoinRule {
	case "public", "knock", "knock_restricted":
		return true, nil
	}
	if hr.WorldReadable {
		return true, nil
	}
	for k, ev := range st {
		if k.Type == "m.room.member" && id.ServerOf(k.StateKey) == server {
			if m, _ := ev.Membership(); m == "join" || m == "invite" {
				return true, nil
			}
		}
	}
	if hr.JoinRule == "restricted" {
		for _, allowed := range hr.AllowedRoomIDs {
			members, err := s.db.RoomMembers(ctx, allowed, "join")
			if err != nil {
				return false, err
			}
			for _, m := range members {
				if id.ServerOf(m.UserID) == server {
					return true, nil
				}
			}
		}
	}
	return false, nil
}
