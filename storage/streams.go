package storage

import (
	"context"
	"fmt"
)

// Streams are counters in the stream_positions table that order the changes
// /sync reports. A new stream is a row inserted by the migration that
// creates its table.

// StreamAccountData orders account data changes.
const StreamAccountData = "account_data"

// streamPos takes the next position of stream inside tx. The UPDATE locks
// the stream's row until tx ends, so positions are committed in the order
// they are handed out.
func streamPos(ctx context.Context, q querier, stream string) (int64, error) {
	var pos int64
	if err := q.QueryRowContext(ctx, `UPDATE stream_positions SET pos = pos + 1 WHERE stream = $1 RETURNING pos`, stream).Scan(&pos); err != nil {
		return 0, fmt.Errorf("storage: next %s position: %w", stream, err)
	}
	return pos, nil
}

// StreamPosition is the last position handed out on stream. Every write up
// to it is committed.
func (db *DB) StreamPosition(ctx context.Context, stream string) (int64, error) {
	var pos int64
	if err := db.QueryRowContext(ctx, `SELECT pos FROM stream_positions WHERE stream = $1`, stream).Scan(&pos); err != nil {
		return 0, notFound(err, "stream "+stream)
	}
	return pos, nil
}
