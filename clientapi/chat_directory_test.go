package clientapi_test

import (
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/parley-chat/parley/homeserver/config"
)

// TestPublicRoomDirectory covers /publicRooms (listing, filtering,
// paging) and /directory/list/room (visibility and who may change it).
func TestPublicRoomDirectory(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		cheese := chatRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public", Preset: "public_chat",
			Name: "Cheese Lovers", Topic: "Tasty cheese", RoomAliasName: "cheese"})
		chatJoin(t, bob, cheese)
		wine := chatRoom(t, bob, &mautrix.ReqCreateRoom{Visibility: "public", Preset: "public_chat", Name: "Wine",
			CreationContent: map[string]any{"type": "m.space"}})
		secret := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Secret cheese"})

		// Anyone may list the directory, without an account.
		status, body, _ := e.call(http.MethodGet, v3+"/publicRooms", "", nil)
		wantOK(t, "GET /publicRooms", status, body)
		chunk := chatList(body["chunk"])
		if len(chunk) != 2 || body["total_room_count_estimate"] != float64(2) {
			t.Fatalf("directory: %v", body)
		}
		first := chunk[0].(map[string]any)
		want := map[string]any{"room_id": string(cheese), "name": "Cheese Lovers", "topic": "Tasty cheese",
			"canonical_alias": "#cheese:localhost", "num_joined_members": float64(2), "world_readable": false,
			"guest_can_join": false, "join_rule": "public"}
		for k, v := range want {
			if first[k] != v {
				t.Errorf("directory entry %s = %v, want %v (%v)", k, first[k], v, first)
			}
		}
		if chatDig(chunk[1], "room_type") != "m.space" {
			t.Errorf("the space's room_type: %v", chunk[1])
		}

		// Filtering, by term and by room type, through mautrix.
		search := func(term string, types any) []string {
			t.Helper()
			body := chatPost(t, e, bob, v3+"/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": term, "room_types": types}})
			var ids []string
			for _, r := range chatList(body["chunk"]) {
				ids = append(ids, chatDig(r, "room_id").(string))
			}
			return ids
		}
		if got := search("CHEESE", nil); len(got) != 1 || got[0] != string(cheese) {
			t.Fatalf("search cheese: %v (the private room must not show)", got)
		}
		if got := search("nothing like it", nil); len(got) != 0 {
			t.Fatalf("search nothing: %v", got)
		}
		if got := search("", []any{nil}); len(got) != 1 || got[0] != string(cheese) {
			t.Fatalf("rooms without a type: %v", got)
		}
		if got := search("", []any{"m.space"}); len(got) != 1 || got[0] != string(wine) {
			t.Fatalf("spaces: %v", got)
		}

		// Paging.
		p1, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Limit: 1})
		if err != nil || len(p1.Chunk) != 1 || p1.NextBatch == "" || p1.PrevBatch != "" {
			t.Fatalf("page 1: %+v %v", p1, err)
		}
		p2, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Limit: 1, Since: p1.NextBatch})
		if err != nil || len(p2.Chunk) != 1 || p2.Chunk[0].RoomID == p1.Chunk[0].RoomID || p2.NextBatch != "" || p2.PrevBatch == "" {
			t.Fatalf("page 2: %+v %v", p2, err)
		}
		status, body, _ = e.call(http.MethodGet, v3+"/publicRooms?since=garbage", "", nil)
		wantError(t, "a bad since token", status, body, 400, "M_INVALID_PARAM")

		// Third-party networks: none is bridged here, so naming one is
		// refused; all networks are just this server's directory.
		status, body, _ = e.call(http.MethodPost, v3+"/publicRooms", bob.AccessToken, map[string]any{"third_party_instance_id": "nope"})
		wantError(t, "an unknown network", status, body, 400, "M_INVALID_PARAM")
		body = chatPost(t, e, bob, v3+"/publicRooms", map[string]any{"include_all_networks": true})
		if len(chatList(body["chunk"])) != 2 {
			t.Fatalf("all networks: %v", body)
		}
		status, body, _ = e.call(http.MethodPost, v3+"/publicRooms", bob.AccessToken,
			map[string]any{"third_party_instance_id": "irc", "include_all_networks": true})
		wantError(t, "include_all_networks with an instance", status, body, 400, "M_INVALID_PARAM")

		// Visibility.
		vis := func(roomID string) string {
			status, body, _ := e.call(http.MethodGet, v3+"/directory/list/room/"+url.PathEscape(roomID), "", nil)
			wantOK(t, "GET visibility", status, body)
			return body["visibility"].(string)
		}
		if vis(string(cheese)) != "public" || vis(string(secret)) != "private" {
			t.Fatal("visibilities")
		}
		status, body, _ = e.call(http.MethodGet, v3+"/directory/list/room/"+url.PathEscape("!nope:localhost"), "", nil)
		wantError(t, "an unknown room's visibility", status, body, 404, "M_NOT_FOUND")
		path := v3 + "/directory/list/room/" + url.PathEscape(string(cheese))
		status, body, _ = e.call(http.MethodPut, path, bob.AccessToken, map[string]any{"visibility": "private"})
		wantError(t, "unlisting without power", status, body, 403, "M_FORBIDDEN")
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"visibility": "private"})
		wantOK(t, "unlisting", status, body)
		if vis(string(cheese)) != "private" || len(search("cheese", nil)) != 0 {
			t.Fatal("the unlisted room is still listed")
		}
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{})
		wantOK(t, "listing (public is the default)", status, body)
		if vis(string(cheese)) != "public" {
			t.Fatal("not listed again")
		}
		status, body, _ = e.call(http.MethodPut, path, alice.AccessToken, map[string]any{"visibility": "hidden"})
		wantError(t, "a bad visibility", status, body, 400, "M_INVALID_PARAM")
	})
}

// TestUserDirectory covers /user_directory/search: who finds whom.
func TestUserDirectory(t *testing.T) {
	onEachEngine(t, nil, func(t *testing.T, e *env) {
		alice := e.register("alice", "password-alice")
		bob := e.register("bob", "password-bob")
		carol := e.register("carol", "password-carol")
		dave := e.register("dave", "password-dave")
		if err := bob.SetDisplayName(ctx, "Bobby Tables"); err != nil {
			t.Fatal(err)
		}
		public := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		chatJoin(t, bob, public)
		private := chatRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if _, err := alice.InviteUser(ctx, private, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatal(err)
		}
		chatJoin(t, carol, private)

		search := func(who string, token, term string, limit int) (ids []string, limited bool, names map[string]string) {
			t.Helper()
			req := map[string]any{"search_term": term}
			if limit > 0 {
				req["limit"] = limit
			}
			status, body, _ := e.call(http.MethodPost, v3+"/user_directory/search", token, req)
			wantOK(t, who+" searching "+term, status, body)
			names = map[string]string{}
			for _, r := range chatList(body["results"]) {
				id := chatDig(r, "user_id").(string)
				ids = append(ids, id)
				names[id], _ = chatDig(r, "display_name").(string)
			}
			return ids, body["limited"] == true, names
		}
		has := func(ids []string, id string) bool {
			for _, x := range ids {
				if x == id {
					return true
				}
			}
			return false
		}
		// dave shares no room with anyone: he finds the members of the
		// public room, not carol.
		if ids, _, _ := search("dave", dave.AccessToken, "alice", 0); !has(ids, "@alice:localhost") {
			t.Fatalf("dave does not find alice, who is in a public room: %v", ids)
		}
		if ids, _, names := search("dave", dave.AccessToken, "tables", 0); len(ids) != 1 || names["@bob:localhost"] != "Bobby Tables" {
			t.Fatalf("dave searching bob's display name: %v %v", ids, names)
		}
		if ids, _, _ := search("dave", dave.AccessToken, "carol", 0); len(ids) != 0 {
			t.Fatalf("dave finds carol, who is only in a private room: %v", ids)
		}
		// alice shares the private room with carol.
		if ids, _, _ := search("alice", alice.AccessToken, "CAROL", 0); !has(ids, "@carol:localhost") {
			t.Fatalf("alice does not find carol: %v", ids)
		}
		if ids, _, _ := search("alice", alice.AccessToken, "dave", 0); len(ids) != 0 {
			t.Fatalf("alice finds dave, who is in no room: %v", ids)
		}
		// limited.
		ids, limited, _ := search("alice", alice.AccessToken, "localhost", 1)
		if len(ids) != 1 || !limited {
			t.Fatalf("limit 1: %v limited=%v", ids, limited)
		}
		status, body, _ := e.call(http.MethodPost, v3+"/user_directory/search", alice.AccessToken, map[string]any{})
		wantError(t, "a search without a term", status, body, 400, "M_BAD_JSON")
		// mautrix's call works too.
		if resp, err := dave.SearchUserDirectory(ctx, "alice", 5); err != nil || len(resp.Results) != 1 || resp.Results[0].UserID != alice.UserID {
			t.Fatalf("mautrix search: %+v %v", resp, err)
		}
	})
}

// TestUserDirectoryAllLocalUsers checks user_directory.search_all_local_users.
func TestUserDirectoryAllLocalUsers(t *testing.T) {
	onEachEngine(t, func(c *config.Config) { c.UserDirectory.SearchAllLocalUsers = true }, func(t *testing.T, e *env) {
		e.register("hermit", "password-hermit")
		dave := e.register("dave", "password-dave")
		status, body, _ := e.call(http.MethodPost, v3+"/user_directory/search", dave.AccessToken, map[string]any{"search_term": "herm"})
		wantOK(t, "search", status, body)
		if res := chatList(body["results"]); len(res) != 1 || chatDig(res[0], "user_id") != "@hermit:localhost" {
			t.Fatalf("a local user in no room: %v", body)
		}
	})
}
