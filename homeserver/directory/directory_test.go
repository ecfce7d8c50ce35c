package directory

import "testing"

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
