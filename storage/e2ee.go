package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// StreamDeviceLists orders changes to users' device lists and cross-signing
// keys, which /sync reports in device_lists.changed.
const StreamDeviceLists = "device_lists"

// Errors of the end-to-end encryption tables.
var (
	// ErrDeviceKeysExist is returned when a device uploads identity keys
	// while it already has some.
	ErrDeviceKeysExist = errors.New("storage: the device already has identity keys")
	// ErrOneTimeKeyExists is returned when a one-time key ID is uploaded
	// again with a different key.
	ErrOneTimeKeyExists = errors.New("storage: a different one-time key with this ID exists")
	// ErrNoDevice is returned when keys are uploaded for a device that no
	// longer exists (deleted while the upload was in flight).
	ErrNoDevice = errors.New("storage: no such device")
)

// rowLock returns clause (" FOR UPDATE SKIP LOCKED", " FOR SHARE") on
// PostgreSQL and nothing on SQLite, whose transactions are IMMEDIATE and so
// already serialise writers: there the clause is neither needed nor valid.
func (db *DB) rowLock(clause string) string {
	if db.dialect.name == "postgres" {
		return clause
	}
	return ""
}

// OneTimeKey is a one-time or fallback key: its algorithm, its key ID
// (without the algorithm) and its JSON (a string or a signed object).
type OneTimeKey struct {
	Algorithm string
	KeyID     string
	JSON      string
}

// KeyUpload is what one /keys/upload stores for a device.
type KeyUpload struct {
	UserID    string
	Localpart string
	DeviceID  string
	// DeviceKeys are new identity keys, "" for none. Existing keys are never
	// replaced: the upload fails with ErrDeviceKeysExist instead.
	DeviceKeys   string
	OneTimeKeys  []OneTimeKey
	FallbackKeys []OneTimeKey
}

// UploadE2EKeys stores a device's keys in one transaction and returns the
// device's unclaimed one-time key counts per algorithm. New identity keys
// are a device list change: deviceListPos is the device-list stream
// position it was recorded at, 0 when the upload held none.
func (db *DB) UploadE2EKeys(ctx context.Context, u KeyUpload) (counts map[string]int, deviceListPos int64, err error) {
	err = db.WithTx(ctx, func(tx *sql.Tx) error {
		deviceListPos = 0
		if u.DeviceKeys != "" || len(u.OneTimeKeys) > 0 || len(u.FallbackKeys) > 0 {
			// The share lock (PostgreSQL) holds off a concurrent deletion of
			// the device until this commits, so that the deletion's clean-up
			// sees these keys; if the deletion came first, nothing is stored.
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE localpart = $1 AND device_id = $2`+db.rowLock(" FOR SHARE"),
				u.Localpart, u.DeviceID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNoDevice
			}
			if err != nil {
				return fmt.Errorf("storage: upload keys: %w", err)
			}
		}
		if u.DeviceKeys != "" {
			pos, err := streamPos(ctx, tx, StreamDeviceLists)
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, device_id) DO NOTHING`, u.UserID, u.DeviceID, u.DeviceKeys)
			if err != nil {
				return fmt.Errorf("storage: store device keys: %w", err)
			}
			if rowsAffected(res) == 0 {
				return ErrDeviceKeysExist
			}
			if err := recordDeviceListChange(ctx, tx, pos, u.UserID); err != nil {
				return err
			}
			deviceListPos = pos
		}
		for _, k := range u.OneTimeKeys {
			res, err := tx.ExecContext(ctx, `INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING`,
				u.UserID, u.DeviceID, k.Algorithm, k.KeyID, k.JSON)
			if err != nil {
				return fmt.Errorf("storage: store one-time key: %w", err)
			}
			if rowsAffected(res) == 0 {
				// The same key uploaded again (a retried request) is fine;
				// another key under the same ID is a client bug.
				var existing string
				if err := tx.QueryRowContext(ctx, `SELECT key_json FROM e2e_one_time_keys
					WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`,
					u.UserID, u.DeviceID, k.Algorithm, k.KeyID).Scan(&existing); err != nil {
					return fmt.Errorf("storage: store one-time key: %w", err)
				}
				if existing != k.JSON {
					return fmt.Errorf("%w: %s:%s", ErrOneTimeKeyExists, k.Algorithm, k.KeyID)
				}
			}
		}
		for _, k := range u.FallbackKeys {
			// A new fallback key replaces the old one and starts unused; the
			// same key uploaded again keeps its used flag.
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
				VALUES ($1, $2, $3, $4, $5, FALSE)
				ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,
					used = CASE WHEN e2e_fallback_keys.key_id = EXCLUDED.key_id AND e2e_fallback_keys.key_json = EXCLUDED.key_json
						THEN e2e_fallback_keys.used ELSE FALSE END`,
				u.UserID, u.DeviceID, k.Algorithm, k.KeyID, k.JSON); err != nil {
				return fmt.Errorf("storage: store fallback key: %w", err)
			}
		}
		counts, err = oneTimeKeyCounts(ctx, tx, u.UserID, u.DeviceID)
		return err
	})
	return counts, deviceListPos, err
}

// OneTimeKeyCounts counts a device's unclaimed one-time keys per algorithm.
func (db *DB) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return oneTimeKeyCounts(ctx, db, userID, deviceID)
}

func oneTimeKeyCounts(ctx context.Context, q querier, userID, deviceID string) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`,
		userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("storage: count one-time keys: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, fmt.Errorf("storage: count one-time keys: %w", err)
		}
		counts[alg] = n
	}
	return counts, rows.Err()
}

// UnusedFallbackKeyTypes lists the algorithms of a device's fallback keys
// that no claim has handed out yet.
func (db *DB) UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error) {
	return queryStrings(ctx, db, `SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm`,
		userID, deviceID)
}

// DeviceKeys returns the stored identity keys of a user's devices by
// device ID (all devices when deviceIDs is empty), without checking that
// the devices still exist.
func (db *DB) DeviceKeys(ctx context.Context, userID string, deviceIDs []string) (map[string]string, error) {
	q := `SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = $1`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		q += ` AND device_id IN (` + placeholders(2, len(deviceIDs)) + `)`
		for _, d := range deviceIDs {
			args = append(args, d)
		}
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: device keys: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, js string
		if err := rows.Scan(&id, &js); err != nil {
			return nil, fmt.Errorf("storage: device keys: %w", err)
		}
		out[id] = js
	}
	return out, rows.Err()
}

// LocalDeviceKeys are the identity keys of one of a local user's devices,
// with the device's display name.
type LocalDeviceKeys struct {
	DeviceID    string
	JSON        string
	DisplayName string // "" when not set
}

// LocalDeviceKeysOf lists the identity keys of a local user's existing
// devices (all when deviceIDs is empty), ordered by device ID.
func (db *DB) LocalDeviceKeysOf(ctx context.Context, userID, localpart string, deviceIDs []string) ([]LocalDeviceKeys, error) {
	q := `SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k
		JOIN devices d ON d.localpart = $2 AND d.device_id = k.device_id
		WHERE k.user_id = $1`
	args := []any{userID, localpart}
	if len(deviceIDs) > 0 {
		q += ` AND k.device_id IN (` + placeholders(3, len(deviceIDs)) + `)`
		for _, d := range deviceIDs {
			args = append(args, d)
		}
	}
	rows, err := db.QueryContext(ctx, q+` ORDER BY k.device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: device keys: %w", err)
	}
	defer rows.Close()
	var out []LocalDeviceKeys
	for rows.Next() {
		var k LocalDeviceKeys
		var name sql.NullString
		if err := rows.Scan(&k.DeviceID, &k.JSON, &name); err != nil {
			return nil, fmt.Errorf("storage: device keys: %w", err)
		}
		k.DisplayName = name.String
		out = append(out, k)
	}
	return out, rows.Err()
}

// ClaimKey hands out one key of a device for algorithm: its oldest
// unclaimed one-time key, which is deleted so that no other claim can get
// it, or else its fallback key, which is marked used and stays. found is
// false when the device has neither.
//
// Each one-time key goes to one claimer only: on PostgreSQL the row is
// locked with SKIP LOCKED, so concurrent claims take different keys rather
// than queue for the same one; on SQLite the statement runs in a
// transaction that excludes every other writer.
func (db *DB) ClaimKey(ctx context.Context, userID, deviceID, algorithm string) (keyID, keyJSON string, fallback, found bool, err error) {
	err = db.QueryRowContext(ctx, `DELETE FROM e2e_one_time_keys WHERE id IN (
			SELECT id FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
			ORDER BY id LIMIT 1`+db.rowLock(" FOR UPDATE SKIP LOCKED")+`)
		RETURNING key_id, key_json`, userID, deviceID, algorithm).Scan(&keyID, &keyJSON)
	if err == nil {
		return keyID, keyJSON, false, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", false, false, fmt.Errorf("storage: claim one-time key: %w", err)
	}
	err = db.QueryRowContext(ctx, `UPDATE e2e_fallback_keys SET used = TRUE
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json`,
		userID, deviceID, algorithm).Scan(&keyID, &keyJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, false, nil
	}
	if err != nil {
		return "", "", false, false, fmt.Errorf("storage: claim fallback key: %w", err)
	}
	return keyID, keyJSON, true, true, nil
}

// CrossSigningKey is one of a user's cross-signing keys.
type CrossSigningKey struct {
	// PublicKey is the unpadded base64 ed25519 public key.
	PublicKey string
	JSON      string
}

// CrossSigningKeys returns the cross-signing keys of users: user ID → key
// type (master, self_signing, user_signing) → key.
func (db *DB) CrossSigningKeys(ctx context.Context, userIDs []string) (map[string]map[string]CrossSigningKey, error) {
	return crossSigningKeys(ctx, db, userIDs)
}

func crossSigningKeys(ctx context.Context, q querier, userIDs []string) (map[string]map[string]CrossSigningKey, error) {
	out := map[string]map[string]CrossSigningKey{}
	if len(userIDs) == 0 {
		return out, nil
	}
	args := make([]any, len(userIDs))
	for i, u := range userIDs {
		args[i] = u
	}
	rows, err := q.QueryContext(ctx, `SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys
		WHERE user_id IN (`+placeholders(1, len(userIDs))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: cross-signing keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user, typ string
		var k CrossSigningKey
		if err := rows.Scan(&user, &typ, &k.PublicKey, &k.JSON); err != nil {
			return nil, fmt.Errorf("storage: cross-signing keys: %w", err)
		}
		if out[user] == nil {
			out[user] = map[string]CrossSigningKey{}
		}
		out[user][typ] = k
	}
	return out, rows.Err()
}

// SetCrossSigningKeys stores new cross-signing keys of a user (key type →
// key), replacing those of the same types. check runs inside the
// transaction with the user's current keys and may refuse the change by
// returning an error; since every writer of device lists takes the stream
// position first, no other change of the keys can slip in between check
// and write. It returns the device-list stream position of the change.
func (db *DB) SetCrossSigningKeys(ctx context.Context, userID string, keys map[string]CrossSigningKey,
	check func(current map[string]CrossSigningKey) error) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if pos, err = streamPos(ctx, tx, StreamDeviceLists); err != nil {
			return err
		}
		current, err := crossSigningKeys(ctx, tx, []string{userID})
		if err != nil {
			return err
		}
		if err := check(current[userID]); err != nil {
			return err
		}
		for typ, k := range keys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json)
				VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = EXCLUDED.public_key, key_json = EXCLUDED.key_json`,
				userID, typ, k.PublicKey, k.JSON); err != nil {
				return fmt.Errorf("storage: store cross-signing key: %w", err)
			}
		}
		return recordDeviceListChange(ctx, tx, pos, userID)
	})
	return pos, err
}

// KeySignature is a signature made by one key on another user's or the
// same user's key, uploaded apart from the key itself.
type KeySignature struct {
	TargetUserID string
	// TargetKeyID is a device ID or a cross-signing public key.
	TargetKeyID  string
	SignerUserID string
	// SignerKeyID is the full key ID, "ed25519:<key>".
	SignerKeyID string
	Signature   string
}

// AddKeySignatures stores signatures (replacing earlier ones by the same
// signer key on the same target) and records a device list change of each
// of changedUsers. It returns the device-list stream position.
func (db *DB) AddKeySignatures(ctx context.Context, sigs []KeySignature, changedUsers []string) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if pos, err = streamPos(ctx, tx, StreamDeviceLists); err != nil {
			return err
		}
		for _, s := range sigs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2e_cross_signing_sigs (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
				DO UPDATE SET signature = EXCLUDED.signature`,
				s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature); err != nil {
				return fmt.Errorf("storage: store signature: %w", err)
			}
		}
		for _, u := range changedUsers {
			if err := recordDeviceListChange(ctx, tx, pos, u); err != nil {
				return err
			}
		}
		return nil
	})
	return pos, err
}

// KeySignaturesOf lists the uploaded signatures on the keys of users.
func (db *DB) KeySignaturesOf(ctx context.Context, targetUserIDs []string) ([]KeySignature, error) {
	if len(targetUserIDs) == 0 {
		return nil, nil
	}
	args := make([]any, len(targetUserIDs))
	for i, u := range targetUserIDs {
		args[i] = u
	}
	rows, err := db.QueryContext(ctx, `SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
		FROM e2e_cross_signing_sigs WHERE target_user_id IN (`+placeholders(1, len(targetUserIDs))+`)
		ORDER BY target_user_id, target_key_id, signer_user_id, signer_key_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: signatures: %w", err)
	}
	defer rows.Close()
	var out []KeySignature
	for rows.Next() {
		var s KeySignature
		if err := rows.Scan(&s.TargetUserID, &s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, fmt.Errorf("storage: signatures: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// recordDeviceListChange notes that userID's device list changed at pos.
func recordDeviceListChange(ctx context.Context, q querier, pos int64, userID string) error {
	if _, err := q.ExecContext(ctx, `INSERT INTO e2e_device_list_changes (user_id, stream_pos) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_pos = EXCLUDED.stream_pos`, userID, pos); err != nil {
		return fmt.Errorf("storage: record device list change: %w", err)
	}
	return nil
}

// MarkDeviceListsChanged records a device list change of users that was
// stored elsewhere (a remote user's update received over federation) and
// returns its stream position.
func (db *DB) MarkDeviceListsChanged(ctx context.Context, userIDs ...string) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if pos, err = streamPos(ctx, tx, StreamDeviceLists); err != nil {
			return err
		}
		for _, u := range userIDs {
			if err := recordDeviceListChange(ctx, tx, pos, u); err != nil {
				return err
			}
		}
		return nil
	})
	return pos, err
}

// DeviceListsChangedBetween lists the users whose device lists changed in
// the device-list stream range (from, to] and who are userID or share a
// room with userID (both joined).
func (db *DB) DeviceListsChangedBetween(ctx context.Context, userID string, from, to int64) ([]string, error) {
	return queryStrings(ctx, db, `SELECT c.user_id FROM e2e_device_list_changes c
		WHERE c.stream_pos > $2 AND c.stream_pos <= $3 AND (c.user_id = $1 OR EXISTS (
			SELECT 1 FROM room_memberships me JOIN room_memberships o ON o.room_id = me.room_id
			WHERE me.user_id = $1 AND me.membership = 'join' AND o.user_id = c.user_id AND o.membership = 'join'))
		ORDER BY c.user_id`, userID, from, to)
}

// SharedRoomChanges looks at memberships changed in the event stream range
// (from, to] for the device lists of userID: joined lists the users who
// share a room with userID that they or userID joined in the range; left
// lists the users who shared a room with userID that they or userID left in
// the range and who share no room with userID any more. Sharing means both
// joined.
//
// Every incremental /sync asks this, so the queries start from the
// membership events of the range (a range scan of the events' stream
// positions, usually a handful of rows) or from userID's own membership
// changes, never from all members of all of userID's rooms.
func (db *DB) SharedRoomChanges(ctx context.Context, userID string, from, to int64) (joined, left []string, err error) {
	joined, err = queryStrings(ctx, db, `SELECT DISTINCT o.user_id FROM events e
			JOIN room_memberships me ON me.room_id = e.room_id AND me.user_id = $1 AND me.membership = 'join'
			JOIN room_memberships o ON o.room_id = e.room_id AND o.user_id = e.state_key AND o.membership = 'join'
			WHERE e.stream_pos > $2 AND e.stream_pos <= $3 AND e.type = 'm.room.member' AND e.state_key <> $1
		UNION
		SELECT o.user_id FROM room_memberships me
			JOIN room_memberships o ON o.room_id = me.room_id AND o.membership = 'join' AND o.user_id <> $1
			WHERE me.user_id = $1 AND me.membership = 'join' AND me.stream_pos > $2 AND me.stream_pos <= $3
		ORDER BY 1`, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	left, err = queryStrings(ctx, db, `SELECT c.user_id FROM (
			SELECT o.user_id FROM events e
				JOIN room_memberships me ON me.room_id = e.room_id AND me.user_id = $1
				JOIN room_memberships o ON o.room_id = e.room_id AND o.user_id = e.state_key AND o.membership IN ('leave', 'ban')
				WHERE e.stream_pos > $2 AND e.stream_pos <= $3 AND e.type = 'm.room.member' AND e.state_key <> $1
			UNION
			SELECT o.user_id FROM room_memberships me
				JOIN room_memberships o ON o.room_id = me.room_id AND o.user_id <> $1
				WHERE me.user_id = $1 AND me.membership IN ('leave', 'ban') AND me.stream_pos > $2 AND me.stream_pos <= $3
		) c
		WHERE NOT EXISTS (SELECT 1 FROM room_memberships a JOIN room_memberships b ON b.room_id = a.room_id
			WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = c.user_id AND b.membership = 'join')
		ORDER BY 1`, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	return joined, left, nil
}

// UsersSharingRooms lists the users who share a room with any of userIDs
// (both joined), userIDs included: whose /sync a device list change of
// userIDs concerns.
func (db *DB) UsersSharingRooms(ctx context.Context, userIDs ...string) ([]string, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	args := make([]any, len(userIDs))
	for i, u := range userIDs {
		args[i] = u
	}
	others, err := queryStrings(ctx, db, `SELECT DISTINCT o.user_id FROM room_memberships me
		JOIN room_memberships o ON o.room_id = me.room_id
		WHERE me.user_id IN (`+placeholders(1, len(userIDs))+`) AND me.membership = 'join' AND o.membership = 'join'`, args...)
	if err != nil {
		return nil, err
	}
	return append(others, userIDs...), nil
}

// DeleteE2EDevices deletes everything end-to-end encryption holds for the
// given devices of a user (identity, one-time and fallback keys, pending
// to-device messages, to-device transaction IDs, signatures on the device
// keys) and records the device list change. It returns the device-list
// stream position.
func (db *DB) DeleteE2EDevices(ctx context.Context, userID string, deviceIDs []string) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if pos, err = streamPos(ctx, tx, StreamDeviceLists); err != nil {
			return err
		}
		for _, d := range deviceIDs {
			for _, q := range []string{
				`DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2`,
				`DELETE FROM e2e_cross_signing_sigs WHERE target_user_id = $1 AND target_key_id = $2`,
			} {
				if _, err := tx.ExecContext(ctx, q, userID, d); err != nil {
					return fmt.Errorf("storage: delete device keys: %w", err)
				}
			}
		}
		return recordDeviceListChange(ctx, tx, pos, userID)
	})
	return pos, err
}

// DeleteE2EUser deletes everything end-to-end encryption holds for a user
// (a deactivated account): every device's keys and messages, the
// cross-signing keys, signatures by and on them, and the key backups. It
// returns the device-list stream position of the change.
func (db *DB) DeleteE2EUser(ctx context.Context, userID string) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if pos, err = streamPos(ctx, tx, StreamDeviceLists); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM e2e_device_keys WHERE user_id = $1`,
			`DELETE FROM e2e_one_time_keys WHERE user_id = $1`,
			`DELETE FROM e2e_fallback_keys WHERE user_id = $1`,
			`DELETE FROM to_device_messages WHERE user_id = $1`,
			`DELETE FROM to_device_txns WHERE user_id = $1`,
			`DELETE FROM e2e_cross_signing_keys WHERE user_id = $1`,
			`DELETE FROM e2e_cross_signing_sigs WHERE target_user_id = $1 OR signer_user_id = $1`,
			`DELETE FROM e2e_room_keys WHERE user_id = $1`,
			`DELETE FROM e2e_room_keys_versions WHERE user_id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, userID); err != nil {
				return fmt.Errorf("storage: delete user's keys: %w", err)
			}
		}
		return recordDeviceListChange(ctx, tx, pos, userID)
	})
	return pos, err
}

// DeviceListChangePos is the device-list stream position of a user's
// latest device list change, 0 when there was none.
func (db *DB) DeviceListChangePos(ctx context.Context, userID string) (int64, error) {
	var pos int64
	err := db.QueryRowContext(ctx, `SELECT stream_pos FROM e2e_device_list_changes WHERE user_id = $1`, userID).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: device list change: %w", err)
	}
	return pos, nil
}
