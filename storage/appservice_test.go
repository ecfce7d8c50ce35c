package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestAppServiceQueue(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {

		// Stream positions: a new service starts where it is told, and
		// a second init does not move it back.
		if err := db.InitAppServiceStream(ctx, "irc", 5); err != nil {
			t.Fatal(err)
		}
		if err := db.InitAppServiceStream(ctx, "irc", 1); err != nil {
			t.Fatal(err)
		}
		if err := db.InitAppServiceStream(ctx, "slack", 5); err != nil {
			t.Fatal(err)
		}

		// Events read back by stream range, in order.
		var evs []*EventRow
		for i := int64(1); i <= 10; i++ {
			evs = append(evs, &EventRow{EventID: fmt.Sprintf("$e%d", i), RoomID: "!r:x", Type: "m.room.message",
				Sender: "@a:x", Depth: i, StreamPos: i, JSON: "{}"})
		}
		if err := db.WithTx(ctx, func(tx *Tx) error { return db.InsertEvents(ctx, tx, evs) }); err != nil {
			t.Fatal(err)
		}
		rows, err := db.StreamEvents(ctx, 5, 9, 3)
		if err != nil || len(rows) != 3 || rows[0].EventID != "$e6" || rows[2].EventID != "$e8" {
			t.Fatalf("stream events: %v %v", rows, err)
		}

		// Queueing moves only the named services, and only forwards.
		items := []AppServiceItem{
			{ServiceID: "irc", Kind: AppServiceEvent, EventID: "$e6"},
			{ServiceID: "irc", Kind: AppServiceEphemeral, JSON: `{"type":"m.typing"}`},
			{ServiceID: "irc", Kind: AppServiceEvent, EventID: "$e7"},
		}
		if err := db.QueueAppServiceEvents(ctx, items, []string{"irc"}, 8); err != nil {
			t.Fatal(err)
		}
		if err := db.QueueAppServiceEvents(ctx, nil, []string{"irc"}, 6); err != nil {
			t.Fatal(err)
		}
		pos, err := db.AppServiceStreamPositions(ctx)
		if err != nil || pos["irc"] != 8 || pos["slack"] != 5 {
			t.Fatalf("positions: %v %v", pos, err)
		}
		q, err := db.AppServiceQueue(ctx, "irc", 2)
		if err != nil || len(q) != 2 || q[0].EventID != "$e6" || q[1].Kind != AppServiceEphemeral || q[1].JSON != `{"type":"m.typing"}` {
			t.Fatalf("queue: %+v %v", q, err)
		}

		// A transaction takes the items out of the queue; its ID and
		// body survive until it is acknowledged.
		if _, err := db.PendingAppServiceTxn(ctx, "irc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pending before: %v", err)
		}
		txn, err := db.StartAppServiceTxn(ctx, "irc", q[1].Seq, `{"events":[1]}`)
		if err != nil || txn.TxnID != "1" {
			t.Fatalf("start: %+v %v", txn, err)
		}
		p, err := db.PendingAppServiceTxn(ctx, "irc")
		if err != nil || p.TxnID != "1" || p.Body != `{"events":[1]}` {
			t.Fatalf("pending: %+v %v", p, err)
		}
		q, _ = db.AppServiceQueue(ctx, "irc", 10)
		if len(q) != 1 || q[0].EventID != "$e7" {
			t.Fatalf("queue after start: %+v", q)
		}
		if err := db.CompleteAppServiceTxn(ctx, "irc", "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PendingAppServiceTxn(ctx, "irc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pending after completion: %v", err)
		}
		txn, err = db.StartAppServiceTxn(ctx, "irc", q[0].Seq, `{}`)
		if err != nil || txn.TxnID != "2" {
			t.Fatalf("second transaction: %+v %v", txn, err)
		}
		// Ephemeral items queue on their own.
		if err := db.QueueAppServiceItems(ctx, []AppServiceItem{{ServiceID: "slack", Kind: AppServiceEphemeral, JSON: "{}"}}); err != nil {
			t.Fatal(err)
		}
		if q, _ := db.AppServiceQueue(ctx, "slack", 10); len(q) != 1 {
			t.Fatalf("slack queue: %+v", q)
		}

		// Network directories.
		for _, r := range []string{"!b:x", "!a:x"} {
			if err := db.SetAppServiceRoomPublished(ctx, "irc", "libera", r, true); err != nil {
				t.Fatal(err)
			}
		}
		_ = db.SetAppServiceRoomPublished(ctx, "irc", "libera", "!a:x", true) // twice is harmless
		_ = db.SetAppServiceRoomPublished(ctx, "irc", "oftc", "!c:x", true)
		if err := db.SetAppServiceRoomPublished(ctx, "irc", "libera", "!b:x", false); err != nil {
			t.Fatal(err)
		}
		got, err := db.AppServicePublishedRooms(ctx, "irc", "libera")
		if err != nil || len(got) != 1 || got[0].RoomID != "!a:x" {
			t.Fatalf("libera directory: %+v %v", got, err)
		}
		all, _ := db.AppServicePublishedRooms(ctx, "", "")
		if len(all) != 2 {
			t.Fatalf("all directories: %+v", all)
		}
	})
}
