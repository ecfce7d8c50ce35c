package rooms

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/storage"
)

// CreateAlias maps a local alias to a room the creator is joined to.
func (e *Engine) CreateAlias(ctx context.Context, alias, roomID, creator string) error {
	m, err := e.Membership(ctx, roomID, creator)
	if err != nil {
		return err
	}
	if m != "join" {
		return wrapf(ErrForbidden, "you must be joined to the room to give it an alias")
	}
	if err := e.checkAliasCreation(ctx, alias, creator); err != nil {
		return err
	}
	if err := e.db.CreateAlias(ctx, alias, roomID, creator); errors.Is(err, storage.ErrAliasExists) {
		return wrapf(ErrRoomInUse, "room alias %s already exists", alias)
	} else if err != nil {
		return err
	}
	return nil
}

// DeleteAlias removes an alias: its creator, a server admin, or a user with
// the power to change the room's canonical alias may.
func (e *Engine) DeleteAlias(ctx context.Context, alias, userID string, isAdmin bool) error {
	roomID, creator, err := e.db.ResolveAlias(ctx, alias)
	if errors.Is(err, storage.ErrNotFound) {
		return wrapf(ErrNotFound, "unknown room alias")
	}
	if err != nil {
		return err
	}
	if creator != userID && !isAdmin && !e.mayChangeState(ctx, roomID, userID, "m.room.canonical_alias") {
		return wrapf(ErrForbidden, "you may not remove this alias")
	}
	return e.db.DeleteAlias(ctx, alias)
}

// mayChangeState reports whether the user's power level allows sending the
// state event type in the room now.
func (e *Engine) mayChangeState(ctx context.Context, roomID, userID, eventType string) bool {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return false
	}
	r.mu.RLock()
	create, pl := r.state[storage.StateKey{Type: "m.room.create"}], r.state[storage.StateKey{Type: "m.room.power_levels"}]
	r.mu.RUnlock()
	levels, err := authrules.NewPowerLevels(create, pl)
	if err != nil {
		return false
	}
	return levels.UserLevel(userID) >= levels.EventLevel(eventType, true)
}
