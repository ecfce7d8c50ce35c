package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// StreamReceipts orders receipt changes.
const StreamReceipts = "receipts"

// ReceiptPrivate is the receipt type only its owner may see.
const ReceiptPrivate = "m.read.private"

// Receipt is a user's latest receipt of one type in one thread of a room.
type Receipt struct {
	RoomID string
	UserID string
	Type   string
	// ThreadID is "" for an unthreaded receipt, else "main" or the event
	// ID of a thread root.
	ThreadID string
	EventID  string
	// EventStreamPos is the receipted event's position in the event
	// stream, 0 when unknown.
	EventStreamPos int64
	TS             int64
	StreamPos      int64
}

const receiptColumns = `r.room_id, r.user_id, r.receipt_type, r.thread_id, r.event_id, r.event_stream_pos, r.ts, r.stream_pos`

// PutReceipt stores r as the user's receipt of its type and thread in its
// room, at a new receipts stream position, which it returns. A receipt
// that would move the marker backwards (to an event earlier in the stream
// than the stored one, when both positions are known) or that names the
// stored event again changes nothing and returns 0: receipts mean "read up
// to", and clients do send stale ones.
func (db *DB) PutReceipt(ctx context.Context, r Receipt) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		// The stream lock first: it serialises receipt writers, which
		// makes the comparison below safe.
		var err error
		if pos, err = streamPos(ctx, tx, StreamReceipts); err != nil {
			return err
		}
		var oldEvent string
		var oldPos int64
		err = tx.QueryRowContext(ctx, `SELECT event_id, event_stream_pos FROM receipts
			WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4`,
			r.RoomID, r.UserID, r.Type, r.ThreadID).Scan(&oldEvent, &oldPos)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("storage: read receipt: %w", err)
		case oldEvent == r.EventID, oldPos > 0 && r.EventStreamPos > 0 && r.EventStreamPos < oldPos:
			return ErrUnchanged
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_stream_pos, ts, stream_pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id,
				event_stream_pos = excluded.event_stream_pos, ts = excluded.ts, stream_pos = excluded.stream_pos`,
			r.RoomID, r.UserID, r.Type, r.ThreadID, r.EventID, r.EventStreamPos, r.TS, pos)
		if err != nil {
			return fmt.Errorf("storage: write receipt: %w", err)
		}
		return nil
	})
	if errors.Is(err, ErrUnchanged) {
		return 0, nil
	}
	return pos, err
}

// ReceiptsChanged lists the receipts written at receipts stream positions
// in (from, to] in the rooms userID is joined to, counting only joins at
// event stream positions up to joinedBy (the rooms a /sync response
// covers). Private receipts are userID's own only. The range scan of the
// stream index comes first, so that the cost follows the number of
// changes, not the number of the user's rooms.
func (db *DB) ReceiptsChanged(ctx context.Context, userID string, from, to, joinedBy int64) ([]Receipt, error) {
	return db.queryReceipts(ctx, `SELECT `+receiptColumns+` FROM receipts r
		JOIN room_memberships m ON m.room_id = r.room_id AND m.user_id = $1 AND m.membership = 'join' AND m.stream_pos <= $4
		WHERE r.stream_pos > $2 AND r.stream_pos <= $3 AND (r.receipt_type <> $5 OR r.user_id = $1)
		ORDER BY r.stream_pos`, userID, from, to, joinedBy, ReceiptPrivate)
}

// JoinedRoomsReceipts lists the receipts, up to receipts stream position
// to, of every room userID is joined to (joins up to event stream position
// joinedBy): what an initial /sync shows. Private receipts are userID's own
// only.
func (db *DB) JoinedRoomsReceipts(ctx context.Context, userID string, to, joinedBy int64) ([]Receipt, error) {
	return db.queryReceipts(ctx, `SELECT `+receiptColumns+` FROM room_memberships m
		JOIN receipts r ON r.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND m.stream_pos <= $3 AND NOT m.forgotten
			AND r.stream_pos <= $2 AND (r.receipt_type <> $4 OR r.user_id = $1)
		ORDER BY r.stream_pos`, userID, to, joinedBy, ReceiptPrivate)
}

// RoomReceipts lists the receipts, up to receipts stream position to, of
// the given rooms, for userID (whose private receipts are the only private
// ones included): the receipts of rooms a /sync response sends whole.
func (db *DB) RoomReceipts(ctx context.Context, userID string, roomIDs []string, to int64) ([]Receipt, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	args := []any{userID, to, ReceiptPrivate}
	for _, id := range roomIDs {
		args = append(args, id)
	}
	return db.queryReceipts(ctx, `SELECT `+receiptColumns+` FROM receipts r
		WHERE r.room_id IN (`+placeholders(4, len(roomIDs))+`) AND r.stream_pos <= $2 AND (r.receipt_type <> $3 OR r.user_id = $1)
		ORDER BY r.stream_pos`, args...)
}

// LatestReadReceipt is the user's read receipt in the room's main timeline
// (unthreaded or thread "main", public or private) that is furthest along
// the event stream; ErrNotFound when there is none.
func (db *DB) LatestReadReceipt(ctx context.Context, roomID, userID string) (*Receipt, error) {
	rs, err := db.queryReceipts(ctx, `SELECT `+receiptColumns+` FROM receipts r
		WHERE r.room_id = $1 AND r.user_id = $2 AND r.receipt_type IN ('m.read', $3) AND r.thread_id IN ('', 'main')
		ORDER BY r.event_stream_pos DESC, r.stream_pos DESC LIMIT 1`, roomID, userID, ReceiptPrivate)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: receipt", ErrNotFound)
	}
	return &rs[0], nil
}

func (db *DB) queryReceipts(ctx context.Context, q string, args ...any) ([]Receipt, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: receipts: %w", err)
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.EventStreamPos, &r.TS, &r.StreamPos); err != nil {
			return nil, fmt.Errorf("storage: receipts: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: receipts: %w", err)
	}
	return out, nil
}
