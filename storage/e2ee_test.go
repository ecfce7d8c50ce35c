package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/storage/storagetest"
)

// e2eEngines runs fn on a fresh database of each engine with a pool large
// enough for real concurrency.
func e2eEngines(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Helper()
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			db, err := Open(context.Background(), e.DSN, Pool{MaxOpenConns: 32, MaxIdleConns: 32})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			fn(t, db)
		})
	}
}

// warmPool opens n connections and returns them to the pool idle, so that
// concurrent statements start together instead of one per new connection.
func warmPool(t *testing.T, db *DB, n int) {
	t.Helper()
	var conns []*sql.Conn
	for range n {
		c, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
}

func e2eDevice(t *testing.T, db *DB, localpart, device string) {
	t.Helper()
	err := db.CreateAccountWithDevice(context.Background(), Account{Localpart: localpart},
		&NewDevice{Localpart: localpart, DeviceID: device, TokenHash: []byte(localpart + device), TS: 1})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClaimKeyConcurrently hands out each one-time key once however many
// claims race for them, then the fallback key to the rest.
func TestClaimKeyConcurrently(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		e2eDevice(t, db, "alice", "DEV")
		const user, keys, claims = "@alice:test", 20, 200
		up := KeyUpload{UserID: user, Localpart: "alice", DeviceID: "DEV",
			FallbackKeys: []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "FB", JSON: `"fb"`}}}
		for i := range keys {
			up.OneTimeKeys = append(up.OneTimeKeys, OneTimeKey{Algorithm: "signed_curve25519", KeyID: fmt.Sprint(i), JSON: fmt.Sprintf(`"k%d"`, i)})
		}
		counts, _, err := db.UploadE2EKeys(ctx, up)
		if err != nil || counts["signed_curve25519"] != keys {
			t.Fatalf("upload: %v %v", counts, err)
		}
		warmPool(t, db, 32)
		var (
			mu    sync.Mutex
			got   = map[string]int{}
			wg    sync.WaitGroup
			start = make(chan struct{})
		)
		for range claims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				id, js, fallback, found, err := db.ClaimKey(ctx, user, "DEV", "signed_curve25519")
				mu.Lock()
				defer mu.Unlock()
				if err != nil || !found {
					t.Errorf("claim: found=%v %v", found, err)
					return
				}
				if fallback != (id == "FB") || (id != "FB" && js != `"k`+id+`"`) {
					t.Errorf("claim returned %s %s fallback=%v", id, js, fallback)
				}
				got[id]++
			}()
		}
		close(start)
		wg.Wait()
		for i := range keys {
			if got[fmt.Sprint(i)] != 1 {
				t.Errorf("key %d handed out %d times", i, got[fmt.Sprint(i)])
			}
		}
		if got["FB"] != claims-keys {
			t.Errorf("fallback key handed out %d times, want %d", got["FB"], claims-keys)
		}
		if types, err := db.UnusedFallbackKeyTypes(ctx, user, "DEV"); err != nil || len(types) != 0 {
			t.Errorf("fallback key not marked used: %v %v", types, err)
		}
		// The same fallback key uploaded again stays used; a new one is unused.
		if _, _, err := db.UploadE2EKeys(ctx, KeyUpload{UserID: user, Localpart: "alice", DeviceID: "DEV", FallbackKeys: up.FallbackKeys}); err != nil {
			t.Fatal(err)
		}
		if types, _ := db.UnusedFallbackKeyTypes(ctx, user, "DEV"); len(types) != 0 {
			t.Errorf("re-uploaded fallback key became unused: %v", types)
		}
		up2 := KeyUpload{UserID: user, Localpart: "alice", DeviceID: "DEV",
			FallbackKeys: []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "FB2", JSON: `"fb2"`}}}
		if _, _, err := db.UploadE2EKeys(ctx, up2); err != nil {
			t.Fatal(err)
		}
		if types, _ := db.UnusedFallbackKeyTypes(ctx, user, "DEV"); len(types) != 1 {
			t.Errorf("new fallback key: %v", types)
		}
	})
}

// TestClaimKeyBesideOpenClaim holds one claim's transaction open and
// checks that another claim gets the next key: on PostgreSQL without
// waiting (SKIP LOCKED), on SQLite after the first commits. A claim that
// queued behind the first for the same row would find it gone and hand
// out the fallback key although keys are left.
func TestClaimKeyBesideOpenClaim(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		e2eDevice(t, db, "alice", "DEV")
		const user = "@alice:test"
		up := KeyUpload{UserID: user, Localpart: "alice", DeviceID: "DEV",
			OneTimeKeys:  []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "A", JSON: `"a"`}, {Algorithm: "signed_curve25519", KeyID: "B", JSON: `"b"`}},
			FallbackKeys: []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "FB", JSON: `"fb"`}}}
		if _, _, err := db.UploadE2EKeys(ctx, up); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var first string
		if err := tx.QueryRowContext(ctx, `DELETE FROM e2e_one_time_keys WHERE id IN (
			SELECT id FROM e2e_one_time_keys WHERE user_id = $1 ORDER BY id LIMIT 1`+db.rowLock(" FOR UPDATE SKIP LOCKED")+`)
			RETURNING key_id`, user).Scan(&first); err != nil || first != "A" {
			t.Fatalf("open claim: %q %v", first, err)
		}
		type result struct {
			id       string
			fallback bool
			err      error
		}
		done := make(chan result, 1)
		go func() {
			id, _, fb, _, err := db.ClaimKey(ctx, user, "DEV", "signed_curve25519")
			done <- result{id, fb, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(500 * time.Millisecond):
			// SQLite: the open transaction holds the write lock.
			if db.Engine() == "postgres" {
				t.Error("the claim waited for the other claim's transaction")
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			r = <-done
		}
		_ = tx.Commit()
		if r.err != nil || r.fallback || r.id != "B" {
			t.Fatalf("claim beside an open claim: %+v", r)
		}
	})
}

func TestUploadE2EKeys(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		e2eDevice(t, db, "alice", "DEV")
		const user = "@alice:test"
		up := KeyUpload{UserID: user, Localpart: "alice", DeviceID: "DEV", DeviceKeys: `{"k":1}`,
			OneTimeKeys: []OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "A", JSON: `"a"`}}}
		_, pos, err := db.UploadE2EKeys(ctx, up)
		if err != nil || pos == 0 {
			t.Fatalf("first upload: pos=%d %v", pos, err)
		}
		if got, _ := db.DeviceListChangePos(ctx, user); got != pos {
			t.Fatalf("device list change at %d, want %d", got, pos)
		}
		// Identity keys never change.
		if _, _, err := db.UploadE2EKeys(ctx, up); !errors.Is(err, ErrDeviceKeysExist) {
			t.Fatalf("second identity keys: %v", err)
		}
		// The same one-time key again is fine, another under its ID is not.
		up.DeviceKeys = ""
		if _, _, err := db.UploadE2EKeys(ctx, up); err != nil {
			t.Fatalf("same one-time key again: %v", err)
		}
		up.OneTimeKeys[0].JSON = `"b"`
		if _, _, err := db.UploadE2EKeys(ctx, up); !errors.Is(err, ErrOneTimeKeyExists) {
			t.Fatalf("different key under the same ID: %v", err)
		}
		// Keys for a device that does not exist are not stored.
		if _, _, err := db.UploadE2EKeys(ctx, KeyUpload{UserID: user, Localpart: "alice", DeviceID: "GONE", DeviceKeys: `{}`}); !errors.Is(err, ErrNoDevice) {
			t.Fatalf("keys of a missing device: %v", err)
		}
	})
}

func TestToDeviceQueue(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		txn := &ToDeviceTxn{UserID: "@bob:test", DeviceID: "B", EventType: "m.test", TxnID: "1", TS: 1000}
		msgs := []ToDeviceMessage{
			{UserID: "@alice:test", DeviceID: "D1", Sender: "@bob:test", Type: "m.test", Content: `{"n":1}`},
			{UserID: "@alice:test", DeviceID: "D2", Sender: "@bob:test", Type: "m.test", Content: `{"n":2}`},
			{UserID: "@alice:test", DeviceID: "D1", Sender: "@bob:test", Type: "m.test", Content: `{"n":3}`},
		}
		last, dup, err := db.QueueToDevice(ctx, txn, msgs)
		if err != nil || dup || last != 3 {
			t.Fatalf("queue: last=%d dup=%v %v", last, dup, err)
		}
		if _, dup, _ := db.QueueToDevice(ctx, txn, msgs); !dup {
			t.Fatal("a repeated transaction was queued again")
		}
		// Pruned after a day: the same ID is new again.
		later := *txn
		later.TS += toDeviceTxnTTL + 1
		later.TxnID = "2"
		if _, _, err := db.QueueToDevice(ctx, &later, nil); err != nil {
			t.Fatal(err)
		}
		if _, dup, _ := db.QueueToDevice(ctx, &ToDeviceTxn{UserID: "@bob:test", DeviceID: "B", EventType: "m.test", TxnID: "1", TS: later.TS}, nil); dup {
			t.Fatal("a day-old transaction ID was not pruned")
		}
		got, err := db.PendingToDevice(ctx, "@alice:test", "D1", 0, 3, 10)
		if err != nil || len(got) != 2 || got[0].Content != `{"n":1}` || got[1].Content != `{"n":3}` || got[0].StreamPos >= got[1].StreamPos {
			t.Fatalf("pending for D1: %+v %v", got, err)
		}
		if got, _ := db.PendingToDevice(ctx, "@alice:test", "D1", 0, 3, 1); len(got) != 1 {
			t.Fatalf("limit: %+v", got)
		}
		if err := db.AckToDevice(ctx, "@alice:test", "D1", got[0].StreamPos); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.PendingToDevice(ctx, "@alice:test", "D1", 0, 3, 10); len(got) != 1 || got[0].Content != `{"n":3}` {
			t.Fatalf("after acknowledging the first: %+v", got)
		}
		if got, _ := db.PendingToDevice(ctx, "@alice:test", "D2", 0, 3, 10); len(got) != 1 {
			t.Fatalf("the other device's message was touched: %+v", got)
		}
	})
}

func TestBackupVersions(t *testing.T) {
	ctx := context.Background()
	e2eEngines(t, func(t *testing.T, db *DB) {
		const user = "@alice:test"
		var wg sync.WaitGroup
		versions := make([]int64, 10)
		for i := range versions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := db.CreateBackupVersion(ctx, user, "alg", `{}`)
				if err != nil {
					t.Error(err)
				}
				versions[i] = v
			}()
		}
		wg.Wait()
		seen := map[int64]bool{}
		for _, v := range versions {
			if seen[v] || v < 1 || v > 10 {
				t.Fatalf("versions %v", versions)
			}
			seen[v] = true
		}
		cur, err := db.GetBackupVersion(ctx, user, 0)
		if err != nil || cur.Version != 10 {
			t.Fatalf("current %+v %v", cur, err)
		}
		if err := db.DeleteBackupVersion(ctx, user, 10); err != nil {
			t.Fatal(err)
		}
		if v, _ := db.CreateBackupVersion(ctx, user, "alg", `{}`); v != 11 {
			t.Fatalf("a deleted version number was reused: %d", v)
		}
	})
}
