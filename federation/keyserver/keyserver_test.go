package keyserver

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/matrix/event"
)

func TestKeyServer(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	oldPub, _, _ := ed25519.GenerateKey(nil)
	now := time.UnixMilli(1_700_000_000_000)
	s := New(Config{
		ServerName: "me.test", KeyID: "ed25519:cur", Key: key, ValidityPeriod: 24 * time.Hour,
		OldKeys: []OldKey{{KeyID: "ed25519:old", Public: oldPub, ExpiredTS: 123}},
		Now:     func() time.Time { return now },
	})
	r := httputil.NewRouter()
	s.Register(r)
	srv := httptest.NewServer(r)
	defer srv.Close()

	get := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}
	for _, path := range []string{"/_matrix/key/v2/server", "/_matrix/key/v2/server/ed25519:cur", "/_matrix/key/v2/query/me.test"} {
		code, body := get("GET", path, "")
		if path == "/_matrix/key/v2/query/me.test" {
			var q struct {
				ServerKeys []json.RawMessage `json:"server_keys"`
			}
			_ = json.Unmarshal(body, &q)
			if len(q.ServerKeys) != 1 {
				t.Fatalf("query about ourselves: %s", body)
			}
			body = q.ServerKeys[0]
		}
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		if err := event.VerifyJSON("me.test", "ed25519:cur", key.Public().(ed25519.PublicKey), body); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := fmt.Sprintf(`"old_verify_keys":{"ed25519:old":{"expired_ts":123,"key":%q}},"server_name":"me.test","signatures"`, base64.RawStdEncoding.EncodeToString(oldPub))
		if !strings.Contains(string(body), want) || !strings.Contains(string(body), fmt.Sprintf(`"valid_until_ts":%d`, now.Add(24*time.Hour).UnixMilli())) {
			t.Fatalf("%s: %s", path, body)
		}
	}

	many := map[string]any{}
	for i := range maxQueryServers + 1 {
		many[fmt.Sprintf("s%d.test", i)] = map[string]any{}
	}
	manyJSON, _ := json.Marshal(map[string]any{"server_keys": many})
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/_matrix/key/v2/query", `{"server_keys":{}}`, 200, `{"server_keys":[]}`},
		{"POST", "/_matrix/key/v2/query", `{}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys":[]}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `nope`, 400, "M_NOT_JSON"},
		{"POST", "/_matrix/key/v2/query", string(manyJSON), 400, "M_BAD_JSON"},
		{"GET", "/_matrix/key/v2/query/x.test?minimum_valid_until_ts=soon", "", 400, "M_INVALID_PARAM"},
		{"GET", "/_matrix/key/v2/query/bad%20name", "", 200, `{"server_keys":[]}`},
		{"PUT", "/_matrix/key/v2/server", "", 405, "M_UNRECOGNIZED"},
	} {
		code, body := get(tc.method, tc.path, tc.body)
		if code != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, code, body)
		}
	}
}
