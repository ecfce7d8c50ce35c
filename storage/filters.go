package storage

import (
	"context"
	"fmt"
)

// PutFilter stores a user's filter and returns its ID. Storing a filter
// with the same hash again returns the first one's ID.
func (db *DB) PutFilter(ctx context.Context, localpart string, hash []byte, filterJSON string) (int64, error) {
	var id int64
	// DO UPDATE rather than DO NOTHING so that RETURNING yields the
	// existing row's ID on both engines.
	err := db.QueryRowContext(ctx, `INSERT INTO filters (localpart, filter_hash, filter_json) VALUES ($1, $2, $3)
		ON CONFLICT (localpart, filter_hash) DO UPDATE SET filter_json = excluded.filter_json
		RETURNING id`, localpart, hash, filterJSON).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("storage: store filter: %w", err)
	}
	return id, nil
}

// GetFilter loads a user's filter by ID, or returns ErrNotFound (also for
// another user's filter).
func (db *DB) GetFilter(ctx context.Context, localpart string, id int64) (string, error) {
	var f string
	err := db.QueryRowContext(ctx, `SELECT filter_json FROM filters WHERE id = $1 AND localpart = $2`, id, localpart).Scan(&f)
	if err != nil {
		return "", notFound(err, "filter")
	}
	return f, nil
}
