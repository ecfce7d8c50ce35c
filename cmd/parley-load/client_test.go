package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestRegistrationMAC(t *testing.T) {
	// Computed independently of Go, with OpenSSL (printf's \0 is a NUL byte):
	//
	//	printf 'abcdef0123\0loadtest-0\0hunter2\0notadmin' | openssl dgst -sha1 -hmac s3cret
	//	printf 'abcdef0123\0loadtest-0\0hunter2\0admin' | openssl dgst -sha1 -hmac s3cret
	//
	// Python's hmac.new(b"s3cret", b"abcdef0123\x00loadtest-0\x00hunter2\x00notadmin",
	// hashlib.sha1).hexdigest() gives the same first value.
	tests := []struct {
		admin bool
		want  string
	}{
		{false, "c9b3430ea1e4170a133b8acf8881101d8fe466a6"},
		{true, "7d7b011d547c9374c9b8854983e989d97457ffae"},
	}
	for _, tt := range tests {
		if got := registrationMAC("s3cret", "abcdef0123", "loadtest-0", "hunter2", tt.admin); got != tt.want {
			t.Errorf("admin=%v: mac %s, want %s", tt.admin, got, tt.want)
		}
	}
}

// TestRateLimitRetried checks that a 429 is slept off and retried, counted,
// and that only the final attempt's response is returned.
func TestRateLimitRetried(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":5}`))
			return
		}
		w.Write([]byte(`{"event_id":"$abc"}`))
	}))
	defer srv.Close()
	var limited atomic.Int64
	c := &client{hc: srv.Client(), base: srv.URL, limited: &limited}
	if _, err := c.send(context.Background(), "!r:x", "t1", map[string]string{"body": "hi"}); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || limited.Load() != 2 {
		t.Fatalf("calls %d, counted 429s %d; want 3 and 2", calls.Load(), limited.Load())
	}
}

// TestRegisterDummy checks the two-step User-Interactive Auth exchange.
func TestRegisterDummy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Username string            `json:"username"`
			Auth     map[string]string `json:"auth"`
		}
		if r.URL.Path != "/_matrix/client/v3/register" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if req.Auth == nil {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"session":"S1","flows":[{"stages":["m.login.recaptcha"]},{"stages":["m.login.dummy"]}],"params":{}}`))
			return
		}
		if req.Auth["type"] != "m.login.dummy" || req.Auth["session"] != "S1" {
			http.Error(w, "wrong auth", http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"user_id": "@" + req.Username + ":x", "access_token": "tok", "device_id": "D"})
	}))
	defer srv.Close()
	c := &client{hc: srv.Client(), base: srv.URL, limited: new(atomic.Int64)}
	s, err := c.registerDummy(context.Background(), "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if s.UserID != "@alice:x" || s.AccessToken != "tok" {
		t.Fatalf("session %+v", s)
	}
}
