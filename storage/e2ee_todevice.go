package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// StreamToDevice orders to-device messages. Every message has a position
// of its own, so that a /sync that delivers only part of a device's queue
// can say exactly how far it got.
const StreamToDevice = "to_device"

// toDeviceTxnTTL is how long a /sendToDevice transaction ID is remembered
// (milliseconds): far longer than any client retries a request.
const toDeviceTxnTTL = 24 * 60 * 60 * 1000

// ToDeviceMessage is a message waiting for a device.
type ToDeviceMessage struct {
	StreamPos int64
	UserID    string
	DeviceID  string
	Sender    string
	Type      string
	// Content is the message's content, a JSON object.
	Content string
}

// ToDeviceTxn identifies a /sendToDevice request for idempotency: the
// sending device and the request's event type and transaction ID.
type ToDeviceTxn struct {
	UserID    string
	DeviceID  string
	EventType string
	TxnID     string
	// TS is the time of the request (milliseconds), for pruning.
	TS int64
}

// QueueToDevice stores messages for local devices, in the order given,
// each at a stream position of its own. With txn it first records the
// transaction ID and, if the same request was seen before, stores nothing
// and returns duplicate. last is the last position used (0 when there were
// no messages or it was a duplicate).
func (db *DB) QueueToDevice(ctx context.Context, txn *ToDeviceTxn, msgs []ToDeviceMessage) (last int64, duplicate bool, err error) {
	err = db.WithTx(ctx, func(tx *sql.Tx) error {
		last, duplicate = 0, false
		if txn != nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND created_ts < $3`,
				txn.UserID, txn.DeviceID, txn.TS-toDeviceTxnTTL); err != nil {
				return fmt.Errorf("storage: prune to-device transactions: %w", err)
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO to_device_txns (user_id, device_id, event_type, txn_id, created_ts)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, event_type, txn_id) DO NOTHING`,
				txn.UserID, txn.DeviceID, txn.EventType, txn.TxnID, txn.TS)
			if err != nil {
				return fmt.Errorf("storage: record to-device transaction: %w", err)
			}
			if rowsAffected(res) == 0 {
				duplicate = true
				return nil
			}
		}
		if len(msgs) == 0 {
			return nil
		}
		// One UPDATE reserves a block of positions: the row lock orders
		// this transaction's commit against every other writer's.
		if err := tx.QueryRowContext(ctx, `UPDATE stream_positions SET pos = pos + $2 WHERE stream = $1 RETURNING pos`,
			StreamToDevice, len(msgs)).Scan(&last); err != nil {
			return fmt.Errorf("storage: next to-device positions: %w", err)
		}
		first := last - int64(len(msgs)) + 1
		for i, m := range msgs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO to_device_messages (stream_pos, user_id, device_id, sender, type, content)
				VALUES ($1, $2, $3, $4, $5, $6)`, first+int64(i), m.UserID, m.DeviceID, m.Sender, m.Type, m.Content); err != nil {
				return fmt.Errorf("storage: queue to-device message: %w", err)
			}
		}
		return nil
	})
	return last, duplicate, err
}

// PendingToDevice lists up to limit messages for a device at positions in
// (after, upTo], oldest first.
func (db *DB) PendingToDevice(ctx context.Context, userID, deviceID string, after, upTo int64, limit int) ([]ToDeviceMessage, error) {
	rows, err := db.QueryContext(ctx, `SELECT stream_pos, user_id, device_id, sender, type, content FROM to_device_messages
		WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4 ORDER BY stream_pos LIMIT $5`,
		userID, deviceID, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: pending to-device messages: %w", err)
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		var m ToDeviceMessage
		if err := rows.Scan(&m.StreamPos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &m.Content); err != nil {
			return nil, fmt.Errorf("storage: pending to-device messages: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// AckToDevice deletes a device's messages at positions up to upTo: the
// device has acknowledged them by syncing from a token at upTo.
func (db *DB) AckToDevice(ctx context.Context, userID, deviceID string, upTo int64) error {
	// Every /sync acknowledges, and most have nothing to delete: look
	// first, so that they do not all queue for SQLite's write lock.
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3 LIMIT 1`,
		userID, deviceID, upTo).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: delivered to-device messages: %w", err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3`,
		userID, deviceID, upTo); err != nil {
		return fmt.Errorf("storage: delete delivered to-device messages: %w", err)
	}
	return nil
}
