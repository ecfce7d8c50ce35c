package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// UIASession is a user-interactive authentication session.
type UIASession struct {
	ID string
	// Action is what the session authorises, such as "POST /account/password".
	Action string
	// Localpart is the user the session was started for, "" for registration.
	Localpart string
	// Completed is the JSON array of the stages completed so far.
	Completed string
	ExpiresTS int64
}

// CreateUIASession stores a new session and drops expired ones, giving
// back the registration token uses they reserved.
func (db *DB) CreateUIASession(ctx context.Context, s UIASession, now int64) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM uia_sessions WHERE expires_ts <= $1`, now); err != nil {
		return fmt.Errorf("storage: expire UIA sessions: %w", err)
	}
	if err := db.WithTx(ctx, func(tx *sql.Tx) error { return expireRegistrationTokenReservations(ctx, tx, now) }); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO uia_sessions (session_id, action, localpart, completed, expires_ts)
		VALUES ($1, $2, $3, $4, $5)`, s.ID, s.Action, s.Localpart, s.Completed, s.ExpiresTS); err != nil {
		return fmt.Errorf("storage: create UIA session: %w", err)
	}
	return nil
}

// GetUIASession loads a session that has not expired at now, or returns
// ErrNotFound.
func (db *DB) GetUIASession(ctx context.Context, id string, now int64) (*UIASession, error) {
	s := &UIASession{ID: id}
	err := db.QueryRowContext(ctx, `SELECT action, localpart, completed, expires_ts FROM uia_sessions
		WHERE session_id = $1 AND expires_ts > $2`, id, now).Scan(&s.Action, &s.Localpart, &s.Completed, &s.ExpiresTS)
	if err != nil {
		return nil, notFound(err, "UIA session")
	}
	return s, nil
}

// SetUIASessionCompleted records the stages a session has completed.
func (db *DB) SetUIASessionCompleted(ctx context.Context, id, completed string) error {
	if _, err := db.ExecContext(ctx, `UPDATE uia_sessions SET completed = $2 WHERE session_id = $1`, id, completed); err != nil {
		return fmt.Errorf("storage: update UIA session: %w", err)
	}
	return nil
}

// DeleteUIASession ends a session. It reports whether the session was
// still there, so that of two requests finishing the same session at once
// only one goes ahead.
func (db *DB) DeleteUIASession(ctx context.Context, id string) (bool, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, id)
	if err != nil {
		return false, fmt.Errorf("storage: delete UIA session: %w", err)
	}
	return rowsAffected(res) == 1, nil
}
