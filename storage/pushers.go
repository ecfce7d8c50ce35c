package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Pusher is where a user's push notifications go.
type Pusher struct {
	UserID            string
	AppID             string
	PushKey           string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	// Data is the JSON object the client gave, url included.
	Data string
	// PushKeyTS is when the pusher was last set, in seconds.
	PushKeyTS int64
	// DeviceID is the device that set it.
	DeviceID string
}

const pusherColumns = `user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts, device_id`

func scanPusher(s pushRowScanner) (Pusher, error) {
	var p Pusher
	err := s.Scan(&p.UserID, &p.AppID, &p.PushKey, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &p.ProfileTag,
		&p.Lang, &p.Data, &p.PushKeyTS, &p.DeviceID)
	return p, err
}

// SetPusher creates or replaces the user's pusher with p's app ID and
// pushkey. Unless keepOthers, pushers of other users with the same app ID
// and pushkey are removed (a pushkey belongs to one device, which now
// belongs to this user).
func (db *DB) SetPusher(ctx context.Context, p Pusher, keepOthers bool) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		if !keepOthers {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`,
				p.AppID, p.PushKey, p.UserID); err != nil {
				return fmt.Errorf("storage: remove other pushers: %w", err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO pushers (`+pusherColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind, app_display_name = excluded.app_display_name,
			device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, lang = excluded.lang,
			data = excluded.data, pushkey_ts = excluded.pushkey_ts, device_id = excluded.device_id`,
			p.UserID, p.AppID, p.PushKey, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, p.Data, p.PushKeyTS, p.DeviceID)
		if err != nil {
			return fmt.Errorf("storage: set pusher: %w", err)
		}
		return nil
	})
}

// DeletePusher removes one of the user's pushers and reports whether it
// existed.
func (db *DB) DeletePusher(ctx context.Context, userID, appID, pushKey string) (bool, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushKey)
	if err != nil {
		return false, fmt.Errorf("storage: delete pusher: %w", err)
	}
	return rowsAffected(res) > 0, nil
}

// DeleteDevicePushers removes the pushers set by the user's devices.
func (db *DB) DeleteDevicePushers(ctx context.Context, userID string, deviceIDs []string) error {
	for _, d := range deviceIDs {
		if _, err := db.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`, userID, d); err != nil {
			return fmt.Errorf("storage: delete device pushers: %w", err)
		}
	}
	return nil
}

// Pushers lists the pushers of the given users (in no particular order).
func (db *DB) Pushers(ctx context.Context, userIDs ...string) ([]Pusher, error) {
	var out []Pusher
	for rest := userIDs; len(rest) > 0; {
		n := min(len(rest), 500)
		args := make([]any, n)
		for i := range args {
			args[i] = rest[i]
		}
		err := queryPushRows(ctx, db, `SELECT `+pusherColumns+` FROM pushers WHERE user_id IN (`+placeholders(1, n)+`)
			ORDER BY user_id, app_id, pushkey`, args, func(s pushRowScanner) error {
			p, err := scanPusher(s)
			if err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("storage: list pushers: %w", err)
		}
		rest = rest[n:]
	}
	return out, nil
}
