package storage

import (
	"context"
	"testing"
)

// What is known of an event, asked one at a time and for many at once,
// agrees on both engines.
func TestEventKnowledge(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		err := db.WithTx(ctx, func(tx *Tx) error {
			if err := db.InsertEvents(ctx, tx, []*EventRow{{EventID: "$timeline", RoomID: "!r:x", Type: "m.room.message",
				Sender: "@a:x", Depth: 1, StreamPos: 1, JSON: "{}"}}); err != nil {
				return err
			}
			if err := InsertOutlier(ctx, tx, "$outlier", "!r:x", "{}", false); err != nil {
				return err
			}
			// Held as an outlier first, then taken into the timeline:
			// the timeline wins.
			if err := InsertOutlier(ctx, tx, "$timeline", "!r:x", "{}", false); err != nil {
				return err
			}
			return InsertRejected(ctx, tx, "$rejected", "!r:x", "not allowed")
		})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]EventKnowledge{"$timeline": InTimeline, "$outlier": Outlier, "$rejected": Rejected, "$never": Unknown}
		ids := []string{"$timeline", "$outlier", "$rejected", "$never"}
		got, err := db.EventsKnowledge(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Errorf("EventsKnowledge: %v, want three known", got)
		}
		for _, id := range ids {
			_, _, one, err := db.AnyEventJSON(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if one != want[id] || got[id] != want[id] {
				t.Errorf("%s: AnyEventJSON %d, EventsKnowledge %d, want %d", id, one, got[id], want[id])
			}
		}
		if got, err := db.EventsKnowledge(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("no IDs: %v %v", got, err)
		}
	})
}
