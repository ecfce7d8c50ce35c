package fedclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/federation/discovery"
	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/federation/xmatrix"
	"github.com/parley-chat/parley/homeserver/keys"
)

type oneKey struct {
	server, keyID string
	pub           ed25519.PublicKey
}

func (k oneKey) RequestKey(_ context.Context, server, keyID string) (ed25519.PublicKey, error) {
	if server == k.server && keyID == k.keyID {
		return k.pub, nil
	}
	return nil, errors.New("unknown key")
}

type fixture struct {
	client *Client
	hosts  map[string]*httptest.Server
	conns  atomic.Int32
}

// newFixture starts an HTTPS server per name, each verifying X-Matrix
// requests from "me.test" and answering per handler, and a client reaching
// them through static hosts.
func newFixture(t *testing.T, handler func(name string) http.HandlerFunc, timeout time.Duration, names ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := keys.CreateCA(caCert, caKey, "fedclient test CA"); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	f := &fixture{hosts: map[string]*httptest.Server{}}
	static := map[string]string{}
	for i, name := range names {
		cert, err := keys.IssueFromCA(caCert, caKey, filepath.Join(dir, fmt.Sprint(i, ".crt")), filepath.Join(dir, fmt.Sprint(i, ".key")), name)
		if err != nil {
			t.Fatal(err)
		}
		v := &xmatrix.Verifier{ServerName: name, Keys: oneKey{"me.test", "ed25519:me", key.Public().(ed25519.PublicKey)}}
		srv := httptest.NewUnstartedServer(v.Middleware(handler(name)))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.EnableHTTP2 = true
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				f.conns.Add(1)
			}
		}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		f.hosts[name] = srv
		static[name] = srv.Listener.Addr().String()
	}
	pool, _ := keys.LoadCertPool([]string{caCert})
	res, err := discovery.New(discovery.Config{StaticHosts: static, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.NewServers(nil, []string{"denied.test"})
	f.client, err = New(Config{ServerName: "me.test", KeyID: "ed25519:me", Key: key, Resolver: res, Policy: pol, Timeout: timeout, MaxResponseBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDo(t *testing.T) {
	f := newFixture(t, func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			origin, _ := xmatrix.Origin(r.Context())
			body, _ := io.ReadAll(r.Body)
			switch r.URL.Path {
			case "/echo":
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]string{
					"name": name, "origin": origin, "host": r.Host, "uri": r.RequestURI, "body": string(body),
					"ctype": r.Header.Get("Content-Type"), "proto": r.Proto,
				})
			case "/limited":
				w.WriteHeader(429)
				fmt.Fprint(w, `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":1500}`)
			case "/html":
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(503)
				fmt.Fprint(w, "<html>maintenance</html>")
			case "/big":
				fmt.Fprint(w, `"`+strings.Repeat("x", 2<<10)+`"`)
			case "/slow":
				time.Sleep(2 * time.Second)
			case "/notjson":
				fmt.Fprint(w, "hello")
			}
		}
	}, 500*time.Millisecond, "a.test", "a.test:443", "[::1]:9")
	ctx := context.Background()
	var out map[string]string

	if err := f.client.Do(ctx, "a.test", "PUT", "/echo?q=%2Fx%20y", map[string]any{"k": "<é>"}, &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "a.test", "origin": "me.test", "host": "a.test", "uri": "/echo?q=%2Fx%20y",
		"body": `{"k":"<é>"}`, "ctype": "application/json", "proto": "HTTP/2.0"}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", out, want)
	}
	// "a.test:443" is another server name than "a.test" and must not share
	// its connections.
	if err := f.client.Do(ctx, "a.test:443", "GET", "/echo", nil, &out); err != nil || out["name"] != "a.test:443" || out["host"] != "a.test:443" || out["body"] != "" {
		t.Fatalf("a.test:443: %v %v", out, err)
	}
	if err := f.client.Do(ctx, "[::1]:9", "GET", "/echo", nil, &out); err != nil || out["name"] != "[::1]:9" || out["host"] != "[::1]:9" {
		t.Fatalf("IPv6 name: %v %v", out, err)
	}
	// POST without a body sends an empty object; raw JSON goes as it is.
	if err := f.client.Do(ctx, "a.test", "POST", "/echo", nil, &out); err != nil || out["body"] != "{}" {
		t.Fatalf("empty POST: %v %v", out, err)
	}
	if err := f.client.Do(ctx, "a.test", "POST", "/echo", []byte(`{"b": 1}`), &out); err != nil || out["body"] != `{"b": 1}` {
		t.Fatalf("raw body: %v %v", out, err)
	}
	var raw json.RawMessage
	if err := f.client.Do(ctx, "a.test", "GET", "/echo", nil, &raw); err != nil || !json.Valid(raw) {
		t.Fatalf("raw out: %s %v", raw, err)
	}
	if err := f.client.Do(ctx, "a.test", "GET", "/echo", nil, nil); err != nil {
		t.Fatalf("discarded out: %v", err)
	}

	var e *Error
	if err := f.client.Do(ctx, "a.test", "GET", "/limited", nil, &out); !errors.As(err, &e) ||
		e.StatusCode != 429 || e.ErrCode != "M_LIMIT_EXCEEDED" || e.Message != "slow down" || e.RetryAfter != 1500*time.Millisecond {
		t.Fatalf("rate limited: %#v", err)
	}
	if err := f.client.Do(ctx, "a.test", "GET", "/html", nil, &out); !errors.As(err, &e) ||
		e.StatusCode != 503 || e.ErrCode != "" || !strings.Contains(e.Message, "maintenance") || e.RetryAfter != 7*time.Second {
		t.Fatalf("non-Matrix error: %#v", err)
	}
	if err := f.client.Do(ctx, "a.test", "GET", "/big", nil, &raw); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("oversized response: %v", err)
	}
	if err := f.client.Do(ctx, "a.test", "GET", "/notjson", nil, &raw); err == nil {
		t.Fatal("non-JSON response accepted")
	}
	start := time.Now()
	if err := f.client.Do(ctx, "a.test", "GET", "/slow", nil, nil); err == nil || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("timeout: %v after %s", err, time.Since(start))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.client.Do(cctx, "a.test", "GET", "/echo", nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}

	// Refused before any connection.
	before := f.conns.Load()
	for _, tc := range []struct {
		dest, method, path string
		body               any
	}{
		{"denied.test", "GET", "/echo", nil},
		{"me.test", "GET", "/echo", nil},
		{"bad name", "GET", "/echo", nil},
		{"a.test", "GET", "echo", nil},
		{"a.test", "PUT", "/echo", []byte("{not json")},
		{"a.test", "PUT", "/echo", func() {}},
	} {
		if err := f.client.Do(ctx, tc.dest, tc.method, tc.path, tc.body, nil); err == nil {
			t.Errorf("%+v: accepted", tc)
		}
	}
	if err := f.client.Do(ctx, "denied.test", "GET", "/", nil, nil); !errors.Is(err, policy.ErrDenied) {
		t.Fatalf("denied: %v", err)
	}
	if n := f.conns.Load(); n != before {
		t.Fatalf("%d connections made for refused requests", n-before)
	}
}

func TestServerNameEncoding(t *testing.T) {
	for _, name := range []string{"a.test", "a.test:443", "a.test:8448", "1.2.3.4", "1.2.3.4:80", "[::1]", "[::1]:8448"} {
		host := urlHost(name)
		// What net/http's transport passes to the dialer: host:port.
		addr := host
		got, err := serverNameFromAddr(addr)
		if err != nil || got != name {
			t.Errorf("%s -> %s -> %s %v", name, host, got, err)
		}
	}
}
