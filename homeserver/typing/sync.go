package typing

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/homeserver/sync"
)

// RegisterSync adds the typing extension to the sync service. Call it at
// the same point of the wiring at every start: tokens carry extension
// positions by registration order.
func (s *Service) RegisterSync(svc *sync.Service) { svc.AddExtension(extension{s}) }

// extension puts m.typing into the ephemeral events of joined rooms: the
// full list of a room's typing users, whenever it changed since the token.
type extension struct{ s *Service }

func (e extension) CurrentPos(context.Context) (int64, error) { return e.s.pos.Load(), nil }

type typingEvent struct {
	Type    string `json:"type"`
	Content struct {
		UserIDs []string `json:"user_ids"`
	} `json:"content"`
}

func (e extension) Fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (bool, error) {
	initial := req.Since == nil
	if !initial && from >= to {
		return false, nil
	}
	// A list that changed after to is sent as it is now: lists replace
	// each other, so sending a newer one early loses nothing, and the next
	// response at most repeats it.
	type change struct {
		roomID string
		users  []string
	}
	var changes []change
	e.s.mu.Lock()
	for id, r := range e.s.rooms {
		if initial && len(r.typing) > 0 || !initial && r.pos > from {
			changes = append(changes, change{id, e.s.listLocked(r)})
		}
	}
	e.s.mu.Unlock()
	if len(changes) == 0 {
		return false, nil
	}
	user := req.Viewer.UserID
	var eventsPos int64 = -1
	added := false
	for _, c := range changes {
		if req.RoomAllowed != nil && !req.RoomAllowed(c.roomID) {
			continue
		}
		if _, ok := resp.Rooms.Join[c.roomID]; !ok {
			if initial {
				continue // an initial sync has every room the user is joined to
			}
			// The common case, a room the user is not in, is answered from
			// memory; only the user's rooms cost a query.
			joined, err := e.s.cfg.Rooms.IsJoined(ctx, c.roomID, user)
			if err != nil || !joined {
				continue
			}
			if eventsPos < 0 {
				t, err := sync.ParseToken(resp.NextBatch)
				if err != nil {
					return false, fmt.Errorf("typing: next_batch: %w", err)
				}
				eventsPos = t.Events
			}
			// A join newer than the response is for the next one, which
			// will bring the whole room.
			pos, joined, err := e.s.cfg.Rooms.JoinedAt(ctx, c.roomID, user)
			if err != nil {
				return false, err
			}
			if !joined || pos > eventsPos {
				continue
			}
		}
		ev := typingEvent{Type: "m.typing"}
		ev.Content.UserIDs = c.users
		raw, err := json.Marshal(ev)
		if err != nil {
			return false, err
		}
		jr := resp.JoinedRoom(c.roomID)
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, raw)
		added = true
	}
	return added, nil
}
