package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// Snapshots written as deltas and full copies read back as the states they
// stand for, from the database and from the cache, on both engines; and a
// growing room writes rows in proportion to its state, not its square.
func TestStateSnapshots(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		rng := rand.New(rand.NewPCG(1, 2))
		model := StateMap{}
		var nids []int64
		var states []StateMap
		parent := int64(0)
		// A room growing to 3,000 members, with some leaving (removed
		// keys), topic changes (a key changing often) and now and
		// then a branch off an older snapshot (state resolution and
		// backfill write those).
		for i := 0; i < 3000; i++ {
			changes := StateMap{{Type: "m.room.member", StateKey: fmt.Sprintf("@u%d:x", i)}: fmt.Sprintf("$join%d", i)}
			if i%7 == 0 {
				changes[StateKey{Type: "m.room.topic"}] = fmt.Sprintf("$topic%d", i)
			}
			if i%11 == 0 && i > 0 {
				changes[StateKey{Type: "m.room.member", StateKey: fmt.Sprintf("@u%d:x", rng.IntN(i))}] = ""
			}
			base, baseState := parent, model
			branch := i%97 == 0 && len(nids) > 0
			if branch {
				j := rng.IntN(len(nids))
				base, baseState = nids[j], states[j]
			}
			next := StateMap{}
			for k, v := range baseState {
				next[k] = v
			}
			for k, v := range changes {
				if v == "" {
					delete(next, k)
				} else {
					next[k] = v
				}
			}
			var nid int64
			if err := db.WithTx(ctx, func(tx *Tx) error {
				var err error
				nid, err = db.InsertSnapshot(ctx, tx, "!r:x", base, changes)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			nids, states = append(nids, nid), append(states, next)
			if !branch { // a branch is left where it is
				parent, model = nid, next
			}
		}
		check := func(what string) {
			for _, i := range []int{0, 1, 63, 64, 65, 500, 1234, 2047, 2048, 2999} {
				got, err := db.LoadSnapshot(ctx, nids[i])
				if err != nil {
					t.Fatal(err)
				}
				if !equalStates(got, states[i]) {
					t.Fatalf("%s: snapshot %d (%d entries) differs from the state it stands for (%d entries)", what, i, len(got), len(states[i]))
				}
			}
		}
		check("from the database")
		check("from the cache")
		db.snapshots = snapshotCache{}
		check("from the database, again")
		var rows int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM state_snapshot_entries`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		// Full copies at doubling sizes plus the deltas: a few times
		// the final state, where a copy every few levels would write
		// millions.
		t.Logf("%d snapshot rows for a final state of %d", rows, len(model))
		if final := len(model); rows > 8*final {
			t.Fatalf("%d snapshot rows written for a final state of %d", rows, final)
		}
		if _, err := db.LoadSnapshot(ctx, 1<<40); err == nil {
			t.Fatal("an unknown snapshot loaded")
		}
	})
}

func equalStates(a, b StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
