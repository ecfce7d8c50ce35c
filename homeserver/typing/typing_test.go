package typing

import (
	"context"
	"encoding/json"
	"errors"
	gosync "sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/sync"
)

// fakeRooms has !r:hs with @a:hs, @b:hs and @c:other joined.
type fakeRooms struct{}

var joined = map[string]bool{"@a:hs": true, "@b:hs": true, "@c:other": true}

func (fakeRooms) IsJoined(_ context.Context, roomID, userID string) (bool, error) {
	return roomID == "!r:hs" && joined[userID], nil
}

func (fakeRooms) JoinedMembers(_ context.Context, roomID string) ([]string, error) {
	if roomID != "!r:hs" {
		return nil, nil
	}
	return []string{"@a:hs", "@b:hs", "@c:other"}, nil
}

func (f fakeRooms) JoinedAt(ctx context.Context, roomID, userID string) (int64, bool, error) {
	ok, _ := f.IsJoined(ctx, roomID, userID)
	return 1, ok, nil
}

type recorder struct {
	mu    gosync.Mutex
	wakes int
	edus  []typingEDU
	dests [][]string
}

func (r *recorder) Wake(...string) { r.mu.Lock(); r.wakes++; r.mu.Unlock() }

func (r *recorder) SendEDU(dests []string, _ string, content any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.edus = append(r.edus, content.(typingEDU))
	r.dests = append(r.dests, dests)
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wakes, len(r.edus)
}

// fill runs the extension for @b:hs from pos and returns the room's
// typing list, or nil when the room is not in the response.
func fill(t *testing.T, s *Service, since *sync.Token, from int64) []string {
	t.Helper()
	ext := extension{s}
	to, _ := ext.CurrentPos(context.Background())
	resp := &sync.Response{NextBatch: sync.Token{Events: 5}.String(), Rooms: sync.Rooms{Join: map[string]*sync.JoinedRoom{}}}
	if since == nil {
		resp.JoinedRoom("!r:hs") // an initial sync has every joined room
	}
	if _, err := ext.Fill(context.Background(), sync.Request{Viewer: rooms.Viewer{UserID: "@b:hs"}, Since: since}, from, to, resp); err != nil {
		t.Fatal(err)
	}
	jr, ok := resp.Rooms.Join["!r:hs"]
	if !ok || len(jr.Ephemeral.Events) == 0 {
		return nil
	}
	var ev typingEvent
	if err := json.Unmarshal(jr.Ephemeral.Events[0], &ev); err != nil || ev.Type != "m.typing" {
		t.Fatalf("event %s: %v", jr.Ephemeral.Events[0], err)
	}
	return ev.Content.UserIDs
}

func TestTyping(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	s := New(Config{ServerName: "hs", Rooms: fakeRooms{}, Notifier: rec})
	s.SetFederation(rec)
	start, _ := extension{s}.CurrentPos(ctx)
	if start < time.Now().Add(-time.Minute).UnixMilli() {
		t.Fatalf("positions start at %d, not at the clock", start)
	}

	if err := s.SetTyping(ctx, "!r:hs", "@x:hs", true, 0); !errors.Is(err, ErrForbidden) {
		t.Fatalf("typing outside the room: %v", err)
	}
	if err := s.SetTyping(ctx, "!r:hs", "@a:hs", true, 0); err != nil {
		t.Fatal(err)
	}
	if wakes, edus := rec.counts(); wakes != 1 || edus != 1 || rec.dests[0][0] != "other" || !rec.edus[0].Typing {
		t.Fatalf("wakes %d, EDUs %+v to %v", wakes, rec.edus, rec.dests)
	}
	pos, _ := extension{s}.CurrentPos(ctx)
	if got := fill(t, s, &sync.Token{}, start); len(got) != 1 || got[0] != "@a:hs" {
		t.Fatalf("incremental: %v", got)
	}
	if got := fill(t, s, &sync.Token{}, pos); got != nil {
		t.Fatalf("nothing new: %v", got)
	}
	// A renewal changes no list but is sent on, for other servers' timeouts.
	if err := s.SetTyping(ctx, "!r:hs", "@a:hs", true, time.Hour); err != nil {
		t.Fatal(err)
	}
	if p, _ := (extension{s}).CurrentPos(ctx); p != pos {
		t.Fatal("a renewal moved the position")
	}
	if wakes, edus := rec.counts(); wakes != 1 || edus != 2 {
		t.Fatalf("after a renewal: wakes %d, EDUs %d", wakes, edus)
	}

	// Remote typing: only the origin's own, joined users.
	s.HandleEDU(ctx, "other", json.RawMessage(`{"room_id":"!r:hs","user_id":"@c:other","typing":true}`))
	s.HandleEDU(ctx, "other", json.RawMessage(`{"room_id":"!r:hs","user_id":"@b:hs","typing":true}`))
	s.HandleEDU(ctx, "evil", json.RawMessage(`{"room_id":"!r:hs","user_id":"@c:other","typing":false}`))
	if got := s.Typing("!r:hs"); len(got) != 2 || got[0] != "@a:hs" || got[1] != "@c:other" {
		t.Fatalf("after EDUs: %v", got)
	}
	if got := fill(t, s, nil, 0); len(got) != 2 {
		t.Fatalf("initial: %v", got)
	}

	// Leaving ends typing; a short timeout expires on its own.
	s.MemberLeft("!r:hs", "@c:other")
	if err := s.SetTyping(ctx, "!r:hs", "@a:hs", true, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Typing("!r:hs")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still typing: %v", s.Typing("!r:hs"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := fill(t, s, &sync.Token{}, pos); got == nil || len(got) != 0 {
		t.Fatalf("the empty list after expiry: %v", got)
	}
	rec.mu.Lock()
	last := rec.edus[len(rec.edus)-1]
	rec.mu.Unlock()
	if last.Typing || last.UserID != "@a:hs" {
		t.Fatalf("the expiry was not sent on: %+v", last)
	}
}
