package homeserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
)

func TestShutdownAnswersWaitingSyncs(t *testing.T) {
	srv := hstest.Start(t, hstest.Options{Configure: func(c *config.Config) {
		// A shutdown that waited for the long-poll would hang the test.
		c.ShutdownTimeout = 10 * time.Minute
	}})
	token := registerForTest(t, srv)
	get := func(url string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	_, first := get(srv.ClientURL + "/_matrix/client/v3/sync")
	done := make(chan int, 1)
	go func() {
		status, _ := get(srv.ClientURL + "/_matrix/client/v3/sync?timeout=600000&since=" + first["next_batch"].(string))
		done <- status
	}()
	time.Sleep(200 * time.Millisecond) // let the sync start waiting
	srv.Stop()
	if status := <-done; status != http.StatusOK {
		t.Fatalf("the waiting sync got %d during shutdown, want 200", status)
	}
}

// registerForTest registers a user through the client API and returns its token.
func registerForTest(t *testing.T, srv *hstest.Server) string {
	t.Helper()
	post := func(body string) map[string]any {
		resp, err := http.Post(srv.ClientURL+"/_matrix/client/v3/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	session, _ := post(`{"username":"waiter","password":"pw"}`)["session"].(string)
	reg := post(`{"username":"waiter","password":"pw","auth":{"type":"m.login.dummy","session":"` + session + `"}}`)
	token, _ := reg["access_token"].(string)
	if token == "" {
		t.Fatalf("registration failed: %v", reg)
	}
	return token
}
