package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AccountData is one account data entry: global when RoomID is "".
type AccountData struct {
	RoomID    string
	Type      string
	Content   []byte // a JSON object
	StreamPos int64
}

// PutAccountData stores content (a JSON object) as the user's account data
// of the given type, global when roomID is "", at a new stream position,
// which it returns.
func (db *DB) PutAccountData(ctx context.Context, localpart, roomID, typ string, content []byte) (int64, error) {
	return db.UpdateAccountData(ctx, localpart, roomID, typ, func([]byte) ([]byte, error) { return content, nil })
}

// ErrUnchanged is returned by an UpdateAccountData function to leave the
// entry as it is, without using a stream position.
var ErrUnchanged = errors.New("storage: unchanged")

// UpdateAccountData replaces an account data entry with what update makes of
// the current content (nil when there is none), in one transaction, so that
// concurrent read-modify-write updates (room tags) do not lose each other's
// changes. When update returns ErrUnchanged nothing is written and the
// position returned is 0.
func (db *DB) UpdateAccountData(ctx context.Context, localpart, roomID, typ string, update func(old []byte) ([]byte, error)) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		// The stream lock first: it serialises every account data writer,
		// which makes the read below safe to modify.
		var err error
		if pos, err = streamPos(ctx, tx, StreamAccountData); err != nil {
			return err
		}
		var old []byte
		err = tx.QueryRowContext(ctx, `SELECT content FROM account_data WHERE localpart = $1 AND room_id = $2 AND type = $3`,
			localpart, roomID, typ).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("storage: read account data: %w", err)
		}
		content, err := update(old)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO account_data (localpart, room_id, type, content, stream_pos)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (localpart, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
			localpart, roomID, typ, string(content), pos)
		if err != nil {
			return fmt.Errorf("storage: write account data: %w", err)
		}
		return nil
	})
	if errors.Is(err, ErrUnchanged) {
		return 0, nil
	}
	return pos, err
}

// GetAccountData loads one entry's content, or returns ErrNotFound.
func (db *DB) GetAccountData(ctx context.Context, localpart, roomID, typ string) ([]byte, error) {
	var content string
	err := db.QueryRowContext(ctx, `SELECT content FROM account_data WHERE localpart = $1 AND room_id = $2 AND type = $3`,
		localpart, roomID, typ).Scan(&content)
	if err != nil {
		return nil, notFound(err, "account data")
	}
	return []byte(content), nil
}

// AccountDataSince lists a user's entries written after stream position
// since and up to upto (inclusive), in stream order. Each entry appears
// once, with its latest content.
func (db *DB) AccountDataSince(ctx context.Context, localpart string, since, upto int64) ([]AccountData, error) {
	rows, err := db.QueryContext(ctx, `SELECT room_id, type, content, stream_pos FROM account_data
		WHERE localpart = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, localpart, since, upto)
	if err != nil {
		return nil, fmt.Errorf("storage: account data since: %w", err)
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var (
			d       AccountData
			content string
		)
		if err := rows.Scan(&d.RoomID, &d.Type, &content, &d.StreamPos); err != nil {
			return nil, fmt.Errorf("storage: account data since: %w", err)
		}
		d.Content = []byte(content)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: account data since: %w", err)
	}
	return out, nil
}
