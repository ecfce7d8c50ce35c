package storage

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/storage/storagetest"
)

func TestMigrationsBothEngines(t *testing.T) {
	ctx := context.Background()
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			db, err := Open(ctx, e.DSN, Pool{MaxOpenConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			v, err := db.SchemaVersion(ctx)
			if err != nil || v != LatestSchemaVersion() || v < 1 {
				t.Fatalf("schema version %d (%v), want %d", v, err, LatestSchemaVersion())
			}
			if err := db.CreateAccount(ctx, Account{Localpart: "alice", PasswordHash: "h", IsAdmin: true}); err != nil {
				t.Fatal(err)
			}
			db.Close()

			// A second open applies nothing and keeps the data.
			db, err = Open(ctx, e.DSN, Pool{MaxOpenConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			a, err := db.GetAccount(ctx, "alice")
			if err != nil || !a.IsAdmin || a.PasswordHash != "h" {
				t.Fatalf("account after reopen: %+v, %v", a, err)
			}
			if err := db.CreateAccount(ctx, Account{Localpart: "alice"}); !errors.Is(err, ErrUserExists) {
				t.Fatalf("duplicate account: %v, want ErrUserExists", err)
			}
			if _, err := db.GetAccount(ctx, "bob"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing account: %v, want ErrNotFound", err)
			}

			// A database from a newer parley is refused, not misread.
			if _, err := db.Exec("INSERT INTO schema_migrations (version, name, applied_ts) VALUES ($1, 'future', 0)", LatestSchemaVersion()+1); err != nil {
				t.Fatal(err)
			}
			db.Close()
			_, err = Open(ctx, e.DSN, Pool{MaxOpenConns: 4})
			if err == nil || !strings.Contains(err.Error(), "newer parley") {
				t.Fatalf("opening a newer database: %v", err)
			}
		})
	}
}

func TestConcurrentMigration(t *testing.T) {
	// Several processes starting at once against one PostgreSQL database
	// must apply each migration once.
	dsn := storagetest.Postgres(t, true)
	ctx := context.Background()
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			db, err := Open(ctx, dsn, Pool{MaxOpenConns: 2})
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	if _, err := Open(context.Background(), "mysql://x", Pool{}); err == nil {
		t.Fatal("mysql DSN accepted")
	}
}
