package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Device is one of a user's devices.
type Device struct {
	Localpart   string
	DeviceID    string
	DisplayName string // "" when not set
	CreatedTS   int64
	LastSeenTS  int64  // 0 when never seen
	LastSeenIP  string // "" when never seen
}

// NewDevice is a device logging in with a new access token.
type NewDevice struct {
	Localpart string
	DeviceID  string
	// DisplayName names a device created by this login; an existing device
	// keeps its name.
	DisplayName string
	// TokenHash is the SHA-256 hash of the new access token.
	TokenHash []byte
	TS        int64
	IP        string
}

// TokenOwner is who an access token belongs to.
type TokenOwner struct {
	Localpart  string
	DeviceID   string
	IsAdmin    bool
	LastSeenTS int64
}

// LoginDevice gives d.Localpart's device d.DeviceID a new access token,
// creating the device when it does not exist. The device's earlier tokens
// are revoked, as the spec asks when a client logs in again with its
// device ID. It reports whether the device was created.
func (db *DB) LoginDevice(ctx context.Context, d NewDevice) (created bool, err error) {
	err = db.WithTx(ctx, func(tx *sql.Tx) error {
		created, err = loginDevice(ctx, tx, d)
		return err
	})
	return created, err
}

func loginDevice(ctx context.Context, q querier, d NewDevice) (bool, error) {
	res, err := q.ExecContext(ctx, `INSERT INTO devices (localpart, device_id, display_name, created_ts, last_seen_ts, last_seen_ip)
		VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (localpart, device_id) DO NOTHING`,
		d.Localpart, d.DeviceID, nullString(d.DisplayName), d.TS, nullString(d.IP))
	if err != nil {
		return false, fmt.Errorf("storage: create device: %w", err)
	}
	created := rowsAffected(res) == 1
	if !created {
		if _, err := q.ExecContext(ctx, `DELETE FROM access_tokens WHERE localpart = $1 AND device_id = $2`, d.Localpart, d.DeviceID); err != nil {
			return false, fmt.Errorf("storage: revoke device tokens: %w", err)
		}
		if err := touchDevice(ctx, q, d.Localpart, d.DeviceID, d.TS, d.IP); err != nil {
			return false, err
		}
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, localpart, device_id, created_ts) VALUES ($1, $2, $3, $4)`,
		d.TokenHash, d.Localpart, d.DeviceID, d.TS); err != nil {
		return false, fmt.Errorf("storage: store access token: %w", err)
	}
	return created, nil
}

// TokenOwner finds the device an access token hash belongs to. Tokens of
// deactivated accounts are not found (deactivation deletes them anyway).
func (db *DB) TokenOwner(ctx context.Context, tokenHash []byte) (*TokenOwner, error) {
	o := &TokenOwner{}
	var lastSeen sql.NullInt64
	err := db.QueryRowContext(ctx, `SELECT t.localpart, t.device_id, a.is_admin, d.last_seen_ts
		FROM access_tokens t
		JOIN accounts a ON a.localpart = t.localpart
		JOIN devices d ON d.localpart = t.localpart AND d.device_id = t.device_id
		WHERE t.token_hash = $1 AND NOT a.deactivated`, tokenHash).
		Scan(&o.Localpart, &o.DeviceID, &o.IsAdmin, &lastSeen)
	if err != nil {
		return nil, notFound(err, "access token")
	}
	o.LastSeenTS = lastSeen.Int64
	return o, nil
}

// TouchDevice records when and from where a device was last seen.
func (db *DB) TouchDevice(ctx context.Context, localpart, deviceID string, ts int64, ip string) error {
	return touchDevice(ctx, db, localpart, deviceID, ts, ip)
}

func touchDevice(ctx context.Context, q querier, localpart, deviceID string, ts int64, ip string) error {
	if _, err := q.ExecContext(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE localpart = $1 AND device_id = $2`,
		localpart, deviceID, ts, nullString(ip)); err != nil {
		return fmt.Errorf("storage: touch device: %w", err)
	}
	return nil
}

const deviceColumns = `localpart, device_id, display_name, created_ts, last_seen_ts, last_seen_ip`

func scanDevice(scan func(...any) error) (Device, error) {
	var (
		d        Device
		name, ip sql.NullString
		seen     sql.NullInt64
	)
	err := scan(&d.Localpart, &d.DeviceID, &name, &d.CreatedTS, &seen, &ip)
	d.DisplayName, d.LastSeenTS, d.LastSeenIP = name.String, seen.Int64, ip.String
	return d, err
}

// Devices lists a user's devices, oldest first.
func (db *DB) Devices(ctx context.Context, localpart string) ([]Device, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE localpart = $1 ORDER BY created_ts, device_id`, localpart)
	if err != nil {
		return nil, fmt.Errorf("storage: list devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("storage: list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: list devices: %w", err)
	}
	return out, nil
}

// GetDevice loads one device, or returns ErrNotFound.
func (db *DB) GetDevice(ctx context.Context, localpart, deviceID string) (*Device, error) {
	d, err := scanDevice(db.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE localpart = $1 AND device_id = $2`,
		localpart, deviceID).Scan)
	if err != nil {
		return nil, notFound(err, "device")
	}
	return &d, nil
}

// SetDeviceDisplayName renames a device; "" removes the name. It returns
// ErrNotFound when the user has no such device.
func (db *DB) SetDeviceDisplayName(ctx context.Context, localpart, deviceID, name string) error {
	res, err := db.ExecContext(ctx, `UPDATE devices SET display_name = $3 WHERE localpart = $1 AND device_id = $2`,
		localpart, deviceID, nullString(name))
	if err != nil {
		return fmt.Errorf("storage: rename device: %w", err)
	}
	if rowsAffected(res) == 0 {
		return fmt.Errorf("%w: device", ErrNotFound)
	}
	return nil
}

// DeleteDevices deletes the listed devices of a user with their access
// tokens, ignoring IDs the user does not have, and returns the IDs that
// were deleted.
func (db *DB) DeleteDevices(ctx context.Context, localpart string, deviceIDs []string) ([]string, error) {
	var deleted []string
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		deleted = deleted[:0]
		for _, id := range deviceIDs {
			res, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, id)
			if err != nil {
				return fmt.Errorf("storage: delete device: %w", err)
			}
			if rowsAffected(res) == 1 {
				deleted = append(deleted, id)
			}
		}
		return nil
	})
	return deleted, err
}

// DeleteDevicesExcept deletes every device of a user but keep (which may be
// empty to delete them all) and returns the deleted IDs.
func (db *DB) DeleteDevicesExcept(ctx context.Context, localpart, keep string) ([]string, error) {
	var deleted []string
	err := db.WithTx(ctx, func(tx *sql.Tx) (err error) {
		deleted, err = deleteDevicesExcept(ctx, tx, localpart, keep)
		return err
	})
	return deleted, err
}

func deleteDevicesExcept(ctx context.Context, q querier, localpart, keep string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id <> $2 RETURNING device_id`, localpart, keep)
	if err != nil {
		return nil, fmt.Errorf("storage: delete devices: %w", err)
	}
	defer rows.Close()
	var deleted []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: delete devices: %w", err)
		}
		deleted = append(deleted, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: delete devices: %w", err)
	}
	return deleted, nil
}

func rowsAffected(res sql.Result) int64 {
	n, _ := res.RowsAffected()
	return n
}
