package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/parley-chat/parley/storage/storagetest"
)

// eachEngine runs fn on a fresh, migrated database of each engine.
func eachEngine(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Helper()
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			db, err := Open(context.Background(), e.DSN, Pool{MaxOpenConns: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			fn(t, db)
		})
	}
}

func TestDevicesAndTokens(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		if err := db.CreateAccountWithDevice(ctx, Account{Localpart: "alice", DisplayName: "Alice"},
			&NewDevice{Localpart: "alice", DeviceID: "PHONE", DisplayName: "phone", TokenHash: []byte("h1"), TS: 10, IP: "1.2.3.4"}); err != nil {
			t.Fatal(err)
		}
		o, err := db.TokenOwner(ctx, []byte("h1"))
		if err != nil || o.Localpart != "alice" || o.DeviceID != "PHONE" || o.IsAdmin || o.LastSeenTS != 10 {
			t.Fatalf("token owner %+v, %v", o, err)
		}
		// Logging in again with the same device ID replaces its token and
		// keeps its name.
		created, err := db.LoginDevice(ctx, NewDevice{Localpart: "alice", DeviceID: "PHONE", DisplayName: "ignored", TokenHash: []byte("h2"), TS: 20})
		if err != nil || created {
			t.Fatalf("re-login: created=%v %v", created, err)
		}
		if _, err := db.TokenOwner(ctx, []byte("h1")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old token still valid: %v", err)
		}
		if created, err := db.LoginDevice(ctx, NewDevice{Localpart: "alice", DeviceID: "LAPTOP", TokenHash: []byte("h3"), TS: 30}); err != nil || !created {
			t.Fatalf("new device: created=%v %v", created, err)
		}
		ds, err := db.Devices(ctx, "alice")
		if err != nil || len(ds) != 2 || ds[0].DeviceID != "PHONE" || ds[0].DisplayName != "phone" || ds[0].LastSeenTS != 20 || ds[1].DisplayName != "" {
			t.Fatalf("devices %+v, %v", ds, err)
		}
		if err := db.SetDeviceDisplayName(ctx, "alice", "LAPTOP", "laptop"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetDeviceDisplayName(ctx, "alice", "NOPE", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("renaming a missing device: %v", err)
		}
		if d, err := db.GetDevice(ctx, "alice", "LAPTOP"); err != nil || d.DisplayName != "laptop" {
			t.Fatalf("device %+v, %v", d, err)
		}
		// Deleting a device deletes its tokens.
		deleted, err := db.DeleteDevices(ctx, "alice", []string{"LAPTOP", "NOPE"})
		if err != nil || !slices.Equal(deleted, []string{"LAPTOP"}) {
			t.Fatalf("deleted %v, %v", deleted, err)
		}
		if _, err := db.TokenOwner(ctx, []byte("h3")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of deleted device: %v", err)
		}
		// Password change logging out the others keeps the current device.
		if _, err := db.LoginDevice(ctx, NewDevice{Localpart: "alice", DeviceID: "TABLET", TokenHash: []byte("h4"), TS: 40}); err != nil {
			t.Fatal(err)
		}
		deleted, err = db.ChangePassword(ctx, "alice", "newhash", true, "PHONE")
		if err != nil || !slices.Equal(deleted, []string{"TABLET"}) {
			t.Fatalf("password change deleted %v, %v", deleted, err)
		}
		if a, _ := db.GetAccount(ctx, "alice"); a.PasswordHash != "newhash" || a.DisplayName != "Alice" {
			t.Fatalf("account %+v", a)
		}
		// Deactivation deletes everything and hides the tokens.
		if _, err := db.PutAccountData(ctx, "alice", "", "m.direct", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		deleted, err = db.DeactivateAccount(ctx, "alice", true)
		if err != nil || !slices.Equal(deleted, []string{"PHONE"}) {
			t.Fatalf("deactivation deleted %v, %v", deleted, err)
		}
		p, err := db.GetProfile(ctx, "alice")
		if err != nil || !p.Deactivated || p.DisplayName != "" {
			t.Fatalf("profile after deactivation %+v, %v", p, err)
		}
		if _, err := db.GetAccountData(ctx, "alice", "", "m.direct"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("erased account data: %v", err)
		}
		if _, err := db.SetDisplayName(ctx, "alice", "back"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("profile of a deactivated account changed: %v", err)
		}
		if _, err := db.DeactivateAccount(ctx, "nobody", false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deactivating a missing account: %v", err)
		}
	})
}

func TestProfiles(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		if err := db.CreateAccount(ctx, Account{Localpart: "bob"}); err != nil {
			t.Fatal(err)
		}
		if p, err := db.GetProfile(ctx, "bob"); err != nil || *p != (Profile{}) {
			t.Fatalf("empty profile %+v, %v", p, err)
		}
		if _, err := db.SetDisplayName(ctx, "bob", "Bob"); err != nil {
			t.Fatal(err)
		}
		p, err := db.SetAvatarURL(ctx, "bob", "mxc://x/y")
		if err != nil || p.DisplayName != "Bob" || p.AvatarURL != "mxc://x/y" {
			t.Fatalf("profile %+v, %v", p, err)
		}
		if p, _ := db.SetDisplayName(ctx, "bob", ""); p.DisplayName != "" || p.AvatarURL != "mxc://x/y" {
			t.Fatalf("clearing the name: %+v", p)
		}
		if _, err := db.GetProfile(ctx, "carol"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing profile: %v", err)
		}
	})
}

func TestAccountDataStream(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		for _, u := range []string{"alice", "bob"} {
			if err := db.CreateAccount(ctx, Account{Localpart: u}); err != nil {
				t.Fatal(err)
			}
		}
		start, err := db.StreamPosition(ctx, StreamAccountData)
		if err != nil {
			t.Fatal(err)
		}
		p1, _ := db.PutAccountData(ctx, "alice", "", "a", []byte(`{"v":1}`))
		p2, _ := db.PutAccountData(ctx, "alice", "!r:x", "a", []byte(`{"v":2}`))
		p3, _ := db.PutAccountData(ctx, "bob", "", "a", []byte(`{"v":3}`))
		p4, err := db.PutAccountData(ctx, "alice", "", "a", []byte(`{"v":4}`)) // overwrites p1's entry
		if err != nil || !(start < p1 && p1 < p2 && p2 < p3 && p3 < p4) {
			t.Fatalf("positions %d %d %d %d %d, %v", start, p1, p2, p3, p4, err)
		}
		if cur, _ := db.StreamPosition(ctx, StreamAccountData); cur != p4 {
			t.Fatalf("current position %d, want %d", cur, p4)
		}
		all, err := db.AccountDataSince(ctx, "alice", 0, p4)
		if err != nil || len(all) != 2 || string(all[0].Content) != `{"v":2}` || all[1].RoomID != "" || string(all[1].Content) != `{"v":4}` {
			t.Fatalf("since 0: %+v, %v", all, err)
		}
		some, _ := db.AccountDataSince(ctx, "alice", p2, p4)
		if len(some) != 1 || some[0].StreamPos != p4 {
			t.Fatalf("since p2: %+v", some)
		}
		if none, _ := db.AccountDataSince(ctx, "alice", 0, p1); len(none) != 0 {
			t.Fatalf("upto bounds nothing: %+v", none)
		}
		if c, err := db.GetAccountData(ctx, "alice", "!r:x", "a"); err != nil || string(c) != `{"v":2}` {
			t.Fatalf("get %s, %v", c, err)
		}
		// An unchanged update writes nothing and takes no position.
		pos, err := db.UpdateAccountData(ctx, "alice", "", "a", func([]byte) ([]byte, error) { return nil, ErrUnchanged })
		if cur, _ := db.StreamPosition(ctx, StreamAccountData); err != nil || pos != 0 || cur != p4 {
			t.Fatalf("unchanged update: pos %d, current %d, %v", pos, cur, err)
		}
	})
}

func TestConcurrentAccountDataUpdates(t *testing.T) {
	// Read-modify-write updates of one entry from many goroutines must not
	// lose each other's changes.
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		if err := db.CreateAccount(ctx, Account{Localpart: "alice"}); err != nil {
			t.Fatal(err)
		}
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := db.UpdateAccountData(ctx, "alice", "!r:x", "m.tag", func(old []byte) ([]byte, error) {
					return append(old, '.'), nil
				})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		c, _ := db.GetAccountData(ctx, "alice", "!r:x", "m.tag")
		if len(c) != n {
			t.Fatalf("%d of %d updates kept", len(c), n)
		}
	})
}

func TestFiltersAndNonces(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		for _, u := range []string{"alice", "bob"} {
			if err := db.CreateAccount(ctx, Account{Localpart: u}); err != nil {
				t.Fatal(err)
			}
		}
		id1, err := db.PutFilter(ctx, "alice", []byte("hash1"), `{"a":1}`)
		if err != nil {
			t.Fatal(err)
		}
		id2, _ := db.PutFilter(ctx, "alice", []byte("hash2"), `{"a":2}`)
		again, _ := db.PutFilter(ctx, "alice", []byte("hash1"), `{"a":1}`)
		bobs, _ := db.PutFilter(ctx, "bob", []byte("hash1"), `{"a":1}`)
		if id1 == id2 || again != id1 || bobs == id1 {
			t.Fatalf("filter IDs %d %d %d %d", id1, id2, again, bobs)
		}
		if f, err := db.GetFilter(ctx, "alice", id2); err != nil || f != `{"a":2}` {
			t.Fatalf("filter %q, %v", f, err)
		}
		if _, err := db.GetFilter(ctx, "bob", id1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("another user's filter: %v", err)
		}

		if err := db.CreateRegistrationNonce(ctx, "n1", 100, 0); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateRegistrationNonce(ctx, "old", 50, 0); err != nil {
			t.Fatal(err)
		}
		if ok, _ := db.ConsumeRegistrationNonce(ctx, "old", 60); ok {
			t.Fatal("expired nonce consumed")
		}
		if ok, _ := db.ConsumeRegistrationNonce(ctx, "n1", 60); !ok {
			t.Fatal("fresh nonce refused")
		}
		if ok, _ := db.ConsumeRegistrationNonce(ctx, "n1", 60); ok {
			t.Fatal("nonce consumed twice")
		}
	})
}

func TestUIASessions(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		for i := 0; i < 3; i++ {
			s := UIASession{ID: fmt.Sprint("s", i), Action: "POST /x", Localpart: "alice", Completed: "[]", ExpiresTS: int64(100 * (i + 1))}
			if err := db.CreateUIASession(ctx, s, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.GetUIASession(ctx, "s0", 150); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired session: %v", err)
		}
		if err := db.SetUIASessionCompleted(ctx, "s1", `["m.login.dummy"]`); err != nil {
			t.Fatal(err)
		}
		s, err := db.GetUIASession(ctx, "s1", 150)
		if err != nil || s.Completed != `["m.login.dummy"]` || s.Action != "POST /x" || s.Localpart != "alice" {
			t.Fatalf("session %+v, %v", s, err)
		}
		if ok, _ := db.DeleteUIASession(ctx, "s1"); !ok {
			t.Fatal("delete failed")
		}
		if ok, _ := db.DeleteUIASession(ctx, "s1"); ok {
			t.Fatal("deleted twice")
		}
		// Creating a session sweeps expired ones.
		if err := db.CreateUIASession(ctx, UIASession{ID: "new", Completed: "[]", ExpiresTS: 1000}, 250); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM uia_sessions`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%d sessions left, want 2 (s2 and new): %v", n, err)
		}
	})
}
