package storage

import (
	"context"
	"database/sql"
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
	// DisplayName is the initial display name; empty leaves it unset.
	DisplayName string
}

// querier is what *sql.DB and *sql.Tx have in common, so that a query can
// run alone or inside a larger transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CreateAccount stores a new account, failing with ErrUserExists when the
// localpart is taken.
func (db *DB) CreateAccount(ctx context.Context, a Account) error {
	return createAccount(ctx, db, a)
}

// CreateAccountWithDevice stores a new account and, when d is not nil, its
// first device and access token, all or nothing: a registration that fails
// half way leaves no account behind.
func (db *DB) CreateAccountWithDevice(ctx context.Context, a Account, d *NewDevice) error {
	return db.CreateAccountWithToken(ctx, a, d, "")
}

// CreateAccountWithToken is CreateAccountWithDevice for a registration
// whose UIA session tokenSession reserved a use of a registration token
// ("" for none): in the same transaction the reserved use becomes a
// completed one. It returns ErrNotFound when the reservation is gone.
func (db *DB) CreateAccountWithToken(ctx context.Context, a Account, d *NewDevice, tokenSession string) error {
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		if err := createAccount(ctx, tx, a); err != nil {
			return err
		}
		if tokenSession != "" {
			if err := completeReservation(ctx, tx, tokenSession); err != nil {
				return err
			}
		}
		if d == nil {
			return nil
		}
		_, err := loginDevice(ctx, tx, *d)
		return err
	})
}

func createAccount(ctx context.Context, q querier, a Account) error {
	if a.CreatedTS == 0 {
		a.CreatedTS = time.Now().UnixMilli()
	}
	res, err := q.ExecContext(ctx, `INSERT INTO accounts (localpart, password_hash, is_admin, deactivated, created_ts, displayname)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (localpart) DO NOTHING`,
		a.Localpart, a.PasswordHash, a.IsAdmin, a.Deactivated, a.CreatedTS, nullString(a.DisplayName))
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
	var displayName sql.NullString
	err := db.QueryRowContext(ctx, `SELECT localpart, password_hash, is_admin, deactivated, created_ts, displayname
		FROM accounts WHERE localpart = $1`, localpart).
		Scan(&a.Localpart, &a.PasswordHash, &a.IsAdmin, &a.Deactivated, &a.CreatedTS, &displayName)
	if err != nil {
		return nil, notFound(err, "account")
	}
	a.DisplayName = displayName.String
	return a, nil
}

// ChangePassword stores a new password hash. With logoutOthers it also
// deletes every device of the account except keepDevice (which may be
// empty), in the same transaction, and returns the deleted device IDs.
func (db *DB) ChangePassword(ctx context.Context, localpart, hash string, logoutOthers bool, keepDevice string) ([]string, error) {
	var deleted []string
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = $2 WHERE localpart = $1`, localpart, hash)
		if err != nil {
			return fmt.Errorf("storage: change password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: account", ErrNotFound)
		}
		if logoutOthers {
			deleted, err = deleteDevicesExcept(ctx, tx, localpart, keepDevice)
		}
		return err
	})
	return deleted, err
}

// DeactivateAccount marks the account deactivated, clears its profile and
// deletes all its devices and access tokens; with erase it also deletes
// its account data. It returns the deleted device IDs. The account row
// stays, so that the user ID is never handed out again.
func (db *DB) DeactivateAccount(ctx context.Context, localpart string, erase bool) ([]string, error) {
	var deleted []string
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET deactivated = TRUE, displayname = NULL, avatar_url = NULL
			WHERE localpart = $1`, localpart)
		if err != nil {
			return fmt.Errorf("storage: deactivate account: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: account", ErrNotFound)
		}
		if deleted, err = deleteDevicesExcept(ctx, tx, localpart, ""); err != nil {
			return err
		}
		if erase {
			if _, err := tx.ExecContext(ctx, `DELETE FROM account_data WHERE localpart = $1`, localpart); err != nil {
				return fmt.Errorf("storage: erase account data: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM filters WHERE localpart = $1`, localpart); err != nil {
				return fmt.Errorf("storage: erase filters: %w", err)
			}
		}
		return nil
	})
	return deleted, err
}

// nullString stores "" as NULL, for columns where NULL means "not set".
func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
