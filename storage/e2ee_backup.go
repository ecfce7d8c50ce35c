package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BackupVersion is a version of a user's server-side key backup.
type BackupVersion struct {
	Version   int64
	Algorithm string
	// AuthData is the algorithm's auth_data, a JSON object.
	AuthData string
	// Etag counts changes to the version's keys.
	Etag int64
	// Count is the number of keys the version holds.
	Count int64
}

// RoomKey is one backed-up megolm session key.
type RoomKey struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	// SessionData is the encrypted key, a JSON object.
	SessionData string
}

// WrongBackupVersionError is returned for a write to a backup version that
// exists but is not the current one.
type WrongBackupVersionError struct {
	// Current is the current version, 0 when there is none.
	Current int64
}

func (e *WrongBackupVersionError) Error() string {
	return fmt.Sprintf("storage: backup version is not the current one (%d)", e.Current)
}

// CreateBackupVersion creates a new backup version for a user, which
// becomes the current one, and returns its number. Numbers are never
// reused, even those of deleted versions.
func (db *DB) CreateBackupVersion(ctx context.Context, userID, algorithm, authData string) (int64, error) {
	// Two concurrent creations compute the same number; the loser's
	// insert does nothing and it tries the next number.
	for range 10 {
		var v int64
		err := db.QueryRowContext(ctx, `INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data)
			SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM e2e_room_keys_versions WHERE user_id = $1
			ON CONFLICT (user_id, version) DO NOTHING RETURNING version`, userID, algorithm, authData).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("storage: create backup version: %w", err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("storage: create backup version: too much contention")
}

// GetBackupVersion returns a backup version that is not deleted, or the
// current one when version is 0; ErrNotFound when there is none.
func (db *DB) GetBackupVersion(ctx context.Context, userID string, version int64) (*BackupVersion, error) {
	q := `SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions WHERE user_id = $1 AND NOT deleted`
	args := []any{userID}
	if version == 0 {
		q += ` ORDER BY version DESC LIMIT 1`
	} else {
		q += ` AND version = $2`
		args = append(args, version)
	}
	b := &BackupVersion{}
	if err := db.QueryRowContext(ctx, q, args...).Scan(&b.Version, &b.Algorithm, &b.AuthData, &b.Etag); err != nil {
		return nil, notFound(err, "backup version")
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2`,
		userID, b.Version).Scan(&b.Count); err != nil {
		return nil, fmt.Errorf("storage: count backed-up keys: %w", err)
	}
	return b, nil
}

// UpdateBackupVersion replaces the auth_data of a backup version that is
// not deleted, or returns ErrNotFound.
func (db *DB) UpdateBackupVersion(ctx context.Context, userID string, version int64, authData string) error {
	res, err := db.ExecContext(ctx, `UPDATE e2e_room_keys_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND NOT deleted`,
		userID, version, authData)
	if err != nil {
		return fmt.Errorf("storage: update backup version: %w", err)
	}
	if rowsAffected(res) == 0 {
		return fmt.Errorf("%w: backup version", ErrNotFound)
	}
	return nil
}

// DeleteBackupVersion deletes a backup version and its keys. Deleting a
// version that was deleted before succeeds; one that never existed is
// ErrNotFound.
func (db *DB) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE e2e_room_keys_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2`, userID, version)
		if err != nil {
			return fmt.Errorf("storage: delete backup version: %w", err)
		}
		if rowsAffected(res) == 0 {
			return fmt.Errorf("%w: backup version", ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM e2e_room_keys WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
			return fmt.Errorf("storage: delete backed-up keys: %w", err)
		}
		return nil
	})
}

// lockBackupVersion checks that a version exists (not deleted) and locks
// its row for the rest of tx, so that writers of one backup take turns
// (on SQLite every writer does anyway).
func lockBackupVersion(ctx context.Context, tx *sql.Tx, userID string, version int64) error {
	res, err := tx.ExecContext(ctx, `UPDATE e2e_room_keys_versions SET etag = etag WHERE user_id = $1 AND version = $2 AND NOT deleted`,
		userID, version)
	if err != nil {
		return fmt.Errorf("storage: lock backup version: %w", err)
	}
	if rowsAffected(res) == 0 {
		return fmt.Errorf("%w: backup version", ErrNotFound)
	}
	return nil
}

// finishBackupWrite bumps the version's etag if anything changed and
// returns the etag and key count.
func finishBackupWrite(ctx context.Context, tx *sql.Tx, userID string, version int64, changed bool) (etag, count int64, err error) {
	q := `SELECT etag FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2`
	if changed {
		q = `UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2 RETURNING etag`
	}
	if err := tx.QueryRowContext(ctx, q, userID, version).Scan(&etag); err != nil {
		return 0, 0, fmt.Errorf("storage: backup etag: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = $1 AND version = $2`,
		userID, version).Scan(&count); err != nil {
		return 0, 0, fmt.Errorf("storage: count backed-up keys: %w", err)
	}
	return etag, count, nil
}

// PutRoomKeys stores keys in a user's current backup version. A key for a
// session the backup already holds replaces it only when replace(old, new)
// says so. It returns the version's etag and key count afterwards;
// ErrNotFound when the version does not exist and *WrongBackupVersionError
// when it is not the current one.
func (db *DB) PutRoomKeys(ctx context.Context, userID string, version int64, keys []RoomKey,
	replace func(old, new *RoomKey) bool) (etag, count int64, err error) {
	err = db.WithTx(ctx, func(tx *sql.Tx) error {
		if err := lockBackupVersion(ctx, tx, userID, version); err != nil {
			return err
		}
		var current int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM e2e_room_keys_versions WHERE user_id = $1 AND NOT deleted`,
			userID).Scan(&current); err != nil {
			return fmt.Errorf("storage: current backup version: %w", err)
		}
		if current != version {
			return &WrongBackupVersionError{Current: current}
		}
		changed := false
		for i := range keys {
			k := &keys[i]
			old := RoomKey{RoomID: k.RoomID, SessionID: k.SessionID}
			err := tx.QueryRowContext(ctx, `SELECT first_message_index, forwarded_count, is_verified, session_data FROM e2e_room_keys
				WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, userID, version, k.RoomID, k.SessionID).
				Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified, &old.SessionData)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return fmt.Errorf("storage: backed-up key: %w", err)
			case !replace(&old, k):
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,
					forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = EXCLUDED.first_message_index,
					forwarded_count = EXCLUDED.forwarded_count, is_verified = EXCLUDED.is_verified, session_data = EXCLUDED.session_data`,
				userID, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, k.SessionData); err != nil {
				return fmt.Errorf("storage: store backed-up key: %w", err)
			}
			changed = true
		}
		etag, count, err = finishBackupWrite(ctx, tx, userID, version, changed)
		return err
	})
	return etag, count, err
}

// RoomKeys lists the keys of a backup version that is not deleted: all of
// them, a room's (roomID set) or one session's (both set). It returns
// ErrNotFound when the version does not exist.
func (db *DB) RoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]RoomKey, error) {
	var one int
	if err := db.QueryRowContext(ctx, `SELECT 1 FROM e2e_room_keys_versions WHERE user_id = $1 AND version = $2 AND NOT deleted`,
		userID, version).Scan(&one); err != nil {
		return nil, notFound(err, "backup version")
	}
	q, args := roomKeysWhere(userID, version, roomID, sessionID)
	rows, err := db.QueryContext(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
		FROM e2e_room_keys WHERE `+q+` ORDER BY room_id, session_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: backed-up keys: %w", err)
	}
	defer rows.Close()
	var out []RoomKey
	for rows.Next() {
		var k RoomKey
		if err := rows.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &k.SessionData); err != nil {
			return nil, fmt.Errorf("storage: backed-up keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteRoomKeys deletes keys of a backup version (all, a room's or one
// session's, as for RoomKeys) and returns the etag and key count
// afterwards, or ErrNotFound when the version does not exist.
func (db *DB) DeleteRoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (etag, count int64, err error) {
	err = db.WithTx(ctx, func(tx *sql.Tx) error {
		if err := lockBackupVersion(ctx, tx, userID, version); err != nil {
			return err
		}
		q, args := roomKeysWhere(userID, version, roomID, sessionID)
		res, err := tx.ExecContext(ctx, `DELETE FROM e2e_room_keys WHERE `+q, args...)
		if err != nil {
			return fmt.Errorf("storage: delete backed-up keys: %w", err)
		}
		etag, count, err = finishBackupWrite(ctx, tx, userID, version, rowsAffected(res) > 0)
		return err
	})
	return etag, count, err
}

func roomKeysWhere(userID string, version int64, roomID, sessionID string) (string, []any) {
	q := `user_id = $1 AND version = $2`
	args := []any{userID, version}
	if roomID != "" {
		q += ` AND room_id = $3`
		args = append(args, roomID)
		if sessionID != "" {
			q += ` AND session_id = $4`
			args = append(args, sessionID)
		}
	}
	return q, args
}
