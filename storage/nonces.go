package storage

import (
	"context"
	"fmt"
)

// CreateRegistrationNonce stores a nonce for the shared-secret registration
// API and drops expired ones.
func (db *DB) CreateRegistrationNonce(ctx context.Context, nonce string, expiresTS, now int64) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM registration_nonces WHERE expires_ts <= $1`, now); err != nil {
		return fmt.Errorf("storage: expire nonces: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO registration_nonces (nonce, expires_ts) VALUES ($1, $2)`, nonce, expiresTS); err != nil {
		return fmt.Errorf("storage: store nonce: %w", err)
	}
	return nil
}

// ConsumeRegistrationNonce deletes a nonce and reports whether it existed
// and had not expired at now. A nonce can be consumed once.
func (db *DB) ConsumeRegistrationNonce(ctx context.Context, nonce string, now int64) (bool, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM registration_nonces WHERE nonce = $1 AND expires_ts > $2`, nonce, now)
	if err != nil {
		return false, fmt.Errorf("storage: consume nonce: %w", err)
	}
	return rowsAffected(res) == 1, nil
}
