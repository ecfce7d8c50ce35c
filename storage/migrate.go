package storage

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema change, numbered from 1 without gaps.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations reads the embedded files named NNNN_description.sql, in
// ascending order. Numbers need not be contiguous, but must be unique.
func migrations() ([]migration, error) {
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("storage: bad migration file name %q", e.Name())
		}
		body, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("storage: two migrations numbered %d", ms[i].version)
		}
	}
	return ms, nil
}

// LatestSchemaVersion is the schema version this binary writes: the
// number of its last migration.
func LatestSchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// SchemaVersion is the highest migration applied to the database.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	return schemaVersion(ctx, db.DB)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("storage: reading schema version: %w", err)
	}
	return int(v.Int64), nil
}

// migrate applies every pending migration, each in its own transaction with
// its version row, so a crash leaves the schema at a clean version. A
// database written by a newer Parley is refused rather than misread.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	err = db.WithTx(ctx, func(tx *sql.Tx) error {
		// Under the lock: PostgreSQL's CREATE TABLE IF NOT EXISTS is not
		// safe against a concurrent creator.
		if err := db.lock(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY,
			name TEXT NOT NULL,
			applied_ts BIGINT NOT NULL)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: creating schema_migrations: %w", err)
	}
	applied, err := appliedMigrations(ctx, db)
	if err != nil {
		return err
	}
	known := map[int]bool{}
	for _, m := range ms {
		known[m.version] = true
	}
	for v := range applied {
		if !known[v] {
			return fmt.Errorf("storage: the database has schema migration %d, which this parley does not know (it knows up to %d): it was written by a newer parley; run that version or restore a backup", v, LatestSchemaVersion())
		}
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		err := db.WithTx(ctx, func(tx *sql.Tx) error {
			if err := db.lock(ctx, tx); err != nil {
				return err
			}
			// Another process may have applied it while we waited for the lock.
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", m.version).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, db.dialect.ddl(m.sql)); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_ts) VALUES ($1, $2, $3)",
				m.version, m.name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("storage: migration %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

// lock takes the migration lock for the rest of tx.
func (db *DB) lock(ctx context.Context, tx *sql.Tx) error {
	if db.dialect.lockMigrations == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, db.dialect.lockMigrations)
	return err
}

func appliedMigrations(ctx context.Context, db *DB) (map[int]bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("storage: reading applied migrations: %w", err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out[v] = true
	}
	return out, rows.Err()
}
