package storage

import (
	"context"
	"fmt"
)

// PutOpenIDToken stores an OpenID token's hash, and drops expired ones.
func (db *DB) PutOpenIDToken(ctx context.Context, tokenHash, userID string, expiresTS, nowTS int64) error {
	return db.WithTx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM openid_tokens WHERE expires_ts < $1`, nowTS); err != nil {
			return fmt.Errorf("storage: openid: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
			tokenHash, userID, expiresTS); err != nil {
			return fmt.Errorf("storage: openid: %w", err)
		}
		return nil
	})
}

// OpenIDUser is the user of an unexpired OpenID token, or ErrNotFound.
func (db *DB) OpenIDUser(ctx context.Context, tokenHash string, nowTS int64) (string, error) {
	var userID string
	err := db.QueryRowContext(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts >= $2`, tokenHash, nowTS).Scan(&userID)
	if err != nil {
		return "", notFound(err, "openid token")
	}
	return userID, nil
}
