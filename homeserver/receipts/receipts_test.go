package receipts

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

// members has !r:hs with @a:hs and @b:other joined.
type members struct{}

func (members) IsJoined(_ context.Context, roomID, userID string) (bool, error) {
	return roomID == "!r:hs" && (userID == "@a:hs" || userID == "@b:other"), nil
}

func (members) JoinedMembers(_ context.Context, roomID string) ([]string, error) {
	if roomID != "!r:hs" {
		return nil, nil
	}
	return []string{"@a:hs", "@b:other"}, nil
}

type nobody struct{}

func (nobody) Wake(...string) {}

func TestRemoteReceipts(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, e.DSN, storage.Pool{MaxOpenConns: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s := New(Config{ServerName: "hs", DB: db, Rooms: members{}, Notifier: nobody{}})
			s.HandleEDU(ctx, "other", json.RawMessage(`{
				"!r:hs": {
					"m.read": {
						"@b:other": {"event_ids": ["$e1"], "data": {"ts": 5, "thread_id": "main"}},
						"@a:hs": {"event_ids": ["$forged"], "data": {"ts": 5}},
						"@c:other": {"event_ids": ["$bad"], "data": {"ts": 5, "thread_id": ""}}
					},
					"m.read.private": {"@b:other": {"event_ids": ["$private"], "data": {"ts": 5}}}
				},
				"!elsewhere:hs": {"m.read": {"@b:other": {"event_ids": ["$e2"], "data": {"ts": 5}}}}
			}`))
			rs, err := db.RoomReceipts(ctx, "@a:hs", []string{"!r:hs", "!elsewhere:hs"}, 1<<40)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 || rs[0].UserID != "@b:other" || rs[0].EventID != "$e1" || rs[0].ThreadID != "main" || rs[0].TS != 5 {
				t.Fatalf("stored: %+v", rs)
			}
			// Only the origin's users, never private receipts, only rooms
			// the origin is in, only well-formed thread IDs.
			if rs, _ := db.RoomReceipts(ctx, "@b:other", []string{"!r:hs"}, 1<<40); len(rs) != 1 {
				t.Fatalf("private receipt stored: %+v", rs)
			}
		})
	}
}

func TestThreadOf(t *testing.T) {
	for js, want := range map[string]string{
		`{"content":{"m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}}`:  "$root",
		`{"content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x"}}}`: "",
		`{"content":{"body":"plain"}}`:                                             "",
		`not json`:                                                                 "",
	} {
		if got := threadOf(js); got != want {
			t.Errorf("threadOf(%s) = %q, want %q", js, got, want)
		}
	}
}
