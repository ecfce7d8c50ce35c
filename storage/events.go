package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// EventRow is an event as stored.
type EventRow struct {
	EventNID       int64
	EventID        string
	RoomID         string
	Type           string
	StateKey       *string
	Sender         string
	Depth          int64
	OriginServerTS int64
	StreamPos      int64
	StateBefore    int64
	JSON           string
	RedactedBy     string
	// TxnUser, TxnDevice and TxnID identify the client request that sent a
	// local event; empty otherwise.
	TxnUser, TxnDevice, TxnID string
}

const eventColumns = `event_nid, event_id, room_id, type, state_key, sender, depth, origin_server_ts,
	stream_pos, state_before, json, COALESCE(redacted_by, ''), COALESCE(txn_user, ''), COALESCE(txn_device, ''), COALESCE(txn_id, '')`

func scanEvent(s interface{ Scan(...any) error }) (*EventRow, error) {
	e := &EventRow{}
	var sk sql.NullString
	err := s.Scan(&e.EventNID, &e.EventID, &e.RoomID, &e.Type, &sk, &e.Sender, &e.Depth, &e.OriginServerTS,
		&e.StreamPos, &e.StateBefore, &e.JSON, &e.RedactedBy, &e.TxnUser, &e.TxnDevice, &e.TxnID)
	if sk.Valid {
		e.StateKey = &sk.String
	}
	return e, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// InsertEvents stores events with one statement per chunk: a batch of the
// sequencer costs one round trip to the database, not one per event.
func (db *DB) InsertEvents(ctx context.Context, tx Execer, evs []*EventRow) error {
	const cols = 13
	for len(evs) > 0 {
		n := min(len(evs), 200)
		var q strings.Builder
		q.WriteString(`INSERT INTO events (event_id, room_id, type, state_key, sender, depth, origin_server_ts,
			stream_pos, state_before, json, txn_user, txn_device, txn_id) VALUES `)
		args := make([]any, 0, n*cols)
		for i, e := range evs[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + db.numberedPlaceholders(i*cols+1, cols) + ")")
			var sk any
			if e.StateKey != nil {
				sk = *e.StateKey
			}
			args = append(args, e.EventID, e.RoomID, e.Type, sk, e.Sender, e.Depth, e.OriginServerTS, e.StreamPos,
				e.StateBefore, e.JSON, nullable(e.TxnUser), nullable(e.TxnDevice), nullable(e.TxnID))
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("storage: insert events: %w", err)
		}
		evs = evs[n:]
	}
	return nil
}

// MarkRedacted records that redactionID redacts eventID.
func MarkRedacted(ctx context.Context, tx Execer, eventID, redactionID string) error {
	_, err := tx.ExecContext(ctx, `UPDATE events SET redacted_by = $1 WHERE event_id = $2 AND redacted_by IS NULL`, redactionID, eventID)
	return err
}

// GetEvent loads one event, or returns ErrNotFound.
func (db *DB) GetEvent(ctx context.Context, eventID string) (*EventRow, error) {
	e, err := scanEvent(db.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id = $1`, eventID))
	if err != nil {
		return nil, notFound(err, "event")
	}
	return e, nil
}

// GetEvents loads the events that exist among ids, from the timeline or
// the outliers (state fetched for a join is held as outliers), in no
// particular order.
func (db *DB) GetEvents(ctx context.Context, ids []string) ([]*EventRow, error) {
	all := ids
	var out []*EventRow
	// Chunked so that no query exceeds the engines' parameter limits.
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i := range args {
			args[i] = ids[i]
		}
		rows, err := db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id IN (`+placeholders(1, n)+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		ids = ids[n:]
	}
	if len(out) < len(all) {
		found := make(map[string]bool, len(out))
		for _, r := range out {
			found[r.EventID] = true
		}
		var rest []string
		for _, id := range all {
			if !found[id] {
				rest = append(rest, id)
			}
		}
		more, err := db.outliersAmong(ctx, rest)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// GetEventsOrdered loads the events among ids (timeline or outliers) in
// the order of ids, leaving out the ones not held.
func (db *DB) GetEventsOrdered(ctx context.Context, ids []string) ([]*EventRow, error) {
	rows, err := db.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*EventRow, len(rows))
	for _, r := range rows {
		byID[r.EventID] = r
	}
	out := make([]*EventRow, 0, len(rows))
	for _, id := range ids {
		if r, ok := byID[id]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// EventByTxn finds the event a client request already created.
func (db *DB) EventByTxn(ctx context.Context, user, device, txnID string) (*EventRow, error) {
	e, err := scanEvent(db.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE txn_user = $1 AND txn_device = $2 AND txn_id = $3`, user, device, txnID))
	if err != nil {
		return nil, notFound(err, "event")
	}
	return e, nil
}

// RoomEvents lists a room's events with from < stream_pos <= to, oldest
// first, or newest first when backwards; at most limit of them.
func (db *DB) RoomEvents(ctx context.Context, roomID string, from, to int64, limit int, backwards bool) ([]*EventRow, error) {
	order := "ASC"
	if backwards {
		order = "DESC"
	}
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3
		ORDER BY stream_pos `+order+` LIMIT $4`, roomID, from, to, limit)
}

// LastEventBefore is the room's last event at or before stream position
// pos, or ErrNotFound.
func (db *DB) LastEventBefore(ctx context.Context, roomID string, pos int64) (*EventRow, error) {
	e, err := scanEvent(db.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_id = $1 AND stream_pos <= $2 ORDER BY stream_pos DESC LIMIT 1`, roomID, pos))
	if err != nil {
		return nil, notFound(err, "event")
	}
	return e, nil
}

// ClosestEvent is the room's event nearest to ts in the given direction.
func (db *DB) ClosestEvent(ctx context.Context, roomID string, ts int64, forwards bool) (*EventRow, error) {
	q := `SELECT ` + eventColumns + ` FROM events WHERE room_id = $1 AND origin_server_ts >= $2 ORDER BY origin_server_ts ASC, stream_pos ASC LIMIT 1`
	if !forwards {
		q = `SELECT ` + eventColumns + ` FROM events WHERE room_id = $1 AND origin_server_ts <= $2 ORDER BY origin_server_ts DESC, stream_pos DESC LIMIT 1`
	}
	e, err := scanEvent(db.QueryRowContext(ctx, q, roomID, ts))
	if err != nil {
		return nil, notFound(err, "event")
	}
	return e, nil
}

// MaxStreamPos is the highest stream position stored.
func (db *DB) MaxStreamPos(ctx context.Context) (int64, error) {
	var p sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(stream_pos) FROM events`).Scan(&p); err != nil {
		return 0, fmt.Errorf("storage: %w", err)
	}
	return p.Int64, nil
}

// MinStreamPos is the lowest stream position stored, 0 when there is no
// event: backfilled history goes below it.
func (db *DB) MinStreamPos(ctx context.Context) (int64, error) {
	var p sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MIN(stream_pos) FROM events`).Scan(&p); err != nil {
		return 0, fmt.Errorf("storage: %w", err)
	}
	return p.Int64, nil
}

func (db *DB) queryEvents(ctx context.Context, q string, args ...any) ([]*EventRow, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []*EventRow
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RoomsChangedBetween maps each room with events at stream positions in
// (from, to] to its latest such position.
func (db *DB) RoomsChangedBetween(ctx context.Context, from, to int64) (map[string]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT room_id, MAX(stream_pos) FROM events WHERE stream_pos > $1 AND stream_pos <= $2 GROUP BY room_id`, from, to)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var room string
		var pos int64
		if err := rows.Scan(&room, &pos); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out[room] = pos
	}
	return out, rows.Err()
}

// TxnKey identifies a client's send request.
type TxnKey struct {
	User, Device, TxnID string
}

// EventIDsByTxn returns the events already created by any of the given
// requests, in one query: the sequencer checks a whole batch at once.
func (db *DB) EventIDsByTxn(ctx context.Context, keys []TxnKey) (map[TxnKey]string, error) {
	out := map[TxnKey]string{}
	for len(keys) > 0 {
		n := min(len(keys), 300)
		var q strings.Builder
		q.WriteString(`SELECT txn_user, txn_device, txn_id, event_id FROM events WHERE (txn_user, txn_device, txn_id) IN (`)
		args := make([]any, 0, 3*n)
		for i, k := range keys[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + placeholders(3*i+1, 3) + ")")
			args = append(args, k.User, k.Device, k.TxnID)
		}
		q.WriteString(")")
		rows, err := db.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		for rows.Next() {
			var k TxnKey
			var id string
			if err := rows.Scan(&k.User, &k.Device, &k.TxnID, &id); err != nil {
				rows.Close()
				return nil, err
			}
			out[k] = id
		}
		rows.Close()
		keys = keys[n:]
	}
	return out, nil
}
