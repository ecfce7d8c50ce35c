package federation_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
)

// TestRemotePublicRooms: bob on hs2 lists and searches hs1's public room
// directory through his own server.
func TestRemotePublicRooms(t *testing.T) {
	_, hs2, alice, bob := twoServers(t)
	ctx := context.Background()
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Visibility: "public", Preset: "public_chat", Name: "Interagency lounge"}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Secret board"}); err != nil {
		t.Fatal(err)
	}
	list, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: "hs1.test"})
	if err != nil {
		t.Fatalf("remote directory: %v", err)
	}
	if len(list.Chunk) != 1 || list.Chunk[0].Name != "Interagency lounge" {
		t.Fatalf("remote directory: %+v", list.Chunk)
	}
	search := func(term string) []any {
		body := strings.NewReader(`{"filter":{"generic_search_term":"` + term + `"}}`)
		req, _ := http.NewRequest("POST", hs2.ClientURL+"/_matrix/client/v3/publicRooms?server=hs1.test", body)
		req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&page)
		if resp.StatusCode != 200 {
			t.Fatalf("remote directory search: %d %v", resp.StatusCode, page)
		}
		chunk, _ := page["chunk"].([]any)
		return chunk
	}
	if got := search("lounge"); len(got) != 1 {
		t.Fatalf("search for lounge: %v", got)
	}
	if got := search("secret"); len(got) != 0 {
		t.Fatalf("a private room in the remote directory: %v", got)
	}
}
