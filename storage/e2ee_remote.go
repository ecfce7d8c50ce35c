package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// NextDeviceListStreamIDs takes the next n stream IDs of a local user's
// m.device_list_update sequence and returns the last one (the first is
// last-n+1). The sequence counts per user from 1.
func (db *DB) NextDeviceListStreamIDs(ctx context.Context, userID string, n int) (int64, error) {
	if n < 1 {
		return 0, errors.New("storage: asked for no device list stream IDs")
	}
	var last int64
	err := db.QueryRowContext(ctx, `INSERT INTO e2e_device_list_outbound (user_id, stream_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = e2e_device_list_outbound.stream_id + EXCLUDED.stream_id
		RETURNING stream_id`, userID, n).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("storage: next device list stream ID: %w", err)
	}
	return last, nil
}

// DeviceListStreamID is the stream ID of a local user's latest
// m.device_list_update, 0 when there was none.
func (db *DB) DeviceListStreamID(ctx context.Context, userID string) (int64, error) {
	var id int64
	err := db.QueryRowContext(ctx, `SELECT stream_id FROM e2e_device_list_outbound WHERE user_id = $1`, userID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: device list stream ID: %w", err)
	}
	return id, nil
}

// RemoteDevice is a device of a cached remote device list.
type RemoteDevice struct {
	DeviceID    string
	DisplayName string // "" when none
	// KeyJSON is the device's signed identity keys, "" when it has none.
	KeyJSON string
}

// RemoteDeviceList is a remote user's device list as cached.
type RemoteDeviceList struct {
	UserID string
	// StreamID is the stream_id of the latest update applied.
	StreamID int64
	// Stale lists missed an update and must not be used until resynced.
	Stale bool
	// MasterKey and SelfSigningKey are the user's public cross-signing keys
	// (JSON), "" when unknown.
	MasterKey      string
	SelfSigningKey string
	Devices        []RemoteDevice
}

// RemoteDeviceLists returns the cached device lists of users (stale ones
// included, with their flag), by user ID; users without one are absent.
func (db *DB) RemoteDeviceLists(ctx context.Context, userIDs []string) (map[string]*RemoteDeviceList, error) {
	out := map[string]*RemoteDeviceList{}
	if len(userIDs) == 0 {
		return out, nil
	}
	args := stringArgs(userIDs)
	rows, err := db.QueryContext(ctx, `SELECT user_id, stream_id, stale, master_key, self_signing_key FROM e2e_remote_device_lists
		WHERE user_id IN (`+placeholders(1, len(userIDs))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: remote device lists: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		l := &RemoteDeviceList{}
		if err := rows.Scan(&l.UserID, &l.StreamID, &l.Stale, &l.MasterKey, &l.SelfSigningKey); err != nil {
			return nil, fmt.Errorf("storage: remote device lists: %w", err)
		}
		out[l.UserID] = l
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: remote device lists: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	drows, err := db.QueryContext(ctx, `SELECT user_id, device_id, display_name, key_json FROM e2e_remote_devices
		WHERE user_id IN (`+placeholders(1, len(userIDs))+`) ORDER BY user_id, device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: remote devices: %w", err)
	}
	defer drows.Close()
	for drows.Next() {
		var user string
		var d RemoteDevice
		if err := drows.Scan(&user, &d.DeviceID, &d.DisplayName, &d.KeyJSON); err != nil {
			return nil, fmt.Errorf("storage: remote devices: %w", err)
		}
		if l := out[user]; l != nil {
			l.Devices = append(l.Devices, d)
		}
	}
	return out, drows.Err()
}

// lockRemoteDeviceList reads a cached list's head inside tx, locking the
// row on PostgreSQL so that updates of one user's list apply one at a time
// (SQLite's transactions exclude each other already). found is false when
// there is no row.
func (db *DB) lockRemoteDeviceList(ctx context.Context, tx *sql.Tx, userID string) (streamID int64, stale, found bool, err error) {
	err = tx.QueryRowContext(ctx, `SELECT stream_id, stale FROM e2e_remote_device_lists WHERE user_id = $1`+db.rowLock(" FOR UPDATE"),
		userID).Scan(&streamID, &stale)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, false, nil
	}
	if err != nil {
		return 0, false, false, fmt.Errorf("storage: remote device list: %w", err)
	}
	return streamID, stale, true, nil
}

// ReplaceRemoteDeviceList stores a remote user's whole device list (a
// resynchronisation), unless the cached list is current and already past
// l.StreamID (an update applied while the list was being fetched). It
// reports whether the list was stored; a stored list is no longer stale.
func (db *DB) ReplaceRemoteDeviceList(ctx context.Context, l RemoteDeviceList, now int64) (bool, error) {
	stored := false
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		stored = false
		cur, stale, found, err := db.lockRemoteDeviceList(ctx, tx, l.UserID)
		if err != nil {
			return err
		}
		if found && !stale && cur > l.StreamID {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM e2e_remote_devices WHERE user_id = $1`, l.UserID); err != nil {
			return fmt.Errorf("storage: replace remote devices: %w", err)
		}
		for _, d := range l.Devices {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2e_remote_devices (user_id, device_id, display_name, key_json)
				VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = EXCLUDED.display_name, key_json = EXCLUDED.key_json`,
				l.UserID, d.DeviceID, d.DisplayName, d.KeyJSON); err != nil {
				return fmt.Errorf("storage: store remote device: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO e2e_remote_device_lists (user_id, stream_id, stale, master_key, self_signing_key, updated_ts)
			VALUES ($1, $2, FALSE, $3, $4, $5)
			ON CONFLICT (user_id) DO UPDATE SET stream_id = EXCLUDED.stream_id, stale = FALSE, master_key = EXCLUDED.master_key,
				self_signing_key = EXCLUDED.self_signing_key, updated_ts = EXCLUDED.updated_ts`,
			l.UserID, l.StreamID, l.MasterKey, l.SelfSigningKey, now); err != nil {
			return fmt.Errorf("storage: store remote device list: %w", err)
		}
		stored = true
		return nil
	})
	return stored, err
}

// RemoteDeviceUpdate is one m.device_list_update for a remote user's
// device.
type RemoteDeviceUpdate struct {
	UserID      string
	DeviceID    string
	DisplayName string
	// KeyJSON is the device's new identity keys, "" when it has none.
	KeyJSON  string
	StreamID int64
	PrevIDs  []int64
	Deleted  bool
}

// RemoteUpdateResult is what ApplyRemoteDeviceUpdate did.
type RemoteUpdateResult int

// The outcomes of ApplyRemoteDeviceUpdate.
const (
	// RemoteUpdateApplied: the cached list now holds the update.
	RemoteUpdateApplied RemoteUpdateResult = iota
	// RemoteUpdateDuplicate: the list is already at or past the update.
	RemoteUpdateDuplicate
	// RemoteUpdateNeedsResync: there is no current list to apply the
	// update to (none cached, stale, or an update before it was missed);
	// the list is marked stale if there is one.
	RemoteUpdateNeedsResync
)

// ApplyRemoteDeviceUpdate applies an update to a cached remote device list
// when the list holds every update the update depends on: each of its
// prev_ids is at or below the list's stream ID. Otherwise an update was
// missed and the list is marked stale.
func (db *DB) ApplyRemoteDeviceUpdate(ctx context.Context, u RemoteDeviceUpdate, now int64) (RemoteUpdateResult, error) {
	var res RemoteUpdateResult
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		cur, stale, found, err := db.lockRemoteDeviceList(ctx, tx, u.UserID)
		if err != nil {
			return err
		}
		switch {
		case !found || stale:
			res = RemoteUpdateNeedsResync
			return nil
		case u.StreamID <= cur:
			res = RemoteUpdateDuplicate
			return nil
		}
		for _, p := range u.PrevIDs {
			if p > cur {
				res = RemoteUpdateNeedsResync
				if _, err := tx.ExecContext(ctx, `UPDATE e2e_remote_device_lists SET stale = TRUE WHERE user_id = $1`, u.UserID); err != nil {
					return fmt.Errorf("storage: mark remote device list stale: %w", err)
				}
				return nil
			}
		}
		if u.Deleted {
			_, err = tx.ExecContext(ctx, `DELETE FROM e2e_remote_devices WHERE user_id = $1 AND device_id = $2`, u.UserID, u.DeviceID)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO e2e_remote_devices (user_id, device_id, display_name, key_json) VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = EXCLUDED.display_name, key_json = EXCLUDED.key_json`,
				u.UserID, u.DeviceID, u.DisplayName, u.KeyJSON)
		}
		if err != nil {
			return fmt.Errorf("storage: apply remote device update: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE e2e_remote_device_lists SET stream_id = $2, updated_ts = $3 WHERE user_id = $1`,
			u.UserID, u.StreamID, now); err != nil {
			return fmt.Errorf("storage: apply remote device update: %w", err)
		}
		res = RemoteUpdateApplied
		return nil
	})
	return res, err
}

// SetRemoteCrossSigningKeys replaces the cross-signing keys of a cached,
// current remote device list (an m.signing_key_update); an empty key is
// left as it is. It reports whether there was such a list.
func (db *DB) SetRemoteCrossSigningKeys(ctx context.Context, userID, masterKey, selfSigningKey string, now int64) (bool, error) {
	res, err := db.ExecContext(ctx, `UPDATE e2e_remote_device_lists
		SET master_key = CASE WHEN $2 = '' THEN master_key ELSE $2 END,
			self_signing_key = CASE WHEN $3 = '' THEN self_signing_key ELSE $3 END,
			updated_ts = $4
		WHERE user_id = $1 AND NOT stale`, userID, masterKey, selfSigningKey, now)
	if err != nil {
		return false, fmt.Errorf("storage: remote cross-signing keys: %w", err)
	}
	return rowsAffected(res) > 0, nil
}

// MarkRemoteDeviceListsStale marks cached remote device lists as needing a
// resynchronisation.
func (db *DB) MarkRemoteDeviceListsStale(ctx context.Context, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	if _, err := db.ExecContext(ctx, `UPDATE e2e_remote_device_lists SET stale = TRUE WHERE user_id IN (`+placeholders(1, len(userIDs))+`)`,
		stringArgs(userIDs)...); err != nil {
		return fmt.Errorf("storage: mark remote device lists stale: %w", err)
	}
	return nil
}

// usersOfServerPattern is the LIKE pattern (with ESCAPE '\') that matches
// the user IDs of serverName.
func usersOfServerPattern(serverName string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%:" + r.Replace(serverName)
}

// SharingRoomsWithServer returns those of userIDs who share a room (both
// joined) with a user of serverName: the remote users whose device lists
// that server follows.
func (db *DB) SharingRoomsWithServer(ctx context.Context, serverName string, userIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(userIDs) == 0 {
		return out, nil
	}
	args := append([]any{usersOfServerPattern(serverName)}, stringArgs(userIDs)...)
	users, err := queryStrings(ctx, db, `SELECT DISTINCT o.user_id FROM room_memberships o
		WHERE o.user_id IN (`+placeholders(2, len(userIDs))+`) AND o.membership = 'join' AND EXISTS (
			SELECT 1 FROM room_memberships me WHERE me.room_id = o.room_id AND me.membership = 'join'
				AND me.user_id LIKE $1 ESCAPE '\')`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: users sharing rooms: %w", err)
	}
	for _, u := range users {
		out[u] = true
	}
	return out, nil
}

// CachedRemoteUsersInRoom lists the users of a room (of any membership)
// whose device lists are cached.
func (db *DB) CachedRemoteUsersInRoom(ctx context.Context, roomID string) ([]string, error) {
	return queryStrings(ctx, db, `SELECT r.user_id FROM e2e_remote_device_lists r
		JOIN room_memberships m ON m.user_id = r.user_id AND m.room_id = $1 ORDER BY r.user_id`, roomID)
}

// DropRemoteDeviceLists deletes cached remote device lists. Dropping is
// always safe: a list that is needed again is fetched again.
func (db *DB) DropRemoteDeviceLists(ctx context.Context, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	args := stringArgs(userIDs)
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM e2e_remote_devices WHERE user_id IN (` + placeholders(1, len(userIDs)) + `)`,
			`DELETE FROM e2e_remote_device_lists WHERE user_id IN (` + placeholders(1, len(userIDs)) + `)`,
		} {
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("storage: drop remote device lists: %w", err)
			}
		}
		return nil
	})
}

func stringArgs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
