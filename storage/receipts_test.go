package storage

import (
	"context"
	"errors"
	"testing"
)

func TestReceipts(t *testing.T) {
	e2eEngines(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		for _, m := range []Membership{
			{RoomID: "!r:hs", UserID: "@a:hs", Membership: "join", EventID: "$ja", StreamPos: 1},
			{RoomID: "!r:hs", UserID: "@b:hs", Membership: "join", EventID: "$jb", StreamPos: 2},
			{RoomID: "!other:hs", UserID: "@b:hs", Membership: "join", EventID: "$jo", StreamPos: 3},
			{RoomID: "!r:hs", UserID: "@late:hs", Membership: "join", EventID: "$jl", StreamPos: 50},
		} {
			if err := SetMembership(ctx, db, m); err != nil {
				t.Fatal(err)
			}
		}
		put := func(r Receipt) int64 {
			t.Helper()
			pos, err := db.PutReceipt(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			return pos
		}
		p1 := put(Receipt{RoomID: "!r:hs", UserID: "@b:hs", Type: "m.read", EventID: "$e10", EventStreamPos: 10, TS: 1})
		p2 := put(Receipt{RoomID: "!r:hs", UserID: "@b:hs", Type: ReceiptPrivate, EventID: "$e12", EventStreamPos: 12, TS: 2})
		p3 := put(Receipt{RoomID: "!other:hs", UserID: "@b:hs", Type: "m.read", EventID: "$o1", EventStreamPos: 11, TS: 3})
		if p1 <= 0 || p2 <= p1 || p3 <= p2 {
			t.Fatalf("positions %d %d %d", p1, p2, p3)
		}
		// The same event again, or an earlier one, changes nothing.
		if p := put(Receipt{RoomID: "!r:hs", UserID: "@b:hs", Type: "m.read", EventID: "$e10", EventStreamPos: 10, TS: 4}); p != 0 {
			t.Fatalf("same receipt again: position %d", p)
		}
		if p := put(Receipt{RoomID: "!r:hs", UserID: "@b:hs", Type: "m.read", EventID: "$e5", EventStreamPos: 5, TS: 5}); p != 0 {
			t.Fatalf("backwards receipt: position %d", p)
		}
		// A thread is a marker of its own.
		p4 := put(Receipt{RoomID: "!r:hs", UserID: "@b:hs", Type: "m.read", ThreadID: "$root", EventID: "$e20", EventStreamPos: 20, TS: 6})
		if p4 <= p3 {
			t.Fatalf("thread receipt position %d", p4)
		}

		// @a sees @b's public receipts in their shared room only.
		rs, err := db.ReceiptsChanged(ctx, "@a:hs", 0, p4, 100)
		if err != nil || len(rs) != 2 || rs[0].EventID != "$e10" || rs[1].ThreadID != "$root" {
			t.Fatalf("@a's changes: %+v %v", rs, err)
		}
		// @b sees their own private receipt too, and the other room.
		rs, err = db.ReceiptsChanged(ctx, "@b:hs", p1, p4, 100)
		if err != nil || len(rs) != 3 || rs[0].Type != ReceiptPrivate {
			t.Fatalf("@b's changes after p1: %+v %v", rs, err)
		}
		// A join after the response's event position does not count yet.
		if rs, err := db.ReceiptsChanged(ctx, "@late:hs", 0, p4, 49); err != nil || len(rs) != 0 {
			t.Fatalf("a join after the response: %+v %v", rs, err)
		}
		if rs, err := db.JoinedRoomsReceipts(ctx, "@a:hs", p4, 100); err != nil || len(rs) != 2 {
			t.Fatalf("@a's initial receipts: %+v %v", rs, err)
		}
		if rs, err := db.JoinedRoomsReceipts(ctx, "@b:hs", p2, 100); err != nil || len(rs) != 2 {
			t.Fatalf("@b's initial receipts up to p2: %+v %v", rs, err)
		}
		if rs, err := db.RoomReceipts(ctx, "@a:hs", []string{"!other:hs"}, p4); err != nil || len(rs) != 1 || rs[0].EventID != "$o1" {
			t.Fatalf("receipts of one room: %+v %v", rs, err)
		}

		// The latest main-timeline receipt: the private one, further along.
		r, err := db.LatestReadReceipt(ctx, "!r:hs", "@b:hs")
		if err != nil || r.EventID != "$e12" || r.EventStreamPos != 12 {
			t.Fatalf("latest: %+v %v", r, err)
		}
		put(Receipt{RoomID: "!r:hs", UserID: "@b:hs", Type: "m.read", ThreadID: "main", EventID: "$e15", EventStreamPos: 15, TS: 7})
		if r, err := db.LatestReadReceipt(ctx, "!r:hs", "@b:hs"); err != nil || r.EventID != "$e15" {
			t.Fatalf("latest after a main-thread receipt: %+v %v", r, err)
		}
		if _, err := db.LatestReadReceipt(ctx, "!r:hs", "@a:hs"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("latest without receipts: %v", err)
		}
	})
}

func TestPresenceStorage(t *testing.T) {
	e2eEngines(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		for _, m := range []Membership{
			{RoomID: "!r:hs", UserID: "@a:hs", Membership: "join", EventID: "$ja", StreamPos: 1},
			{RoomID: "!r:hs", UserID: "@b:other", Membership: "join", EventID: "$jb", StreamPos: 2},
		} {
			if err := SetMembership(ctx, db, m); err != nil {
				t.Fatal(err)
			}
		}
		put := func(p Presence) int64 {
			t.Helper()
			pos, err := db.PutPresence(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			return pos
		}
		p1 := put(Presence{UserID: "@b:other", Presence: "online", StatusMsg: "hi", LastActiveTS: 100, CurrentlyActive: true})
		put(Presence{UserID: "@stranger:hs", Presence: "online", LastActiveTS: 100})
		p3 := put(Presence{UserID: "@a:hs", Presence: "offline", LastActiveTS: 50})
		if ps, err := db.PresenceChanged(ctx, "@a:hs", 0, p3); err != nil || len(ps) != 2 || ps[0].UserID != "@b:other" || ps[1].UserID != "@a:hs" {
			t.Fatalf("changes seen by @a: %+v %v", ps, err)
		}
		if ps, err := db.RoommatesPresence(ctx, "@a:hs", p3); err != nil || len(ps) != 2 {
			t.Fatalf("roommates of @a: %+v %v", ps, err)
		}
		if ps, err := db.NewRoommatesPresence(ctx, "@a:hs", 1, 2, p3); err != nil || len(ps) != 0 {
			// No events table rows: only @a's own join counts, before 1.
			t.Fatalf("new roommates: %+v %v", ps, err)
		}
		if ps, err := db.NewRoommatesPresence(ctx, "@a:hs", 0, 2, p3); err != nil || len(ps) != 1 || ps[0].UserID != "@b:other" {
			t.Fatalf("new roommates through @a's join: %+v %v", ps, err)
		}
		if ok, err := db.ShareRoom(ctx, "@a:hs", "@b:other"); err != nil || !ok {
			t.Fatalf("share: %v %v", ok, err)
		}
		if ok, err := db.ShareRoom(ctx, "@a:hs", "@stranger:hs"); err != nil || ok {
			t.Fatalf("share with a stranger: %v %v", ok, err)
		}
		if ps, err := db.PresenceNotOffline(ctx); err != nil || len(ps) != 2 {
			t.Fatalf("not offline: %+v %v", ps, err)
		}
		if p, err := db.GetPresence(ctx, "@b:other"); err != nil || p.StatusMsg != "hi" || p.StreamPos != p1 || !p.CurrentlyActive {
			t.Fatalf("get: %+v %v", p, err)
		}
		if _, err := db.GetPresence(ctx, "@nobody:hs"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get unknown: %v", err)
		}
	})
}
