package receipts

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
)

// RegisterSync adds the receipts extension to the sync service. Call it at
// the same point of the wiring at every start: tokens carry extension
// positions by registration order.
func (s *Service) RegisterSync(svc *sync.Service) { svc.AddExtension(extension{s}) }

// extension puts m.receipt into the ephemeral events of joined rooms: on
// an initial sync every receipt of the user's rooms, then the receipts
// that moved, plus every receipt of a room the user newly joined.
type extension struct{ s *Service }

func (e extension) CurrentPos(ctx context.Context) (int64, error) {
	return e.s.cfg.DB.StreamPosition(ctx, storage.StreamReceipts)
}

func (e extension) Fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (bool, error) {
	db, user := e.s.cfg.DB, req.Viewer.UserID
	now, err := sync.ParseToken(resp.NextBatch)
	if err != nil {
		return false, fmt.Errorf("receipts: next_batch: %w", err)
	}
	var rs []storage.Receipt
	if req.Since == nil {
		if rs, err = db.JoinedRoomsReceipts(ctx, user, to, now.Events); err != nil {
			return false, err
		}
		// Only the rooms the response has: those the user is joined to
		// and the filter lets through.
		return e.add(req, rs, resp, func(roomID string) bool { _, ok := resp.Rooms.Join[roomID]; return ok })
	}
	if from < to {
		if rs, err = db.ReceiptsChanged(ctx, user, from, to, now.Events); err != nil {
			return false, err
		}
	}
	// Rooms joined since the token come whole, with their receipts.
	if evFrom := min(req.Since.Events, now.Events); evFrom < now.Events {
		ms, err := db.MembershipChanges(ctx, user, evFrom, now.Events)
		if err != nil {
			return false, err
		}
		var joined []string
		for _, m := range ms {
			if m.Membership == "join" {
				joined = append(joined, m.RoomID)
			}
		}
		more, err := db.RoomReceipts(ctx, user, joined, to)
		if err != nil {
			return false, err
		}
		rs = append(rs, more...)
	}
	return e.add(req, rs, resp, nil)
}

// receiptContent is an m.receipt event's content: event ID → receipt type
// → user ID → receipt.
type receiptContent map[string]map[string]map[string]receiptData

type receiptData struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// add batches the receipts into one m.receipt event per room, as the spec
// recommends. keep, when set, limits the rooms.
func (e extension) add(req sync.Request, rs []storage.Receipt, resp *sync.Response, keep func(string) bool) (bool, error) {
	if len(rs) == 0 {
		return false, nil
	}
	byRoom := map[string]receiptContent{}
	var order []string
	for _, r := range rs {
		if keep != nil && !keep(r.RoomID) || req.RoomAllowed != nil && !req.RoomAllowed(r.RoomID) {
			continue
		}
		c := byRoom[r.RoomID]
		if c == nil {
			c = receiptContent{}
			byRoom[r.RoomID] = c
			order = append(order, r.RoomID)
		}
		if c[r.EventID] == nil {
			c[r.EventID] = map[string]map[string]receiptData{}
		}
		if c[r.EventID][r.Type] == nil {
			c[r.EventID][r.Type] = map[string]receiptData{}
		}
		c[r.EventID][r.Type][r.UserID] = receiptData{TS: r.TS, ThreadID: r.ThreadID}
	}
	for _, roomID := range order {
		raw, err := json.Marshal(struct {
			Type    string         `json:"type"`
			Content receiptContent `json:"content"`
		}{"m.receipt", byRoom[roomID]})
		if err != nil {
			return false, err
		}
		jr := resp.JoinedRoom(roomID)
		jr.Ephemeral.Events = append(jr.Ephemeral.Events, raw)
	}
	return len(order) > 0, nil
}
