package storage

import "strings"

// dialect holds what differs between the engines. Queries use PostgreSQL's
// $N placeholders, which the SQLite driver also binds by position, and
// ON CONFLICT / RETURNING, which both engines support; so only schema types
// and locking differ.
type dialect struct {
	name string
	// ddl rewrites a migration written for PostgreSQL into this engine's DDL.
	ddl func(string) string
	// lockMigrations is run first in each migration transaction so that two
	// servers starting at once do not both apply the same migration.
	lockMigrations string
}

var postgresDialect = dialect{
	name:           "postgres",
	ddl:            func(s string) string { return s },
	lockMigrations: "SELECT pg_advisory_xact_lock(7172616)", // any constant shared by all parley processes
}

var sqliteDialect = dialect{
	name: "sqlite",
	ddl: strings.NewReplacer(
		"BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT",
		"BYTEA", "BLOB",
	).Replace,
	// SQLite transactions are opened IMMEDIATE (see open), which already
	// serialises writers.
}
