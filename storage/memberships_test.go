package storage

import (
	"context"
	"fmt"
	"testing"
)

// The members of a room on one server, and only them.
func TestRoomMembersOf(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		users := []string{"@a:hs1.test", "@b:hs1.test", "@c:xhs1.test", "@d:hs1.test.evil", "@e:hs1.test:8448", "@f:hs2.test"}
		err := db.WithTx(ctx, func(tx *Tx) error {
			for i, u := range users {
				if err := SetMembership(ctx, tx, Membership{RoomID: "!r:x", UserID: u, Membership: "join", EventID: fmt.Sprintf("$%d", i), StreamPos: int64(i + 1)}); err != nil {
					return err
				}
			}
			return SetMembership(ctx, tx, Membership{RoomID: "!r:x", UserID: "@g:hs1.test", Membership: "leave", EventID: "$g", StreamPos: 9})
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.RoomMembersOf(ctx, "!r:x", "join", "hs1.test")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range got {
			ids = append(ids, m.UserID)
		}
		if fmt.Sprint(ids) != "[@a:hs1.test @b:hs1.test]" {
			t.Fatalf("members of hs1.test: %v", ids)
		}
	})
}
