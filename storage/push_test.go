package storage

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"

	"github.com/parley-chat/parley/storage/storagetest"
)

// countsOf returns a user's counts as "room/thread" -> [notifications, highlights].
func countsOf(t *testing.T, db *DB, user string) map[string][2]int64 {
	t.Helper()
	rows, err := db.UnreadCounts(context.Background(), user, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int64{}
	for _, r := range rows {
		out[r.RoomID+"/"+r.ThreadID] = [2]int64{r.Notifications, r.Highlights}
	}
	return out
}

func notif(user, room, thread string, pos int64, highlight bool) PushNotification {
	return PushNotification{UserID: user, RoomID: room, EventID: "$e" + string(rune('a'+pos)), ThreadID: thread,
		StreamPos: pos, TS: pos * 1000, Actions: `["notify"]`, Highlight: highlight}
}

func TestPushCounts(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		const alice, bob, room, other = "@alice:x", "@bob:x", "!r:x", "!o:x"
		rec, err := db.RecordPush(ctx, []PushNotification{
			notif(alice, room, ThreadMain, 1, false),
			notif(alice, room, ThreadMain, 2, true),
			notif(bob, room, ThreadMain, 2, false),
			notif(alice, room, "$thread", 3, false),
			notif(alice, other, ThreadMain, 4, false),
		}, nil)
		if err != nil || !reflect.DeepEqual(rec.Changed, []string{alice, bob}) || len(rec.Inserted) != 5 {
			t.Fatalf("recorded %+v, %v", rec, err)
		}
		want := map[string][2]int64{room + "/main": {2, 1}, room + "/$thread": {1, 0}, other + "/main": {1, 0}}
		if got := countsOf(t, db, alice); !reflect.DeepEqual(got, want) {
			t.Fatalf("counts %v, want %v", got, want)
		}
		// Writing the same notifications again changes nothing.
		if rec, err := db.RecordPush(ctx, []PushNotification{notif(alice, room, ThreadMain, 1, false)}, nil); err != nil || len(rec.Changed) != 0 || len(rec.Inserted) != 0 {
			t.Fatalf("duplicate: %+v %v", rec, err)
		}
		// A main-timeline receipt at 1 leaves the highlight at 2 and the
		// thread alone.
		if ok, err := db.MarkPushRead(ctx, PushRead{UserID: alice, RoomID: room, ThreadID: ThreadMain, StreamPos: 1}); err != nil || !ok {
			t.Fatalf("mark main: %v %v", ok, err)
		}
		want[room+"/main"] = [2]int64{1, 1}
		if got := countsOf(t, db, alice); !reflect.DeepEqual(got, want) {
			t.Fatalf("after main receipt %v, want %v", got, want)
		}
		// Moving back changes nothing.
		if ok, err := db.MarkPushRead(ctx, PushRead{UserID: alice, RoomID: room, ThreadID: ThreadMain, StreamPos: 0}); err != nil || ok {
			t.Fatalf("backwards: %v %v", ok, err)
		}
		// An unthreaded receipt at 3 clears the room's main timeline and
		// thread, but not the other room, and not bob.
		if ok, err := db.MarkPushRead(ctx, PushRead{UserID: alice, RoomID: room, ThreadID: ThreadAll, StreamPos: 3}); err != nil || !ok {
			t.Fatalf("mark all: %v %v", ok, err)
		}
		if got := countsOf(t, db, alice); !reflect.DeepEqual(got, map[string][2]int64{other + "/main": {1, 0}}) {
			t.Fatalf("after unthreaded receipt %v", got)
		}
		if got := countsOf(t, db, bob); !reflect.DeepEqual(got, map[string][2]int64{room + "/main": {1, 0}}) {
			t.Fatalf("bob %v", got)
		}
		// A notification evaluated after the receipt that covers it does
		// not count; one after it does. A read in the same batch (the
		// user's own message) comes first.
		rec, err = db.RecordPush(ctx, []PushNotification{notif(alice, room, ThreadMain, 3, false), notif(alice, room, ThreadMain, 6, false),
			notif(bob, room, ThreadMain, 5, true)},
			[]PushRead{{UserID: bob, RoomID: room, ThreadID: ThreadMain, StreamPos: 4}})
		if err != nil || !reflect.DeepEqual(rec.Changed, []string{alice, bob}) {
			t.Fatalf("recorded %+v, %v", rec, err)
		}
		if got := countsOf(t, db, alice)[room+"/main"]; got != [2]int64{1, 0} {
			t.Fatalf("alice after late evaluation %v", got)
		}
		if got := countsOf(t, db, bob)[room+"/main"]; got != [2]int64{1, 1} {
			t.Fatalf("bob after his own read %v", got)
		}
		// Incremental reads see the rows changed after a position, zeros
		// included.
		rows, err := db.UnreadCounts(ctx, alice, 0)
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].RoomID+rows[i].ThreadID < rows[j].RoomID+rows[j].ThreadID })
		if len(rows) != 3 || rows[1].ThreadID != "$thread" || rows[1].Notifications != 0 {
			t.Fatalf("rows since 0: %+v", rows)
		}
		last, _ := db.StreamPosition(ctx, StreamPushCounts)
		if rows, _ := db.UnreadCounts(ctx, alice, last); len(rows) != 2 {
			t.Fatalf("rows since now: %+v", rows)
		}
		totals, err := db.TotalUnread(ctx, []string{alice, bob, "@nobody:x"})
		if err != nil || totals[alice] != 2 || totals[bob] != 1 || totals["@nobody:x"] != 0 {
			t.Fatalf("totals %v %v", totals, err)
		}

		// The notification list, newest first, with paging and highlights.
		ns, err := db.PushNotifications(ctx, alice, 0, 3, false)
		if err != nil || len(ns) != 3 || ns[0].StreamPos != 6 || ns[2].StreamPos != 3 {
			t.Fatalf("list %+v %v", ns, err)
		}
		ns, err = db.PushNotifications(ctx, alice, 3, 10, false)
		if err != nil || len(ns) != 2 || ns[0].StreamPos != 2 || !ns[0].Highlight || ns[0].Actions != `["notify"]` {
			t.Fatalf("second page %+v %v", ns, err)
		}
		if ns, _ := db.PushNotifications(ctx, alice, 0, 10, true); len(ns) != 1 || ns[0].StreamPos != 2 {
			t.Fatalf("highlights %+v", ns)
		}
		marks, err := db.ReadUpTo(ctx, alice, []string{room, other})
		if err != nil || marks[room][ThreadAll] != 3 || marks[room][ThreadMain] != 1 || len(marks[other]) != 0 {
			t.Fatalf("markers %v %v", marks, err)
		}
		if n, err := db.PrunePushNotifications(ctx, 2500); err != nil || n != 3 {
			t.Fatalf("pruned %d %v", n, err)
		}
		// The evaluation watermark only moves forward.
		if err := db.SetPushEvaluated(ctx, 7); err != nil {
			t.Fatal(err)
		}
		_ = db.SetPushEvaluated(ctx, 3)
		if p, err := db.StreamPosition(ctx, StreamPushEvaluated); err != nil || p != 7 {
			t.Fatalf("watermark %d %v", p, err)
		}
	})
}

func TestPushers(t *testing.T) {
	ctx := context.Background()
	eachEngine(t, func(t *testing.T, db *DB) {
		p := Pusher{UserID: "@a:x", AppID: "app", PushKey: "key", Kind: "http", AppDisplayName: "App", DeviceDisplayName: "Phone",
			Lang: "en", Data: `{"url":"https://gw/_matrix/push/v1/notify"}`, PushKeyTS: 100, DeviceID: "DEV"}
		if err := db.SetPusher(ctx, p, false); err != nil {
			t.Fatal(err)
		}
		p.Lang = "fr"
		if err := db.SetPusher(ctx, p, false); err != nil {
			t.Fatal(err)
		}
		ps, err := db.Pushers(ctx, "@a:x")
		if err != nil || len(ps) != 1 || ps[0] != p {
			t.Fatalf("pushers %+v %v", ps, err)
		}
		// Another user takes the pushkey: without append, it moves.
		q := p
		q.UserID = "@b:x"
		if err := db.SetPusher(ctx, q, false); err != nil {
			t.Fatal(err)
		}
		if ps, _ := db.Pushers(ctx, "@a:x", "@b:x"); len(ps) != 1 || ps[0].UserID != "@b:x" {
			t.Fatalf("after a takeover %+v", ps)
		}
		if err := db.SetPusher(ctx, p, true); err != nil {
			t.Fatal(err)
		}
		if ps, _ := db.Pushers(ctx, "@a:x", "@b:x"); len(ps) != 2 {
			t.Fatalf("with append %+v", ps)
		}
		if ok, err := db.DeletePusher(ctx, "@b:x", "app", "key"); err != nil || !ok {
			t.Fatalf("delete %v %v", ok, err)
		}
		if ok, _ := db.DeletePusher(ctx, "@b:x", "app", "key"); ok {
			t.Fatal("deleted twice")
		}
		if err := db.DeleteDevicePushers(ctx, "@a:x", []string{"DEV"}); err != nil {
			t.Fatal(err)
		}
		if ps, _ := db.Pushers(ctx, "@a:x"); len(ps) != 0 {
			t.Fatalf("after device deletion %+v", ps)
		}
	})
}

// BenchmarkRecordPush500 records one event's notifications for the 499
// other members of a 500-member room: what the push worker writes per
// message in such a room (one transaction).
//
//	go test ./storage -run '^$' -bench RecordPush500
func BenchmarkRecordPush500(b *testing.B) {
	for _, e := range storagetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			db, err := Open(context.Background(), e.DSN, Pool{MaxOpenConns: 8})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			pos := int64(0)
			ns := make([]PushNotification, 499)
			b.ResetTimer()
			for b.Loop() {
				pos++
				for i := range ns {
					ns[i] = PushNotification{UserID: fmt.Sprintf("@user%d:x", i), RoomID: "!big:x", EventID: fmt.Sprintf("$e%d", pos),
						ThreadID: ThreadMain, StreamPos: pos, TS: pos, Actions: `["notify"]`}
				}
				if _, err := db.RecordPush(ctx, ns, []PushRead{{UserID: "@sender:x", RoomID: "!big:x", ThreadID: ThreadMain, StreamPos: pos}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
