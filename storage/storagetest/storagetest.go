// Package storagetest gives tests a fresh database of each engine: SQLite
// always, PostgreSQL when PARLEY_TEST_POSTGRES holds a DSN.
package storagetest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/lib/pq"
)

// PostgresEnv names the environment variable holding the PostgreSQL DSN.
const PostgresEnv = "PARLEY_TEST_POSTGRES"

// Engine is a named DSN for one test database.
type Engine struct {
	Name string
	DSN  string
}

// Engines returns a fresh SQLite database and, when PostgreSQL is
// configured, a fresh PostgreSQL database; each is removed when the test
// ends. Without PARLEY_TEST_POSTGRES the PostgreSQL case is skipped with a
// visible message.
func Engines(t testing.TB) []Engine {
	t.Helper()
	engines := []Engine{{Name: "sqlite", DSN: SQLite(t)}}
	if dsn := Postgres(t, false); dsn != "" {
		engines = append(engines, Engine{Name: "postgres", DSN: dsn})
	}
	return engines
}

// SQLite returns the DSN of a new SQLite database in the test's temp dir.
func SQLite(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "parley.db")
}

// Postgres creates a new, empty PostgreSQL database for the test and returns
// its DSN. When PARLEY_TEST_POSTGRES is unset it logs that PostgreSQL tests
// are skipped and returns "" (or skips the test when required is true).
func Postgres(t testing.TB, required bool) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		msg := "PostgreSQL tests skipped: set " + PostgresEnv + " to a DSN to run them"
		if required {
			t.Skip(msg)
		}
		t.Log(msg)
		return ""
	}
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "parley_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("postgres", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s is not a URL DSN: %v", PostgresEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}
