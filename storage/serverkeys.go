package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// ServerKey is a remote server's signing key as the keyring stores it.
type ServerKey struct {
	ServerName string
	KeyID      string
	PublicKey  []byte
	// ValidUntilTS is the published valid_until_ts of the response the
	// key came in.
	ValidUntilTS int64
	// ExpiredTS is when the key moved to old_verify_keys, 0 while it is
	// one of the server's verify keys.
	ExpiredTS int64
	FetchedTS int64
	// Response is the server's self-signed key response.
	Response []byte
}

// ServerKeys returns every stored key of serverName.
func (db *DB) ServerKeys(ctx context.Context, serverName string) ([]ServerKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT key_id, public_key, valid_until_ts, expired_ts, fetched_ts, response_json
		FROM server_keys WHERE server_name = $1`, serverName)
	if err != nil {
		return nil, fmt.Errorf("storage: server keys: %w", err)
	}
	defer rows.Close()
	var keys []ServerKey
	for rows.Next() {
		k := ServerKey{ServerName: serverName}
		var resp string
		if err := rows.Scan(&k.KeyID, &k.PublicKey, &k.ValidUntilTS, &k.ExpiredTS, &k.FetchedTS, &resp); err != nil {
			return nil, fmt.Errorf("storage: server keys: %w", err)
		}
		k.Response = []byte(resp)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: server keys: %w", err)
	}
	return keys, nil
}

// StoreServerKeys inserts or replaces keys in one transaction.
func (db *DB) StoreServerKeys(ctx context.Context, keys []ServerKey) error {
	if len(keys) == 0 {
		return nil
	}
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			_, err := tx.ExecContext(ctx, `INSERT INTO server_keys
				(server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts, response_json)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (server_name, key_id) DO UPDATE SET
					public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts,
					expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts,
					response_json = excluded.response_json`,
				k.ServerName, k.KeyID, k.PublicKey, k.ValidUntilTS, k.ExpiredTS, k.FetchedTS, string(k.Response))
			if err != nil {
				return fmt.Errorf("storage: store server key %s %s: %w", k.ServerName, k.KeyID, err)
			}
		}
		return nil
	})
}
