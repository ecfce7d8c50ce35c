package clientapi_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	mid "maunium.net/go/mautrix/id"
)

// TestSearch covers POST /search on both engines' full-text indexes:
// matching, what a searcher may see (not what was said after they left,
// nor in rooms they never joined), ordering, filters, groups, context,
// paging, count and highlights.
func TestSearch(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		room := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Quantum physics"})
		chatJoin(t, bob, room)
		before := chatText(t, alice, room, "The Martians have landed in the park")
		chatText(t, bob, room, "no aliens here, only dogs")
		if _, err := bob.LeaveRoom(ctx, room); err != nil {
			t.Fatal(err)
		}
		after := chatText(t, alice, room, "More martians arrived after bob left")
		secret := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		hidden := chatText(t, alice, secret, "secret martians meeting")

		type result struct {
			ids        []string
			body       map[string]any
			nextBatch  string
			count      float64
			highlights []any
		}
		search := func(cli *mautrix.Client, req map[string]any, nextBatch string) result {
			t.Helper()
			path := v3 + "/search"
			if nextBatch != "" {
				path += "?next_batch=" + url.QueryEscape(nextBatch)
			}
			body := chatPost(t, e, cli, path, map[string]any{"search_categories": map[string]any{"room_events": req}})
			re, _ := chatDig(body, "search_categories", "room_events").(map[string]any)
			var r result
			r.body = re
			for _, res := range chatList(re["results"]) {
				r.ids = append(r.ids, chatDig(res, "result", "event_id").(string))
			}
			r.nextBatch, _ = re["next_batch"].(string)
			r.count, _ = re["count"].(float64)
			r.highlights = chatList(re["highlights"])
			return r
		}

		// alice sees both messages (newest first when asked), bob only the
		// one from before he left; nobody else sees the private room's.
		got := search(alice, map[string]any{"search_term": "martians", "order_by": "recent"}, "")
		if !chatSameIDs(got.ids, hidden, after, before) || got.count != 3 {
			t.Fatalf("alice's search: %v (count %v)", got.ids, got.count)
		}
		got = search(bob, map[string]any{"search_term": "martians"}, "")
		if !chatSameIDs(got.ids, before) || got.count != 1 {
			t.Fatalf("bob's search must not find what was said after he left: %v (count %v)", got.ids, got.count)
		}
		if len(got.highlights) == 0 || got.highlights[0] != "martians" {
			t.Fatalf("highlights: %v", got.highlights)
		}
		carol := e.register("carol", "password-carol")
		if got := search(carol, map[string]any{"search_term": "martians"}, ""); len(got.ids) != 0 || got.count != 0 {
			t.Fatalf("carol, in no room, finds %v", got.ids)
		}
		// Prefixes and several words; the words must all match.
		if got := search(alice, map[string]any{"search_term": "martian park"}, ""); !chatSameIDs(got.ids, before) {
			t.Fatalf("two words: %v", got.ids)
		}
		// Room names are searchable too, by key.
		got = search(alice, map[string]any{"search_term": "quantum", "keys": []string{"content.name"}}, "")
		if len(got.ids) != 1 || chatDig(chatList(got.body["results"])[0], "result", "type") != "m.room.name" {
			t.Fatalf("the room name: %v", got.body)
		}
		if got := search(alice, map[string]any{"search_term": "quantum", "keys": []string{"content.body"}}, ""); len(got.ids) != 0 {
			t.Fatalf("the room name under content.body: %v", got.ids)
		}
		// A filter by room, and groups.
		got = search(alice, map[string]any{"search_term": "martians", "filter": map[string]any{"rooms": []string{string(room)}},
			"groupings": map[string]any{"group_by": []any{map[string]any{"key": "room_id"}, map[string]any{"key": "sender"}}}}, "")
		if len(got.ids) != 2 {
			t.Fatalf("filtered by room: %v", got.ids)
		}
		if g := chatList(chatDig(got.body, "groups", "room_id", string(room), "results")); len(g) != 2 {
			t.Fatalf("room group: %v", got.body["groups"])
		}
		if g := chatList(chatDig(got.body, "groups", "sender", "@alice:localhost", "results")); len(g) != 2 {
			t.Fatalf("sender group: %v", got.body["groups"])
		}
		// Context with profiles.
		got = search(alice, map[string]any{"search_term": "landed", "event_context": map[string]any{"before_limit": 1, "after_limit": 1, "include_profile": true}}, "")
		res := chatList(got.body["results"])
		if len(res) != 1 {
			t.Fatalf("context search: %v", got.body)
		}
		c := chatDig(res[0], "context")
		if len(chatList(chatDig(c, "events_before"))) != 1 || len(chatList(chatDig(c, "events_after"))) != 1 ||
			chatDig(c, "start") == nil || chatDig(c, "profile_info", "@alice:localhost") == nil {
			t.Fatalf("context: %v", c)
		}
		// A redacted message is no longer found.
		if _, err := alice.RedactEvent(ctx, room, after); err != nil {
			t.Fatal(err)
		}
		if got := search(alice, map[string]any{"search_term": "arrived"}, ""); len(got.ids) != 0 {
			t.Fatalf("a redacted message is found: %v", got.ids)
		}

		// Paging, by rank and by recency.
		var sent []mid.EventID
		for i := range 5 {
			sent = append(sent, chatText(t, alice, room, fmt.Sprintf("pagination test %d", i)))
		}
		for _, order := range []string{"rank", "recent"} {
			seen := map[string]bool{}
			next := ""
			pages := 0
			for {
				got := search(alice, map[string]any{"search_term": "pagination", "order_by": order, "filter": map[string]any{"limit": 2}}, next)
				pages++
				for _, id := range got.ids {
					if seen[id] {
						t.Fatalf("%s: %s twice", order, id)
					}
					seen[id] = true
				}
				if got.count != 5 {
					t.Fatalf("%s: count %v", order, got.count)
				}
				if next = got.nextBatch; next == "" || pages > 5 {
					break
				}
			}
			if len(seen) != 5 || pages != 3 {
				t.Fatalf("%s: %d results in %d pages", order, len(seen), pages)
			}
		}
		status, body, _ := e.call(http.MethodPost, v3+"/search?next_batch=garbage", alice.AccessToken,
			map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x"}}})
		wantError(t, "a bad next_batch", status, body, 400, "M_INVALID_PARAM")
		status, body, _ = e.call(http.MethodPost, v3+"/search", alice.AccessToken,
			map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "order_by": "best"}}})
		wantError(t, "a bad order_by", status, body, 400, "M_INVALID_PARAM")

		// mautrix reads the answer.
		resp, err := alice.Search(ctx, &mautrix.ReqSearch{SearchTerm: "landed"})
		if err != nil || len(resp.Results) != 1 || resp.Results[0].Event.ID != before {
			t.Fatalf("mautrix search: %+v %v", resp, err)
		}
	})
}
