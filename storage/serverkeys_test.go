package storage

import (
	"context"
	"reflect"
	"testing"
)

func TestServerKeys(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		a := ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: []byte{1, 2, 3}, ValidUntilTS: 100, FetchedTS: 50, Response: []byte(`{"r":1}`)}
		b := ServerKey{ServerName: "a.test", KeyID: "ed25519:0", PublicKey: []byte{4}, ValidUntilTS: 100, ExpiredTS: 40, FetchedTS: 50, Response: []byte(`{"r":1}`)}
		other := ServerKey{ServerName: "b.test", KeyID: "ed25519:1", PublicKey: []byte{5}, ValidUntilTS: 7, FetchedTS: 6, Response: []byte(`{}`)}
		if err := db.StoreServerKeys(ctx, []ServerKey{a, b, other}); err != nil {
			t.Fatal(err)
		}
		a.ValidUntilTS, a.ExpiredTS, a.Response = 200, 150, []byte(`{"r":2}`)
		if err := db.StoreServerKeys(ctx, []ServerKey{a}); err != nil {
			t.Fatal(err)
		}
		got, err := db.ServerKeys(ctx, "a.test")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]ServerKey{a.KeyID: a, b.KeyID: b}
		if len(got) != 2 || !reflect.DeepEqual(got[0], want[got[0].KeyID]) || !reflect.DeepEqual(got[1], want[got[1].KeyID]) {
			t.Fatalf("got %+v", got)
		}
		if none, err := db.ServerKeys(ctx, "c.test"); err != nil || len(none) != 0 {
			t.Fatalf("unknown server: %v %v", none, err)
		}
	})
}
