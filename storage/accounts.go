package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUserExists is returned when an account's localpart is already taken.
var ErrUserExists = errors.New("storage: user already exists")

// Account is a local user account.
type Account struct {
	Localpart    string
	PasswordHash string
	IsAdmin      bool
	Deactivated  bool
	CreatedTS    int64
}

// CreateAccount stores a new account, failing with ErrUserExists when the
// localpart is taken.
func (db *DB) CreateAccount(ctx context.Context, a Account) error {
	if a.CreatedTS == 0 {
		a.CreatedTS = time.Now().UnixMilli()
	}
	res, err := db.ExecContext(ctx, `INSERT INTO accounts (localpart, password_hash, is_admin, deactivated, created_ts)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (localpart) DO NOTHING`,
		a.Localpart, a.PasswordHash, a.IsAdmin, a.Deactivated, a.CreatedTS)
	if err != nil {
		return fmt.Errorf("storage: create account: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrUserExists
	}
	return nil
}

// GetAccount loads an account, or returns ErrNotFound.
func (db *DB) GetAccount(ctx context.Context, localpart string) (*Account, error) {
	a := &Account{}
	err := db.QueryRowContext(ctx, `SELECT localpart, password_hash, is_admin, deactivated, created_ts
		FROM accounts WHERE localpart = $1`, localpart).
		Scan(&a.Localpart, &a.PasswordHash, &a.IsAdmin, &a.Deactivated, &a.CreatedTS)
	if err != nil {
		return nil, notFound(err, "account")
	}
	return a, nil
}
