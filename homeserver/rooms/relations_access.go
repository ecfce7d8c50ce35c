package rooms

import (
	"context"

	"github.com/parley-chat/parley/storage"
)

// What the relations, search and directory services need from the engine
// beyond its public reading API.

// VisibleRows keeps, of stored events of one room, those the user may see
// under the history visibility rules (the same rules as /messages).
func (e *Engine) VisibleRows(ctx context.Context, userID, roomID string, rows []*storage.EventRow) ([]*storage.EventRow, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	vc, err := e.newVisibilityChecker(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	return vc.filter(ctx, rows)
}

// CurrentStreamPos is the stream position up to which every event is
// committed: how far readers of the timeline may read.
func (e *Engine) CurrentStreamPos() int64 { return e.cfg.Positions.Current() }
