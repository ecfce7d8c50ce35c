package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRegistrationTokens(t *testing.T) {
	ctx := context.Background()
	ptr := func(n int64) *int64 { return &n }
	eachEngine(t, func(t *testing.T, db *DB) {
		get := func(token string) RegistrationToken {
			t.Helper()
			got, err := db.GetRegistrationToken(ctx, token)
			if err != nil {
				t.Fatalf("get %s: %v", token, err)
			}
			return *got
		}
		wantUses := func(token string, pending, completed int64) {
			t.Helper()
			if got := get(token); got.Pending != pending || got.Completed != completed {
				t.Fatalf("%s: pending %d completed %d, want %d %d", token, got.Pending, got.Completed, pending, completed)
			}
		}
		if err := db.CreateRegistrationToken(ctx, "two", ptr(2), nil); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateRegistrationToken(ctx, "two", nil, nil); !errors.Is(err, ErrRegistrationTokenExists) {
			t.Fatalf("duplicate token: %v", err)
		}
		if err := db.CreateRegistrationToken(ctx, "old", nil, ptr(1000)); err != nil {
			t.Fatal(err)
		}
		if got := get("old"); got.UsesAllowed != nil || got.ExpiryTime == nil || *got.ExpiryTime != 1000 {
			t.Fatalf("old: %+v", got)
		}
		if _, err := db.GetRegistrationToken(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
		list, err := db.ListRegistrationTokens(ctx)
		if err != nil || len(list) != 2 || list[0].Token != "old" || list[1].Token != "two" {
			t.Fatalf("list %+v, %v", list, err)
		}

		// Validity: expiry and uses.
		for _, c := range []struct {
			token string
			now   int64
			want  bool
		}{{"old", 999, true}, {"old", 1000, false}, {"two", 5000, true}, {"nope", 0, false}} {
			if ok, err := db.RegistrationTokenValid(ctx, c.token, c.now); err != nil || ok != c.want {
				t.Fatalf("valid(%s, %d) = %v, %v", c.token, c.now, ok, err)
			}
		}
		if ok, err := db.ReserveRegistrationToken(ctx, "old", "s0", 1000, 2000); err != nil || ok {
			t.Fatalf("reserved an expired token: %v, %v", ok, err)
		}

		// Reserve, complete with an account, release, expire.
		reserve := func(session string, now int64, want bool) {
			t.Helper()
			if ok, err := db.ReserveRegistrationToken(ctx, "two", session, now, now+100); err != nil || ok != want {
				t.Fatalf("reserve for %s: %v, %v, want %v", session, ok, err, want)
			}
		}
		reserve("s1", 10, true)
		reserve("s1", 10, true) // again: the first reservation is given back
		wantUses("two", 1, 0)
		reserve("s2", 10, true)
		reserve("s3", 10, false)
		wantUses("two", 2, 0)
		if ok, _ := db.RegistrationTokenValid(ctx, "two", 10); ok {
			t.Fatal("a token whose uses are all reserved is valid")
		}
		if err := db.CreateAccountWithToken(ctx, Account{Localpart: "alice"}, nil, "s1"); err != nil {
			t.Fatal(err)
		}
		wantUses("two", 1, 1)
		if err := db.CreateAccountWithToken(ctx, Account{Localpart: "bob"}, nil, "s1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a used reservation created an account: %v", err)
		}
		if _, err := db.GetAccount(ctx, "bob"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("bob exists after a failed registration: %v", err)
		}
		if err := db.ReleaseRegistrationTokenReservation(ctx, "s2"); err != nil {
			t.Fatal(err)
		}
		if err := db.ReleaseRegistrationTokenReservation(ctx, "s2"); err != nil {
			t.Fatal(err)
		}
		wantUses("two", 0, 1)
		reserve("s4", 10, true)
		wantUses("two", 1, 1)
		// s4's reservation expires at 110; a new UIA session after that
		// gives it back.
		if err := db.CreateUIASession(ctx, UIASession{ID: "u1", Completed: "[]", ExpiresTS: 500}, 110); err != nil {
			t.Fatal(err)
		}
		wantUses("two", 0, 1)

		// Update and delete.
		u, err := db.UpdateRegistrationToken(ctx, "two", RegistrationTokenUpdate{SetUsesAllowed: true})
		if err != nil || u.UsesAllowed != nil || u.ExpiryTime != nil || u.Completed != 1 {
			t.Fatalf("update to unlimited: %+v, %v", u, err)
		}
		u, err = db.UpdateRegistrationToken(ctx, "two", RegistrationTokenUpdate{SetExpiryTime: true, ExpiryTime: ptr(7)})
		if err != nil || u.UsesAllowed != nil || u.ExpiryTime == nil || *u.ExpiryTime != 7 {
			t.Fatalf("update expiry: %+v, %v", u, err)
		}
		u, err = db.UpdateRegistrationToken(ctx, "two", RegistrationTokenUpdate{SetUsesAllowed: true, UsesAllowed: ptr(5)})
		if err != nil || *u.UsesAllowed != 5 || *u.ExpiryTime != 7 {
			t.Fatalf("update uses: %+v, %v", u, err)
		}
		if _, err := db.UpdateRegistrationToken(ctx, "nope", RegistrationTokenUpdate{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update unknown: %v", err)
		}
		if err := db.DeleteRegistrationToken(ctx, "two"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteRegistrationToken(ctx, "two"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

// TestRegistrationTokenLastUse races many reservations for a token's last
// uses: exactly uses_allowed of them may win.
func TestRegistrationTokenLastUse(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		uses := int64(3)
		if err := db.CreateRegistrationToken(ctx, "few", &uses, nil); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var won atomic.Int64
		for i := range 24 {
			wg.Go(func() {
				ok, err := db.ReserveRegistrationToken(ctx, "few", fmt.Sprint("s", i), 1, 1000)
				if err != nil {
					t.Error(err)
				}
				if ok {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		got, err := db.GetRegistrationToken(ctx, "few")
		if err != nil {
			t.Fatal(err)
		}
		if won.Load() != uses || got.Pending != uses {
			t.Fatalf("%d reservations won, pending %d; want %d", won.Load(), got.Pending, uses)
		}
	})
}
