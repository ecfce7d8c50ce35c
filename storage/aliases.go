package storage

import (
	"context"
	"fmt"
)

// ErrAliasExists is returned when an alias is already mapped.
var ErrAliasExists = fmt.Errorf("storage: alias already exists")

// CreateAlias maps alias to roomID, failing with ErrAliasExists.
func (db *DB) CreateAlias(ctx context.Context, alias, roomID, creator string) error {
	res, err := db.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING`,
		alias, roomID, creator)
	if err != nil {
		return fmt.Errorf("storage: create alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrAliasExists
	}
	return nil
}

// ResolveAlias returns the room an alias maps to and who created it, or ErrNotFound.
func (db *DB) ResolveAlias(ctx context.Context, alias string) (roomID, creator string, err error) {
	err = db.QueryRowContext(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, alias).Scan(&roomID, &creator)
	if err != nil {
		return "", "", notFound(err, "alias")
	}
	return roomID, creator, nil
}

// DeleteAlias removes an alias.
func (db *DB) DeleteAlias(ctx context.Context, alias string) error {
	_, err := db.ExecContext(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	return err
}

// RoomAliases lists the local aliases of a room.
func (db *DB) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	return queryStrings(ctx, db, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, roomID)
}
