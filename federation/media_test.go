package federation_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
)

// TestRemoteMediaOverFederation: a user on hs2 downloads media uploaded on
// hs1; hs2 fetches it over federation once and then serves it from its
// cache, also after hs1 is gone.
func TestRemoteMediaOverFederation(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	content := bytes.Repeat([]byte("parley media "), 1000)
	up, err := alice.UploadBytesWithName(ctx, content, "text/plain", "notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	download := func() (int, []byte) {
		req, _ := http.NewRequest("GET", hs2.ClientURL+"/_matrix/client/v1/media/download/hs1.test/"+up.ContentURI.FileID, nil)
		req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if status, body := download(); status != 200 || !bytes.Equal(body, content) {
		t.Fatalf("remote download through hs2: %d, %d bytes", status, len(body))
	}
	hs1.Stop()
	if status, body := download(); status != 200 || !bytes.Equal(body, content) {
		t.Fatalf("cached remote download with hs1 down: %d, %d bytes", status, len(body))
	}
	// Unknown remote media is 404, not an error page.
	req, _ := http.NewRequest("GET", hs2.ClientURL+"/_matrix/client/v1/media/download/hs2.test/doesnotexist", nil)
	req.Header.Set("Authorization", "Bearer "+bob.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown media: %d", resp.StatusCode)
	}
}
