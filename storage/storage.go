// Package storage is Parley's persistence layer: one set of tables and
// queries, written once, run on PostgreSQL (lib/pq) or SQLite (modernc.org,
// pure Go). The few places where the two engines differ are kept in
// dialect.go.
package storage

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/lib/pq"  // PostgreSQL driver
	_ "modernc.org/sqlite" // SQLite driver, no cgo
)

// Pool sizes the connection pool.
type Pool struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
}

// DB is an open database of either engine.
type DB struct {
	*sql.DB
	dialect   dialect
	snapshots snapshotCache
}

// Open connects to dsn ("sqlite:PATH" or "postgres://..."), checks that the
// database answers and applies pending migrations.
func Open(ctx context.Context, dsn string, pool Pool) (*DB, error) {
	db, err := open(dsn, pool)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: database does not answer: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func open(dsn string, pool Pool) (*DB, error) {
	var (
		sqldb *sql.DB
		d     dialect
		err   error
	)
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("storage: %w", err)
			}
		}
		// WAL lets readers run beside the writer; synchronous(FULL) makes a
		// commit durable before it is acknowledged; immediate transactions
		// take the write lock up front so that two writers wait for each
		// other (busy_timeout) instead of failing on lock upgrade.
		q := "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)" +
			"&_pragma=foreign_keys(1)&_txlock=immediate"
		sqldb, err = sql.Open("sqlite", "file:"+path+q)
		d = sqliteDialect
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		sqldb, err = sql.Open("postgres", dsn)
		d = postgresDialect
	default:
		return nil, fmt.Errorf("storage: unsupported database %q: want sqlite:PATH or postgres://", dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	if pool.MaxOpenConns > 0 {
		sqldb.SetMaxOpenConns(pool.MaxOpenConns)
	}
	// 0 keeps database/sql's default; never closing every connection
	// after use matters more than honouring a literal zero.
	if pool.MaxIdleConns > 0 {
		sqldb.SetMaxIdleConns(pool.MaxIdleConns)
	}
	sqldb.SetConnMaxLifetime(pool.ConnMaxLifetime)
	return &DB{DB: sqldb, dialect: d}, nil
}

// Engine names the database engine: "sqlite" or "postgres".
func (db *DB) Engine() string { return db.dialect.name }

// Tx is a database transaction.
type Tx = sql.Tx

// WithTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise.
func (db *DB) WithTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}
