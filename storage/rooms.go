package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
)

// Execer is what the write helpers need: a *sql.Tx, or the DB itself.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Room is a room's row: its version and where its timeline ends.
type Room struct {
	RoomID          string
	Version         string
	CreatedTS       int64
	CurrentSnapshot int64
	Depth           int64
	Published       bool
}

// InsertRoom records a new room.
func InsertRoom(ctx context.Context, tx Execer, r Room) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO rooms (room_id, room_version, created_ts, current_snapshot, depth, published)
		VALUES ($1, $2, $3, $4, $5, $6)`, r.RoomID, r.Version, r.CreatedTS, r.CurrentSnapshot, r.Depth, r.Published)
	if err != nil {
		return fmt.Errorf("storage: insert room: %w", err)
	}
	return nil
}

// GetRoom loads a room, or returns ErrNotFound.
func (db *DB) GetRoom(ctx context.Context, roomID string) (*Room, error) {
	r := &Room{}
	err := db.QueryRowContext(ctx, `SELECT room_id, room_version, created_ts, current_snapshot, depth, published
		FROM rooms WHERE room_id = $1`, roomID).
		Scan(&r.RoomID, &r.Version, &r.CreatedTS, &r.CurrentSnapshot, &r.Depth, &r.Published)
	if err != nil {
		return nil, notFound(err, "room")
	}
	return r, nil
}

// SetRoomHead moves a room's current state and depth, and replaces its
// forward extremities, in one statement.
func SetRoomHead(ctx context.Context, tx Execer, roomID string, snapshot, depth int64, extremities []string) error {
	if extremities == nil {
		extremities = []string{}
	}
	ext, err := json.Marshal(extremities)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rooms SET current_snapshot = $1, depth = $2, forward_extremities = $3 WHERE room_id = $4`,
		snapshot, depth, string(ext), roomID); err != nil {
		return fmt.Errorf("storage: set room head: %w", err)
	}
	return nil
}

// ForwardExtremities lists the room's forward extremities.
func (db *DB) ForwardExtremities(ctx context.Context, roomID string) ([]string, error) {
	var raw string
	if err := db.QueryRowContext(ctx, `SELECT forward_extremities FROM rooms WHERE room_id = $1`, roomID).Scan(&raw); err != nil {
		return nil, notFound(err, "room")
	}
	var ids []string
	if err := json.Unmarshal([]byte(raw), &ids); err != nil {
		return nil, fmt.Errorf("storage: forward extremities of %s: %w", roomID, err)
	}
	if len(ids) == 0 {
		// Rooms last written before migration 7 keep theirs in the old table.
		return queryStrings(ctx, db, `SELECT event_id FROM room_forward_extremities WHERE room_id = $1 ORDER BY event_id`, roomID)
	}
	return ids, nil
}

// SetRoomPublished lists or unlists a room in the public directory.
func (db *DB) SetRoomPublished(ctx context.Context, roomID string, published bool) error {
	_, err := db.ExecContext(ctx, `UPDATE rooms SET published = $1 WHERE room_id = $2`, published, roomID)
	return err
}

// PublishedRooms lists the rooms in the public directory.
func (db *DB) PublishedRooms(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, db, `SELECT room_id FROM rooms WHERE published ORDER BY created_ts`)
}

func queryStrings(ctx context.Context, q Execer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// placeholders returns "$start, $start+1, ..." for n arguments.
func placeholders(start, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", start+i)
	}
	return b.String()
}
