package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/keys"
)

// testCA issues certificates trusted by its pool.
type testCA struct {
	dir, cert, key string
	pool           *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	ca := &testCA{dir: dir, cert: filepath.Join(dir, "ca.crt"), key: filepath.Join(dir, "ca.key")}
	if err := keys.CreateCA(ca.cert, ca.key, "discovery test CA"); err != nil {
		t.Fatal(err)
	}
	ca.pool = x509.NewCertPool()
	pool, err := keys.LoadCertPool([]string{ca.cert})
	if err != nil {
		t.Fatal(err)
	}
	ca.pool = pool
	return ca
}

func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	c, err := keys.IssueFromCA(ca.cert, ca.key, filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key"), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsServer is a local HTTPS server presenting certificates for names,
// recording the SNI and Host of each request.
type tlsServer struct {
	*httptest.Server
	port  int
	mu    sync.Mutex
	sni   []string
	hosts []string
	conns atomic.Int32
}

func newTLSServer(t *testing.T, ca *testCA, handler http.HandlerFunc, names ...string) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	certs := map[string]*tls.Certificate{}
	for _, n := range names {
		c := ca.issue(t, n)
		certs[n] = &c
	}
	fallback := certs[names[0]]
	if c, ok := certs["127.0.0.1"]; ok {
		fallback = c
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.mu.Unlock()
		handler(w, r)
	}))
	s.TLS = &tls.Config{
		// Without SNI (the client connects to an IP address) crypto/tls
		// presents Certificates[0]: the IP certificate, else the first
		// name's.
		Certificates: []tls.Certificate{*fallback},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := certs[hello.ServerName]; ok {
				return c, nil
			}
			return fallback, nil
		},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.sni = append(s.sni, hello.ServerName)
			s.mu.Unlock()
			return nil, nil
		},
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	s.port, _ = strconv.Atoi(p)
	return s
}

func (s *tlsServer) seen() (sni, hosts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sni...), append([]string(nil), s.hosts...)
}

// testDNS answers from fixed records; every other name does not exist.
type testDNS struct {
	srv   map[string][]*net.SRV // "_service._proto.name"
	hosts map[string][]netip.Addr
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (d testDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	if r, ok := d.srv[key]; ok {
		return key, r, nil
	}
	return "", nil, notFound(key)
}

func (d testDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := d.hosts[host]; ok {
		return a, nil
	}
	return nil, notFound(host)
}

var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

func TestResolveWithoutDelegation(t *testing.T) {
	r, err := New(Config{DNS: testDNS{}, StaticHosts: map[string]string{"static.test": "10.9.8.7:1234"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		want Destination
	}{
		{"1.2.3.4", Destination{HostHeader: "1.2.3.4", TLSName: "1.2.3.4", Host: "1.2.3.4", Port: 8448}},
		{"1.2.3.4:5678", Destination{HostHeader: "1.2.3.4:5678", TLSName: "1.2.3.4", Host: "1.2.3.4", Port: 5678}},
		{"[2001:db8::1]", Destination{HostHeader: "[2001:db8::1]", TLSName: "2001:db8::1", Host: "2001:db8::1", Port: 8448}},
		{"[2001:db8::1]:443", Destination{HostHeader: "[2001:db8::1]:443", TLSName: "2001:db8::1", Host: "2001:db8::1", Port: 443}},
		{"example.test:8000", Destination{HostHeader: "example.test:8000", TLSName: "example.test", Host: "example.test", Port: 8000}},
		// No .well-known answers (the name does not resolve): SRV later.
		{"example.test", Destination{HostHeader: "example.test", TLSName: "example.test", Host: "example.test"}},
		{"static.test", Destination{HostHeader: "static.test", TLSName: "static.test", Host: "10.9.8.7", Port: 1234, Static: true}},
	}
	for _, tc := range cases {
		got, err := r.Resolve(context.Background(), tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		tc.want.ServerName = tc.name
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	if _, err := r.Resolve(context.Background(), "bad name"); err == nil {
		t.Fatal("invalid server name resolved")
	}
	for _, bad := range []string{"nohost", "x:0", ":80", "h:port"} {
		if _, err := New(Config{StaticHosts: map[string]string{"a.test": bad}}); err == nil {
			t.Errorf("static host %q accepted", bad)
		}
	}
}

func TestTargetsSRV(t *testing.T) {
	dns := testDNS{srv: map[string][]*net.SRV{
		"_matrix-fed._tcp.fed.test":  {{Target: "a.fed.test.", Port: 1}, {Target: "b.fed.test.", Port: 2}},
		"_matrix-fed._tcp.both.test": {{Target: "new.test.", Port: 3}},
		"_matrix._tcp.both.test":     {{Target: "old.test.", Port: 4}},
		"_matrix._tcp.old.test":      {{Target: "legacy.test.", Port: 5}},
		"_matrix-fed._tcp.none.test": {{Target: ".", Port: 0}},
	}}
	r, _ := New(Config{DNS: dns})
	cases := map[string][]Target{
		"fed.test":   {{"a.fed.test.", 1}, {"b.fed.test.", 2}},
		"both.test":  {{"new.test.", 3}},
		"old.test":   {{"legacy.test.", 5}},
		"plain.test": {{"plain.test", 8448}},
	}
	for host, want := range cases {
		got, err := r.Targets(context.Background(), Destination{Host: host})
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v %v, want %v", host, got, err, want)
		}
	}
	if _, err := r.Targets(context.Background(), Destination{Host: "none.test"}); err == nil {
		t.Error(`SRV target "." accepted`)
	}
	got, _ := r.Targets(context.Background(), Destination{Host: "fed.test", Port: 99})
	if fmt.Sprint(got) != "[fed.test:99]" {
		t.Errorf("known port: %v", got)
	}
}

func TestWellKnownDelegation(t *testing.T) {
	ca := newTestCA(t)
	var mu sync.Mutex
	answers := map[string]struct {
		status int
		body   string
		header http.Header
	}{}
	var requests atomic.Int32
	wk := newTLSServer(t, ca, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path == "/redirected" {
			fmt.Fprint(w, `{"m.server":"after-redirect.test:77"}`)
			return
		}
		if r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		a, ok := answers[r.Host]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		fmt.Fprint(w, a.body)
	}, "ip.test", "port.test", "srv.test", "bad.test", "redirect.test", "cache.test", "missing.test")
	set := func(host string, status int, body string, header http.Header) {
		mu.Lock()
		defer mu.Unlock()
		answers[host+":"+strconv.Itoa(wk.port)] = struct {
			status int
			body   string
			header http.Header
		}{status, body, header}
	}
	set("ip.test", 200, `{"m.server": "[2001:db8::5]"}`, nil)
	set("port.test", 200, `{"m.server": "delegated.test:1234"}`, nil)
	set("srv.test", 200, `{"m.server": "delegated-srv.test"}`, nil)
	set("bad.test", 200, `{"m.server": "not a name"}`, nil)
	set("redirect.test", 302, "", http.Header{"Location": {"/redirected"}})
	set("cache.test", 200, `{"m.server": "first.test:1"}`, http.Header{"Cache-Control": {"public, max-age=600"}})

	now := time.Unix(1_700_000_000, 0)
	var clock sync.Mutex
	dns := testDNS{
		hosts: map[string][]netip.Addr{},
		srv:   map[string][]*net.SRV{"_matrix-fed._tcp.delegated-srv.test": {{Target: "target.test.", Port: 9}}},
	}
	for _, h := range []string{"ip.test", "port.test", "srv.test", "bad.test", "redirect.test", "cache.test", "missing.test"} {
		dns.hosts[h] = loopback
	}
	r, err := New(Config{
		DNS: dns, RootCAs: ca.pool, WellKnownPort: wk.port, AllowPrivateAddresses: true,
		Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name string
		want Destination
	}{
		// 3.1: an IP literal delegate, default port, Host header the IP.
		{"ip.test", Destination{HostHeader: "[2001:db8::5]", TLSName: "2001:db8::5", Host: "2001:db8::5", Port: 8448}},
		// 3.2: a hostname with port.
		{"port.test", Destination{HostHeader: "delegated.test:1234", TLSName: "delegated.test", Host: "delegated.test", Port: 1234}},
		// 3.3: a hostname without port: SRV of the delegated name.
		{"srv.test", Destination{HostHeader: "delegated-srv.test", TLSName: "delegated-srv.test", Host: "delegated-srv.test"}},
		// Invalid answers and 404s mean no delegation.
		{"bad.test", Destination{HostHeader: "bad.test", TLSName: "bad.test", Host: "bad.test"}},
		{"missing.test", Destination{HostHeader: "missing.test", TLSName: "missing.test", Host: "missing.test"}},
		// Redirects are followed.
		{"redirect.test", Destination{HostHeader: "after-redirect.test:77", TLSName: "after-redirect.test", Host: "after-redirect.test", Port: 77}},
		{"cache.test", Destination{HostHeader: "first.test:1", TLSName: "first.test", Host: "first.test", Port: 1}},
	}
	for _, tc := range cases {
		got, err := r.Resolve(ctx, tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		tc.want.ServerName = tc.name
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	targets, err := r.Targets(ctx, Destination{Host: "delegated-srv.test"})
	if err != nil || fmt.Sprint(targets) != "[target.test.:9]" {
		t.Fatalf("SRV of the delegated name: %v %v", targets, err)
	}
	sni, _ := wk.seen()
	for _, s := range sni {
		if s == "" {
			t.Fatalf(".well-known fetched without SNI: %v", sni)
		}
	}

	// Answers are cached: valid ones for their max-age, invalid ones
	// for an hour.
	before := requests.Load()
	for _, tc := range cases {
		_, _ = r.Resolve(ctx, tc.name)
	}
	if requests.Load() != before {
		t.Fatalf("cached answers fetched again: %d requests", requests.Load()-before)
	}
	set("cache.test", 200, `{"m.server": "second.test:2"}`, nil)
	set("missing.test", 200, `{"m.server": "found.test:3"}`, nil)
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	advance(11 * time.Minute)
	if d, _ := r.Resolve(ctx, "cache.test"); d.HostHeader != "second.test:2" {
		t.Fatalf("max-age=600 not honoured: %+v", d)
	}
	if d, _ := r.Resolve(ctx, "missing.test"); d.HostHeader != "missing.test" {
		t.Fatalf("a 404 was not cached: %+v", d)
	}
	advance(time.Hour)
	if d, _ := r.Resolve(ctx, "missing.test"); d.HostHeader != "found.test:3" {
		t.Fatalf("a 404 was cached too long: %+v", d)
	}
}

func TestCachePeriod(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 24 * time.Hour},
		{http.Header{"Cache-Control": {"max-age=3600"}}, time.Hour},
		{http.Header{"Cache-Control": {"public, max-age=999999999"}}, 48 * time.Hour},
		{http.Header{"Cache-Control": {"max-age=1"}}, 5 * time.Minute},
		{http.Header{"Cache-Control": {"no-store"}}, 5 * time.Minute},
		{http.Header{"Expires": {now.Add(2 * time.Hour).UTC().Format(http.TimeFormat)}}, 2 * time.Hour},
		{http.Header{"Expires": {"garbage"}}, 24 * time.Hour},
	}
	for _, tc := range cases {
		if got := cachePeriod(tc.h, now); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestWellKnownUnreachableBacksOff(t *testing.T) {
	// Nothing listens on the port: the failure is cached briefly, then
	// for longer as failures repeat.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	now := time.Unix(1_700_000_000, 0)
	r, _ := New(Config{
		DNS: testDNS{hosts: map[string][]netip.Addr{"down.test": loopback}}, WellKnownPort: port, AllowPrivateAddresses: true,
		Now: func() time.Time { return now },
	})
	_, _ = r.Resolve(context.Background(), "down.test")
	e1 := r.wk.entries["down.test"]
	if e1.failures != 1 || e1.expires.Sub(now) != wellKnownFirstBackoff {
		t.Fatalf("first failure: %+v", e1)
	}
	now = e1.expires.Add(time.Second)
	_, _ = r.Resolve(context.Background(), "down.test")
	if e2 := r.wk.entries["down.test"]; e2.failures != 2 || e2.expires.Sub(now) != 2*wellKnownFirstBackoff {
		t.Fatalf("second failure: %+v", e2)
	}
}

func TestDialChecksCertificateAndSNI(t *testing.T) {
	ca := newTestCA(t)
	srv := newTLSServer(t, ca, func(w http.ResponseWriter, _ *http.Request) {}, "right.test", "127.0.0.1")
	dns := testDNS{
		hosts: map[string][]netip.Addr{"target.test.": loopback, "right.test": loopback},
		srv:   map[string][]*net.SRV{"_matrix-fed._tcp.right.test": {{Target: "target.test.", Port: uint16(srv.port)}}},
	}
	r, _ := New(Config{DNS: dns, RootCAs: ca.pool, AllowPrivateAddresses: true})
	ctx := context.Background()

	// SRV: connect to the target, but check the certificate and send SNI
	// for the server's own hostname.
	conn, err := r.Dial(ctx, Destination{ServerName: "right.test", TLSName: "right.test", Host: "right.test"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// An IP address is checked against the certificate's IP and sent
	// without SNI.
	conn, err = r.Dial(ctx, Destination{TLSName: "127.0.0.1", Host: "127.0.0.1", Port: srv.port})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	sni, _ := srv.seen()
	if fmt.Sprint(sni) != "[right.test ]" {
		t.Fatalf("SNI sent: %q", sni)
	}
	// A certificate for another name is refused.
	if _, err := r.Dial(ctx, Destination{TLSName: "wrong.test", Host: "127.0.0.1", Port: srv.port}); err == nil {
		t.Fatal("certificate for another name accepted")
	}
	// So is one from an unknown CA.
	r2, _ := New(Config{DNS: dns, AllowPrivateAddresses: true, RootCAs: x509.NewCertPool()})
	var unknownAuthority x509.UnknownAuthorityError
	if _, err := r2.Dial(ctx, Destination{TLSName: "right.test", Host: "127.0.0.1", Port: srv.port}); !errors.As(err, &unknownAuthority) {
		t.Fatalf("unknown CA: %v", err)
	}
}

func TestPrivateAddressesRefused(t *testing.T) {
	ca := newTestCA(t)
	srv := newTLSServer(t, ca, func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"m.server":"evil.test:1"}`)
	}, "evil.test", "127.0.0.1")
	dns := testDNS{hosts: map[string][]netip.Addr{
		"evil.test":  loopback,
		"mixed.test": {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("::1")},
	}}
	r, _ := New(Config{
		DNS: dns, RootCAs: ca.pool, WellKnownPort: srv.port,
		StaticHosts: map[string]string{"static.test": "127.0.0.1:" + strconv.Itoa(srv.port)},
	})
	ctx := context.Background()
	for _, d := range []Destination{
		{TLSName: "evil.test", Host: "evil.test", Port: srv.port},
		{TLSName: "mixed.test", Host: "mixed.test", Port: srv.port},
		{TLSName: "127.0.0.1", Host: "127.0.0.1", Port: srv.port},
		{TLSName: "::ffff:127.0.0.1", Host: "::ffff:127.0.0.1", Port: srv.port},
	} {
		if _, err := r.Dial(ctx, d); !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("%+v: %v", d, err)
		}
	}
	// .well-known is not fetched from a private address either.
	if d, _ := r.Resolve(ctx, "evil.test"); d.HostHeader != "evil.test" {
		t.Errorf("delegation followed from a private address: %+v", d)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("%d connections reached the private address", n)
	}

	// Static hosts are explicit and exempt.
	d, err := r.Resolve(ctx, "static.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Dial(ctx, d); errors.Is(err, ErrPrivateAddress) || err == nil {
		// The connection must be attempted (and fail on the certificate,
		// which is for other names than static.test).
		t.Fatalf("static host: %v", err)
	}
	if srv.conns.Load() == 0 {
		t.Fatal("static host not connected to")
	}
}
