package clientapi_test

import (
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
)

// TestRelations covers reactions, edits, threads and references: bundled
// aggregations on /event, /messages, /context and /sync, the duplicate
// annotation check, redactions breaking relations, GET /relations paging
// and recursion, and GET /threads.
func TestRelations(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		carol := e.register("carol", "password-carol")
		room := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		chatJoin(t, bob, room)
		chatJoin(t, carol, room)

		root := chatText(t, alice, room, "hello")
		// Reactions: one per user and key.
		bobLike, err := bob.SendReaction(ctx, room, root, "👍")
		if err != nil {
			t.Fatal(err)
		}
		_, err = bob.SendReaction(ctx, room, root, "👍")
		wantCode(t, "a duplicate annotation", err, "M_DUPLICATE_ANNOTATION")
		if _, err := alice.SendReaction(ctx, room, root, "👍"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendReaction(ctx, room, root, "🎉"); err != nil {
			t.Fatal(err)
		}
		// Edits: two by the sender, one by someone else (not an edit).
		edit1 := chatRel(t, alice, room, "m.replace", root, "hello, world")
		edit2 := chatRel(t, alice, room, "m.replace", root, "hello, world!")
		chatRel(t, bob, room, "m.replace", root, "hijacked")
		// A thread, and a reference.
		t1 := chatRel(t, bob, room, "m.thread", root, "thread one")
		t2 := chatRel(t, bob, room, "m.thread", root, "thread two")
		t3 := chatRel(t, alice, room, "m.thread", root, "thread three")
		ref := chatSend(t, alice, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "see above",
			"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": root}})
		// Threads cannot start from an event that has a relation.
		_, err = bob.SendMessageEvent(ctx, room, mevent.EventMessage, map[string]any{"msgtype": "m.text", "body": "nested",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": t1}})
		wantCode(t, "a thread from a thread event", err, "M_UNKNOWN")

		checkBundle := func(what string, ev map[string]any, viewerParticipated bool) {
			t.Helper()
			rel := chatDig(ev, "unsigned", "m.relations")
			if chatDig(rel, "m.replace", "event_id") != string(edit2) {
				t.Errorf("%s: m.replace %v, want %s", what, chatDig(rel, "m.replace"), edit2)
			}
			if chatDig(rel, "m.replace", "content", "m.new_content", "body") != "hello, world!" {
				t.Errorf("%s: the edit is not served whole: %v", what, chatDig(rel, "m.replace"))
			}
			if c := chatDig(rel, "m.thread", "count"); c != float64(3) {
				t.Errorf("%s: thread count %v, want 3", what, c)
			}
			if chatDig(rel, "m.thread", "latest_event", "event_id") != string(t3) {
				t.Errorf("%s: thread latest %v, want %s", what, chatDig(rel, "m.thread", "latest_event", "event_id"), t3)
			}
			if chatDig(rel, "m.thread", "current_user_participated") != viewerParticipated {
				t.Errorf("%s: current_user_participated %v, want %v", what, chatDig(rel, "m.thread", "current_user_participated"), viewerParticipated)
			}
			if got := chatIDs(chatDig(rel, "m.reference", "chunk")); !chatSameIDs(got, ref) {
				t.Errorf("%s: references %v, want [%s]", what, got, ref)
			}
			if chatDig(rel, "m.annotation") != nil {
				t.Errorf("%s: annotations are not aggregated by servers: %v", what, rel)
			}
		}
		eventPath := chatRoomPath(room, "/event/"+chatEscape(root))
		chatIndexed(t, e, alice, room, root)
		checkBundle("/event (alice)", chatGet(t, e, alice, eventPath), true)
		checkBundle("/event (bob)", chatGet(t, e, bob, eventPath), true)
		checkBundle("/event (carol)", chatGet(t, e, carol, eventPath), false)
		msgs := chatGet(t, e, carol, chatRoomPath(room, "/messages?dir=b&limit=50"))
		checkBundle("/messages", chatFind(msgs["chunk"], root), false)
		ctxResp := chatGet(t, e, carol, chatRoomPath(room, "/context/"+chatEscape(root)+"?limit=2"))
		checkBundle("/context", ctxResp["event"].(map[string]any), false)
		filter := url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`)
		sync := chatGet(t, e, carol, v3+"/sync?filter="+filter)
		checkBundle("/sync", chatFind(chatDig(sync, "rooms", "join", string(room), "timeline", "events"), root), false)

		// mautrix reads the bundle into its own types.
		ev, err := carol.GetEvent(ctx, room, root)
		if err != nil {
			t.Fatal(err)
		}
		if r := ev.Unsigned.Relations; r == nil || r.LatestEdit == nil || r.LatestEdit.ID != edit2 || r.Thread.GetCount() != 3 ||
			r.Thread.GetLatestEvent() == nil || r.Thread.LatestEvent.ID != t3 || r.References == nil {
			t.Fatalf("mautrix's view of the bundle: %+v", ev.Unsigned.Relations)
		}

		// A redacted edit no longer counts; the previous edit is the latest.
		if _, err := alice.RedactEvent(ctx, room, edit2); err != nil {
			t.Fatal(err)
		}
		got := chatGet(t, e, carol, eventPath)
		if chatDig(got, "unsigned", "m.relations", "m.replace", "event_id") != string(edit1) {
			t.Fatalf("after redacting the latest edit: %v", chatDig(got, "unsigned", "m.relations", "m.replace"))
		}

		// Reactions: listed by /relations, and a redacted one disappears
		// (and may be sent again).
		reactions := func() []string {
			body := chatGet(t, e, carol, chatV1+"/rooms/"+chatEscape(room)+"/relations/"+chatEscape(root)+"/m.annotation/m.reaction")
			var keys []string
			for _, ev := range chatList(body["chunk"]) {
				keys = append(keys, chatDig(ev, "sender").(string)+" "+chatDig(ev, "content", "m.relates_to", "key").(string))
			}
			return keys
		}
		if got := reactions(); len(got) != 3 {
			t.Fatalf("reactions %v, want 3", got)
		}
		if _, err := bob.RedactEvent(ctx, room, bobLike.EventID); err != nil {
			t.Fatal(err)
		}
		if got := reactions(); len(got) != 2 || got[0] == "@bob:localhost 👍" || got[1] == "@bob:localhost 👍" {
			t.Fatalf("reactions after a redaction %v", got)
		}
		if _, err := bob.SendReaction(ctx, room, root, "👍"); err != nil {
			t.Fatalf("reacting again after a redaction: %v", err)
		}

		// /relations paging over the thread, newest first, then forwards.
		relPath := chatV1 + "/rooms/" + chatEscape(room) + "/relations/" + chatEscape(root) + "/m.thread"
		page1 := chatGet(t, e, carol, relPath+"?limit=2")
		if got := chatIDs(page1["chunk"]); !chatSameIDs(got, t3, t2) || page1["next_batch"] == nil || page1["prev_batch"] != nil {
			t.Fatalf("relations page 1: %v", page1)
		}
		page2 := chatGet(t, e, carol, relPath+"?limit=2&from="+url.QueryEscape(page1["next_batch"].(string)))
		if got := chatIDs(page2["chunk"]); !chatSameIDs(got, t1) || page2["next_batch"] != nil || page2["prev_batch"] == nil {
			t.Fatalf("relations page 2: %v", page2)
		}
		fwd := chatGet(t, e, carol, relPath+"/m.room.message?dir=f")
		if got := chatIDs(fwd["chunk"]); !chatSameIDs(got, t1, t2, t3) {
			t.Fatalf("relations forwards: %v", got)
		}
		if _, ok := fwd["recursion_depth"]; ok {
			t.Fatal("recursion_depth without recurse")
		}
		// Recursion: a reaction to a thread message relates to the root
		// only indirectly.
		deep, err := carol.SendReaction(ctx, room, t1, "👀")
		if err != nil {
			t.Fatal(err)
		}
		all := chatGet(t, e, carol, chatV1+"/rooms/"+chatEscape(room)+"/relations/"+chatEscape(root)+"?limit=100")
		if chatFind(all["chunk"], deep.EventID) != nil {
			t.Fatal("an indirect relation without recurse")
		}
		rec, err := carol.GetRelations(ctx, room, root, &mautrix.ReqGetRelations{Recurse: true, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ev := range rec.Chunk {
			found = found || ev.ID == deep.EventID
		}
		if !found || rec.RecursionDepth != 3 {
			t.Fatalf("recurse: depth %d, indirect relation found %v", rec.RecursionDepth, found)
		}

		// Threads list: the newest thread first, with its aggregation.
		root2 := chatText(t, carol, room, "another topic")
		t4 := chatRel(t, carol, room, "m.thread", root2, "carol's thread")
		threadsPath := chatV1 + "/rooms/" + chatEscape(room) + "/threads"
		th := chatGet(t, e, bob, threadsPath)
		if got := chatIDs(th["chunk"]); !chatSameIDs(got, root2, root) {
			t.Fatalf("threads: %v", got)
		}
		if chatDig(chatList(th["chunk"])[0], "unsigned", "m.relations", "m.thread", "latest_event", "event_id") != string(t4) {
			t.Fatalf("threads without bundled aggregations: %v", chatList(th["chunk"])[0])
		}
		p1 := chatGet(t, e, bob, threadsPath+"?limit=1")
		if got := chatIDs(p1["chunk"]); !chatSameIDs(got, root2) || p1["next_batch"] == nil {
			t.Fatalf("threads page 1: %v", p1)
		}
		p2 := chatGet(t, e, bob, threadsPath+"?limit=1&from="+url.QueryEscape(p1["next_batch"].(string)))
		if got := chatIDs(p2["chunk"]); !chatSameIDs(got, root) {
			t.Fatalf("threads page 2: %v", p2)
		}
		part := chatGet(t, e, bob, threadsPath+"?include=participated")
		if got := chatIDs(part["chunk"]); !chatSameIDs(got, root) {
			t.Fatalf("threads bob participated in: %v", got)
		}
		status, body, _ := e.call(http.MethodGet, threadsPath+"?include=some", bob.AccessToken, nil)
		wantError(t, "threads with a bad include", status, body, 400, "M_INVALID_PARAM")

		// Someone who may not see the parent learns nothing.
		dave := e.register("dave", "password-dave")
		status, body, _ = e.call(http.MethodGet, chatV1+"/rooms/"+chatEscape(room)+"/relations/"+chatEscape(root), dave.AccessToken, nil)
		wantError(t, "relations of an invisible event", status, body, 404, "M_NOT_FOUND")
		status, body, _ = e.call(http.MethodGet, threadsPath, dave.AccessToken, nil)
		wantError(t, "threads of a room one is not in", status, body, 403, "M_FORBIDDEN")
	})
}

// TestRelationsHistoryVisibility checks that children sent where a viewer
// may not read do not reach them.
func TestRelationsHistoryVisibility(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		room := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*mevent.Event{{
			Type: mevent.StateHistoryVisibility, StateKey: chatPtr(""),
			Content: mevent.Content{Parsed: &mevent.HistoryVisibilityEventContent{HistoryVisibility: mevent.HistoryVisibilityJoined}}}}})
		root := chatText(t, alice, room, "before bob")
		chatRel(t, alice, room, "m.thread", root, "also before bob")
		chatJoin(t, bob, room)
		status, body, _ := e.call(http.MethodGet, chatV1+"/rooms/"+chatEscape(room)+"/relations/"+chatEscape(root), bob.AccessToken, nil)
		wantError(t, "relations of an event from before joining", status, body, 404, "M_NOT_FOUND")
		// A reply bob can see, to a root he cannot, is his to read.
		late := chatRel(t, alice, room, "m.thread", root, "after bob")
		ev := chatGet(t, e, bob, chatRoomPath(room, "/event/"+chatEscape(late)))
		if ev["event_id"] != string(late) {
			t.Fatalf("bob cannot read a reply sent after he joined: %v", ev)
		}
		// alice sees the whole thread.
		chatIndexed(t, e, alice, room, root)
		got := chatGet(t, e, alice, chatRoomPath(room, "/event/"+chatEscape(root)))
		if c := chatDig(got, "unsigned", "m.relations", "m.thread", "count"); c != float64(2) {
			t.Fatalf("thread count for alice: %v", c)
		}
	})
}

func chatPtr[T any](v T) *T { return &v }
