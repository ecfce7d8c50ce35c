package storage

import (
	"context"
	"fmt"
	"time"
)

// OutboxEvent is an event queued for one destination.
type OutboxEvent struct {
	Seq         int64
	Destination string
	RoomID      string
	EventID     string
	JSON        string
}

// EnqueueOutbound queues events for destinations, in one transaction.
func (db *DB) EnqueueOutbound(ctx context.Context, evs []OutboxEvent) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		for _, e := range evs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO federation_outbox (destination, room_id, event_id, json) VALUES ($1, $2, $3, $4)`,
				e.Destination, e.RoomID, e.EventID, e.JSON); err != nil {
				return fmt.Errorf("storage: enqueue: %w", err)
			}
		}
		return nil
	})
}

// PendingOutbound returns up to limit queued events for a destination, oldest first.
func (db *DB) PendingOutbound(ctx context.Context, destination string, limit int) ([]OutboxEvent, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, destination, room_id, event_id, json FROM federation_outbox
		WHERE destination = $1 ORDER BY seq LIMIT $2`, destination, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []OutboxEvent
	for rows.Next() {
		var e OutboxEvent
		if err := rows.Scan(&e.Seq, &e.Destination, &e.RoomID, &e.EventID, &e.JSON); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AckOutbound removes a destination's queued events up to seq.
func (db *DB) AckOutbound(ctx context.Context, destination string, seq int64) error {
	_, err := db.ExecContext(ctx, `DELETE FROM federation_outbox WHERE destination = $1 AND seq <= $2`, destination, seq)
	return err
}

// OutboundDestinations lists destinations with queued events.
func (db *DB) OutboundDestinations(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, db, `SELECT DISTINCT destination FROM federation_outbox`)
}

// OutboundCount is the number of events queued for a destination.
func (db *DB) OutboundCount(ctx context.Context, destination string) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM federation_outbox WHERE destination = $1`, destination).Scan(&n)
	return n, err
}

// TrimOutbound keeps, of a destination's queue, only the latest keep events
// of each room: after a long outage the destination catches up from the
// latest events and fetches the gaps itself.
func (db *DB) TrimOutbound(ctx context.Context, destination string, keep int) error {
	_, err := db.ExecContext(ctx, `DELETE FROM federation_outbox WHERE destination = $1 AND seq NOT IN (
		SELECT seq FROM (
			SELECT seq, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY seq DESC) AS n
			FROM federation_outbox WHERE destination = $1
		) ranked WHERE n <= $2)`, destination, keep)
	return err
}

// InboundTxnResponse returns the stored response to a transaction already
// processed, or "" when it is new.
func (db *DB) InboundTxnResponse(ctx context.Context, origin, txnID string) (string, error) {
	var resp string
	err := db.QueryRowContext(ctx, `SELECT response FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&resp)
	if err != nil {
		if nf := notFound(err, "txn"); nf != nil && isNotFound(nf) {
			return "", nil
		}
		return "", err
	}
	return resp, nil
}

// StoreInboundTxn records a processed transaction's response.
func (db *DB) StoreInboundTxn(ctx context.Context, origin, txnID, response string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO federation_inbound_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, response, time.Now().UnixMilli())
	return err
}

// OutboxEDU is an EDU queued for one destination.
type OutboxEDU struct {
	Seq         int64
	Destination string
	Type        string
	Content     string
}

// EnqueueEDUs queues EDUs, in one transaction.
func (db *DB) EnqueueEDUs(ctx context.Context, edus []OutboxEDU) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		for _, e := range edus {
			if _, err := tx.ExecContext(ctx, `INSERT INTO federation_edu_outbox (destination, edu_type, content) VALUES ($1, $2, $3)`,
				e.Destination, e.Type, e.Content); err != nil {
				return fmt.Errorf("storage: enqueue EDU: %w", err)
			}
		}
		return nil
	})
}

// PendingEDUs returns up to limit queued EDUs for a destination, oldest first.
func (db *DB) PendingEDUs(ctx context.Context, destination string, limit int) ([]OutboxEDU, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, destination, edu_type, content FROM federation_edu_outbox
		WHERE destination = $1 ORDER BY seq LIMIT $2`, destination, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []OutboxEDU
	for rows.Next() {
		var e OutboxEDU
		if err := rows.Scan(&e.Seq, &e.Destination, &e.Type, &e.Content); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AckEDUs removes a destination's queued EDUs up to seq.
func (db *DB) AckEDUs(ctx context.Context, destination string, seq int64) error {
	_, err := db.ExecContext(ctx, `DELETE FROM federation_edu_outbox WHERE destination = $1 AND seq <= $2`, destination, seq)
	return err
}

// EDUDestinations lists destinations with queued EDUs.
func (db *DB) EDUDestinations(ctx context.Context) ([]string, error) {
	return queryStrings(ctx, db, `SELECT DISTINCT destination FROM federation_edu_outbox`)
}
