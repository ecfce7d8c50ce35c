package storage

import "strings"

// dialect holds what differs between the engines. Queries use PostgreSQL's
// $N placeholders, which the SQLite driver also binds by position, and
// ON CONFLICT / RETURNING, which both engines support; so only schema types,
// locking and full-text search (search.go) differ.
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
	ddl:            func(s string) string { return engineBlocks("postgres", s) },
	lockMigrations: "SELECT pg_advisory_xact_lock(7172616)", // any constant shared by all parley processes
}

var sqliteTypes = strings.NewReplacer(
	"BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT",
	"BYTEA", "BLOB",
)

var sqliteDialect = dialect{
	name: "sqlite",
	ddl:  func(s string) string { return sqliteTypes.Replace(engineBlocks("sqlite", s)) },
	// SQLite transactions are opened IMMEDIATE (see open), which already
	// serialises writers.
}

// engineBlocks keeps the parts of a migration meant for engine. Where the
// engines need different DDL (full-text indexes), a migration marks blocks
// with a line "-- engine: postgres" or "-- engine: sqlite" before them and
// "-- engine: all" after them; lines outside blocks apply to both.
func engineBlocks(engine, sql string) string {
	if !strings.Contains(sql, "-- engine:") {
		return sql
	}
	var b strings.Builder
	keep := true
	for _, line := range strings.SplitAfter(sql, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "-- engine:"); ok {
			name = strings.TrimSpace(name)
			keep = name == "all" || name == engine
			continue
		}
		if keep {
			b.WriteString(line)
		}
	}
	return b.String()
}
