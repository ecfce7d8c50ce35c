package presence

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
)

// RegisterSync adds the presence extension to the sync service, enabled or
// not: tokens carry extension positions by registration order, so the
// extensions after this one must keep their places when presence is
// turned on or off. Call it at the same point of the wiring at every start.
func (s *Service) RegisterSync(svc *sync.Service) { svc.AddExtension(extension{s}) }

// extension fills presence.events: on an initial sync the presence of the
// user and of everyone who shares a room with them, then the changes, plus
// the presence of users who came to share a room.
type extension struct{ s *Service }

func (e extension) CurrentPos(ctx context.Context) (int64, error) {
	if !e.s.cfg.Enabled {
		return 0, nil
	}
	return e.s.cfg.DB.StreamPosition(ctx, storage.StreamPresence)
}

func (e extension) Fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (bool, error) {
	if !e.s.cfg.Enabled {
		return false, nil
	}
	db, user := e.s.cfg.DB, req.Viewer.UserID
	var ps []storage.Presence
	var err error
	if req.Since == nil {
		if ps, err = db.RoommatesPresence(ctx, user, to); err != nil {
			return false, err
		}
	} else {
		if from < to {
			if ps, err = db.PresenceChanged(ctx, user, from, to); err != nil {
				return false, err
			}
		}
		now, err := sync.ParseToken(resp.NextBatch)
		if err != nil {
			return false, fmt.Errorf("presence: next_batch: %w", err)
		}
		if evFrom := min(req.Since.Events, now.Events); evFrom < now.Events {
			more, err := db.NewRoommatesPresence(ctx, user, evFrom, now.Events, to)
			if err != nil {
				return false, err
			}
			ps = append(ps, more...)
		}
	}
	if len(ps) == 0 {
		return false, nil
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p.UserID] {
			continue
		}
		seen[p.UserID] = true
		raw, err := json.Marshal(struct {
			Type    string `json:"type"`
			Sender  string `json:"sender"`
			Content Status `json:"content"`
		}{"m.presence", p.UserID, e.s.status(e.s.withLastActive(p))})
		if err != nil {
			return false, err
		}
		resp.Presence.Events = append(resp.Presence.Events, raw)
	}
	return true, nil
}
