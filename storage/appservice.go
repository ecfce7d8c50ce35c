package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// The kinds of queued application service items.
const (
	// AppServiceEvent names a timeline event, formatted when its
	// transaction is built.
	AppServiceEvent = "event"
	// AppServiceEphemeral carries the JSON of an ephemeral event (typing,
	// receipt, presence).
	AppServiceEphemeral = "ephemeral"
	// AppServiceToDevice carries the JSON of a to-device message for one of
	// the service's users (MSC2409/MSC4203).
	AppServiceToDevice = "to_device"
)

// AppServiceItem is one thing an application service has yet to receive.
type AppServiceItem struct {
	// Seq orders a service's items; set by the database.
	Seq       int64
	ServiceID string
	// Kind is AppServiceEvent or AppServiceEphemeral.
	Kind    string
	EventID string
	JSON    string
}

// AppServiceTxn is a transaction sent to a service and not acknowledged yet.
type AppServiceTxn struct {
	ServiceID string
	TxnID     string
	Body      string
}

// AppServiceStreamPositions maps every service with a row to the stream
// position up to which events have been examined for it.
func (db *DB) AppServiceStreamPositions(ctx context.Context) (map[string]int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT service_id, stream_pos FROM appservice_streams`)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var pos int64
		if err := rows.Scan(&id, &pos); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out[id] = pos
	}
	return out, rows.Err()
}

// InitAppServiceStream gives a newly configured service its row, starting
// at pos: a new service receives what happens from now on, not history.
// An existing row is left alone.
func (db *DB) InitAppServiceStream(ctx context.Context, serviceID string, pos int64) error {
	_, err := db.ExecContext(ctx, `INSERT INTO appservice_streams (service_id, stream_pos) VALUES ($1, $2)
		ON CONFLICT (service_id) DO NOTHING`, serviceID, pos)
	if err != nil {
		return fmt.Errorf("storage: init appservice stream: %w", err)
	}
	return nil
}

// StreamEvents lists the events with from < stream_pos <= to, in stream
// order, at most limit of them.
func (db *DB) StreamEvents(ctx context.Context, from, to int64, limit int) ([]*EventRow, error) {
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos LIMIT $3`, from, to, limit)
}

// QueueAppServiceEvents queues items and moves the examined position of
// serviceIDs forward to pos, in one transaction: an event is queued
// exactly once however the server stops.
func (db *DB) QueueAppServiceEvents(ctx context.Context, items []AppServiceItem, serviceIDs []string, pos int64) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		if err := insertAppServiceItems(ctx, tx, items); err != nil {
			return err
		}
		for _, id := range serviceIDs {
			if _, err := tx.ExecContext(ctx, `UPDATE appservice_streams SET stream_pos = $1 WHERE service_id = $2 AND stream_pos < $1`,
				pos, id); err != nil {
				return fmt.Errorf("storage: appservice stream position: %w", err)
			}
		}
		return nil
	})
}

// QueueAppServiceItems queues items (ephemeral events) in one transaction.
func (db *DB) QueueAppServiceItems(ctx context.Context, items []AppServiceItem) error {
	if len(items) == 0 {
		return nil
	}
	return db.WithTx(ctx, func(tx *Tx) error { return insertAppServiceItems(ctx, tx, items) })
}

func insertAppServiceItems(ctx context.Context, tx *Tx, items []AppServiceItem) error {
	for _, it := range items {
		if _, err := tx.ExecContext(ctx, `INSERT INTO appservice_queue (service_id, kind, event_id, json) VALUES ($1, $2, $3, $4)`,
			it.ServiceID, it.Kind, it.EventID, it.JSON); err != nil {
			return fmt.Errorf("storage: queue for appservice: %w", err)
		}
	}
	return nil
}

// AppServiceQueue returns up to limit of a service's queued items, oldest
// first.
func (db *DB) AppServiceQueue(ctx context.Context, serviceID string, limit int) ([]AppServiceItem, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, service_id, kind, event_id, json FROM appservice_queue
		WHERE service_id = $1 ORDER BY seq LIMIT $2`, serviceID, limit)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []AppServiceItem
	for rows.Next() {
		var it AppServiceItem
		if err := rows.Scan(&it.Seq, &it.ServiceID, &it.Kind, &it.EventID, &it.JSON); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// PendingAppServiceTxn returns the service's unacknowledged transaction,
// or ErrNotFound when there is none.
func (db *DB) PendingAppServiceTxn(ctx context.Context, serviceID string) (*AppServiceTxn, error) {
	t := &AppServiceTxn{ServiceID: serviceID}
	err := db.QueryRowContext(ctx, `SELECT txn_id, body FROM appservice_txns WHERE service_id = $1`, serviceID).Scan(&t.TxnID, &t.Body)
	if err != nil {
		return nil, notFound(err, "appservice transaction")
	}
	return t, nil
}

// StartAppServiceTxn turns the service's queued items up to lastSeq into
// a transaction with the given body: in one database transaction it takes
// the service's next transaction ID, stores the body and removes the
// items from the queue.
func (db *DB) StartAppServiceTxn(ctx context.Context, serviceID string, lastSeq int64, body string) (*AppServiceTxn, error) {
	t := &AppServiceTxn{ServiceID: serviceID, Body: body}
	err := db.WithTx(ctx, func(tx *Tx) error {
		var next int64
		err := tx.QueryRowContext(ctx, `SELECT next_txn_id FROM appservice_streams WHERE service_id = $1`, serviceID).Scan(&next)
		if errors.Is(err, sql.ErrNoRows) {
			// A service unknown to the stream table still numbers its
			// transactions from 1.
			next = 1
			if _, err := tx.ExecContext(ctx, `INSERT INTO appservice_streams (service_id, stream_pos) VALUES ($1, 0)`, serviceID); err != nil {
				return fmt.Errorf("storage: appservice stream: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("storage: next appservice transaction ID: %w", err)
		}
		t.TxnID = strconv.FormatInt(next, 10)
		if _, err := tx.ExecContext(ctx, `UPDATE appservice_streams SET next_txn_id = $1 WHERE service_id = $2`, next+1, serviceID); err != nil {
			return fmt.Errorf("storage: next appservice transaction ID: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO appservice_txns (service_id, txn_id, body) VALUES ($1, $2, $3)`,
			serviceID, t.TxnID, body); err != nil {
			return fmt.Errorf("storage: store appservice transaction: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM appservice_queue WHERE service_id = $1 AND seq <= $2`, serviceID, lastSeq); err != nil {
			return fmt.Errorf("storage: dequeue for appservice: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// CompleteAppServiceTxn forgets a transaction the service acknowledged.
func (db *DB) CompleteAppServiceTxn(ctx context.Context, serviceID, txnID string) error {
	_, err := db.ExecContext(ctx, `DELETE FROM appservice_txns WHERE service_id = $1 AND txn_id = $2`, serviceID, txnID)
	if err != nil {
		return fmt.Errorf("storage: complete appservice transaction: %w", err)
	}
	return nil
}

// SetAppServiceRoomPublished lists (or unlists) a room in the directory a
// service keeps for one of its networks.
func (db *DB) SetAppServiceRoomPublished(ctx context.Context, serviceID, networkID, roomID string, published bool) error {
	var err error
	if published {
		_, err = db.ExecContext(ctx, `INSERT INTO appservice_room_directory (service_id, network_id, room_id) VALUES ($1, $2, $3)
			ON CONFLICT (service_id, network_id, room_id) DO NOTHING`, serviceID, networkID, roomID)
	} else {
		_, err = db.ExecContext(ctx, `DELETE FROM appservice_room_directory WHERE service_id = $1 AND network_id = $2 AND room_id = $3`,
			serviceID, networkID, roomID)
	}
	if err != nil {
		return fmt.Errorf("storage: appservice room directory: %w", err)
	}
	return nil
}

// AppServiceDirectoryEntry is a room listed in a service's network directory.
type AppServiceDirectoryEntry struct {
	ServiceID, NetworkID, RoomID string
}

// AppServicePublishedRooms lists the rooms in the directory of one
// service's network, or of all networks of all services when serviceID is
// empty.
func (db *DB) AppServicePublishedRooms(ctx context.Context, serviceID, networkID string) ([]AppServiceDirectoryEntry, error) {
	q := `SELECT service_id, network_id, room_id FROM appservice_room_directory`
	var args []any
	if serviceID != "" {
		q += ` WHERE service_id = $1 AND network_id = $2`
		args = append(args, serviceID, networkID)
	}
	rows, err := db.QueryContext(ctx, q+` ORDER BY service_id, network_id, room_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []AppServiceDirectoryEntry
	for rows.Next() {
		var e AppServiceDirectoryEntry
		if err := rows.Scan(&e.ServiceID, &e.NetworkID, &e.RoomID); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
