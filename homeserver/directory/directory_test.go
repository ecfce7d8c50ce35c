package directory

import (
	"context"
	"errors"
	"testing"
)

func TestOffsets(t *testing.T) {
	for _, n := range []int{0, 1, 250} {
		if got, err := decodeOffset(encodeOffset(n)); err != nil || got != n {
			t.Errorf("round trip %d: %d %v", n, got, err)
		}
	}
	for _, bad := range []string{"", "xyz", encodeOffset(-1)} {
		if _, err := decodeOffset(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEscapeLike(t *testing.T) {
	if got := escapeLike(`50%_\`); got != `50\%\_\\` {
		t.Fatalf("escapeLike: %q", got)
	}
}

func TestScore(t *testing.T) {
	exact := score(UserResult{UserID: "@bob:x", DisplayName: "Robert"}, []string{"bob"})
	prefix := score(UserResult{UserID: "@bobby:x"}, []string{"bob"})
	word := score(UserResult{UserID: "@u1:x", DisplayName: "Big Bobcat"}, []string{"bob"})
	inside := score(UserResult{UserID: "@kabob:x"}, []string{"bob"})
	if !(exact > prefix && prefix == word && word > inside) {
		t.Fatalf("scores: exact %d, prefix %d, word %d, inside %d", exact, prefix, word, inside)
	}
}

func TestPlainTopic(t *testing.T) {
	c := map[string]any{"topic": "fallback", "m.topic": map[string]any{"m.text": []any{
		map[string]any{"mimetype": "text/html", "body": "<i>rich</i>"}, map[string]any{"mimetype": "text/plain", "body": "plain"}}}}
	if got := plainTopic(c); got != "plain" {
		t.Fatalf("plainTopic: %q", got)
	}
	if got := plainTopic(map[string]any{"topic": "only"}); got != "only" {
		t.Fatalf("plainTopic without m.topic: %q", got)
	}
}

// Other servers' answers about spaces are reused for a while, per server,
// room and suggested_only; failures are not kept.
func TestHierarchyCache(t *testing.T) {
	s := &Service{}
	if _, err := s.askHierarchy(context.Background(), "a.test", "!s:a.test", false); err == nil {
		t.Fatal("asked without a way to ask")
	}
	calls, fail := 0, false
	s.SetRemoteHierarchy(func(_ context.Context, server, roomID string, _ bool) (*ServerHierarchy, error) {
		calls++
		if fail {
			return nil, errors.New("down")
		}
		return &ServerHierarchy{Room: HierarchyRoom{PublicRoom: PublicRoom{RoomID: roomID, Name: server}}}, nil
	})
	ask := func(server, roomID string, suggested bool) *ServerHierarchy {
		t.Helper()
		a, err := s.askHierarchy(context.Background(), server, roomID, suggested)
		if err != nil && !fail {
			t.Fatal(err)
		}
		return a
	}
	ask("a.test", "!s:a.test", false)
	if a := ask("a.test", "!s:a.test", false); calls != 1 || a.Room.RoomID != "!s:a.test" {
		t.Fatalf("%d calls, answer %+v", calls, a)
	}
	ask("a.test", "!s:a.test", true)
	ask("b.test", "!s:a.test", false)
	ask("a.test", "!t:a.test", false)
	if calls != 4 {
		t.Fatalf("%d calls, want 4", calls)
	}
	fail = true
	ask("c.test", "!s:a.test", false)
	ask("c.test", "!s:a.test", false)
	if calls != 6 {
		t.Fatalf("%d calls: a failure was kept", calls)
	}
}
