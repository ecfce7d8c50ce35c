package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrRegistrationTokenExists is returned when a new registration token is
// already taken.
var ErrRegistrationTokenExists = errors.New("storage: registration token already exists")

// RegistrationToken is a token that lets its holder register
// (m.login.registration_token). UsesAllowed and ExpiryTime are nil when
// unlimited.
type RegistrationToken struct {
	Token       string
	UsesAllowed *int64
	Pending     int64
	Completed   int64
	// ExpiryTime is in milliseconds since the epoch.
	ExpiryTime *int64
}

// RegistrationTokenUpdate changes a token: a field is written only when its
// Set flag is true, and a nil value there means unlimited.
type RegistrationTokenUpdate struct {
	SetUsesAllowed bool
	UsesAllowed    *int64
	SetExpiryTime  bool
	ExpiryTime     *int64
}

const registrationTokenColumns = `token, uses_allowed, pending, completed, expiry_time`

// validTokenCondition is the SQL condition of a token that may still be
// used at $2 (ms).
const validTokenCondition = `(expiry_time IS NULL OR expiry_time > $2)
	AND (uses_allowed IS NULL OR pending + completed < uses_allowed)`

func scanRegistrationToken(sc interface{ Scan(...any) error }) (*RegistrationToken, error) {
	t := &RegistrationToken{}
	var uses, expiry sql.NullInt64
	if err := sc.Scan(&t.Token, &uses, &t.Pending, &t.Completed, &expiry); err != nil {
		return nil, err
	}
	if uses.Valid {
		t.UsesAllowed = &uses.Int64
	}
	if expiry.Valid {
		t.ExpiryTime = &expiry.Int64
	}
	return t, nil
}

// CreateRegistrationToken stores a new token with no uses yet, or returns
// ErrRegistrationTokenExists.
func (db *DB) CreateRegistrationToken(ctx context.Context, token string, usesAllowed, expiryTime *int64) error {
	res, err := db.ExecContext(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_time)
		VALUES ($1, $2, $3) ON CONFLICT (token) DO NOTHING`, token, usesAllowed, expiryTime)
	if err != nil {
		return fmt.Errorf("storage: create registration token: %w", err)
	}
	if rowsAffected(res) == 0 {
		return ErrRegistrationTokenExists
	}
	return nil
}

// GetRegistrationToken loads a token, or returns ErrNotFound.
func (db *DB) GetRegistrationToken(ctx context.Context, token string) (*RegistrationToken, error) {
	t, err := scanRegistrationToken(db.QueryRowContext(ctx,
		`SELECT `+registrationTokenColumns+` FROM registration_tokens WHERE token = $1`, token))
	if err != nil {
		return nil, notFound(err, "registration token")
	}
	return t, nil
}

// ListRegistrationTokens returns every token, in token order.
func (db *DB) ListRegistrationTokens(ctx context.Context) ([]RegistrationToken, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+registrationTokenColumns+` FROM registration_tokens ORDER BY token`)
	if err != nil {
		return nil, fmt.Errorf("storage: list registration tokens: %w", err)
	}
	defer rows.Close()
	var out []RegistrationToken
	for rows.Next() {
		t, err := scanRegistrationToken(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: list registration tokens: %w", err)
		}
		out = append(out, *t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: list registration tokens: %w", err)
	}
	return out, nil
}

// UpdateRegistrationToken changes a token and returns it as it is now, or
// returns ErrNotFound.
func (db *DB) UpdateRegistrationToken(ctx context.Context, token string, u RegistrationTokenUpdate) (*RegistrationToken, error) {
	t, err := scanRegistrationToken(db.QueryRowContext(ctx, `UPDATE registration_tokens SET
		uses_allowed = CASE WHEN $2 THEN $3 ELSE uses_allowed END,
		expiry_time = CASE WHEN $4 THEN $5 ELSE expiry_time END
		WHERE token = $1 RETURNING `+registrationTokenColumns,
		token, u.SetUsesAllowed, u.UsesAllowed, u.SetExpiryTime, u.ExpiryTime))
	if err != nil {
		return nil, notFound(err, "registration token")
	}
	return t, nil
}

// DeleteRegistrationToken deletes a token, or returns ErrNotFound.
// Registrations that reserved a use of it may still finish.
func (db *DB) DeleteRegistrationToken(ctx context.Context, token string) error {
	res, err := db.ExecContext(ctx, `DELETE FROM registration_tokens WHERE token = $1`, token)
	if err != nil {
		return fmt.Errorf("storage: delete registration token: %w", err)
	}
	if rowsAffected(res) == 0 {
		return fmt.Errorf("%w: registration token", ErrNotFound)
	}
	return nil
}

// RegistrationTokenValid reports whether token exists, has not expired at
// now (ms) and has a use left.
func (db *DB) RegistrationTokenValid(ctx context.Context, token string, now int64) (bool, error) {
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM registration_tokens WHERE token = $1 AND `+validTokenCondition,
		token, now).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: registration token validity: %w", err)
	}
	return true, nil
}

// ReserveRegistrationToken reserves a use of token for the UIA session
// sessionID until expiresTS (ms), if the token is valid at now; it reports
// whether it did. The check and the reservation are one conditional UPDATE,
// so of two registrations racing for a token's last use only one gets it
// (PostgreSQL re-checks the condition on the row it waited for; SQLite
// serialises writers). A reservation the session already held is given back
// first, and expired reservations of every session are given back too.
func (db *DB) ReserveRegistrationToken(ctx context.Context, token, sessionID string, now, expiresTS int64) (bool, error) {
	reserved := false
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		if err := expireRegistrationTokenReservations(ctx, tx, now); err != nil {
			return err
		}
		if err := releaseReservation(ctx, tx, sessionID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending + 1
			WHERE token = $1 AND `+validTokenCondition, token, now)
		if err != nil {
			return fmt.Errorf("storage: reserve registration token: %w", err)
		}
		if rowsAffected(res) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO registration_token_reservations (session_id, token, expires_ts)
			VALUES ($1, $2, $3)`, sessionID, token, expiresTS); err != nil {
			return fmt.Errorf("storage: reserve registration token: %w", err)
		}
		reserved = true
		return nil
	})
	return reserved, err
}

// ReleaseRegistrationTokenReservation gives back the use the UIA session
// sessionID reserved, if any: its registration failed.
func (db *DB) ReleaseRegistrationTokenReservation(ctx context.Context, sessionID string) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error { return releaseReservation(ctx, tx, sessionID) })
}

// takeReservation deletes the reservation of sessionID and returns its
// token, "" when there was none. DELETE ... RETURNING hands each
// reservation to exactly one of concurrent callers.
func takeReservation(ctx context.Context, tx *sql.Tx, sessionID string) (string, error) {
	var token string
	err := tx.QueryRowContext(ctx, `DELETE FROM registration_token_reservations WHERE session_id = $1 RETURNING token`,
		sessionID).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: take registration token reservation: %w", err)
	}
	return token, nil
}

// releaseReservation gives back the use sessionID reserved, if any.
func releaseReservation(ctx context.Context, tx *sql.Tx, sessionID string) error {
	token, err := takeReservation(ctx, tx, sessionID)
	if err != nil || token == "" {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending - 1 WHERE token = $1`, token); err != nil {
		return fmt.Errorf("storage: release registration token: %w", err)
	}
	return nil
}

// completeReservation turns the use sessionID reserved into a completed
// one, in the transaction that creates the account. It returns ErrNotFound
// when the session holds no reservation (it expired).
func completeReservation(ctx context.Context, tx *sql.Tx, sessionID string) error {
	token, err := takeReservation(ctx, tx, sessionID)
	if err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("%w: registration token reservation", ErrNotFound)
	}
	// The token may have been deleted meanwhile; the registration was
	// allowed when it reserved the use, so it goes on.
	if _, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1
		WHERE token = $1`, token); err != nil {
		return fmt.Errorf("storage: complete registration token: %w", err)
	}
	return nil
}

// expireRegistrationTokenReservations gives back the uses reserved by
// sessions that expired at now.
func expireRegistrationTokenReservations(ctx context.Context, tx *sql.Tx, now int64) error {
	rows, err := tx.QueryContext(ctx, `DELETE FROM registration_token_reservations WHERE expires_ts <= $1 RETURNING token`, now)
	if err != nil {
		return fmt.Errorf("storage: expire registration token reservations: %w", err)
	}
	released := map[string]int64{}
	for rows.Next() {
		var token string
		if err := rows.Scan(&token); err != nil {
			rows.Close()
			return fmt.Errorf("storage: expire registration token reservations: %w", err)
		}
		released[token]++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: expire registration token reservations: %w", err)
	}
	for token, n := range released {
		if _, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending - $2 WHERE token = $1`, token, n); err != nil {
			return fmt.Errorf("storage: expire registration token reservations: %w", err)
		}
	}
	return nil
}
