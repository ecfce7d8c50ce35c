package xmatrix

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

func TestParseHeader(t *testing.T) {
	full := Params{Origin: "origin.hs.example.com", Destination: "destination.hs.example.com", Key: "ed25519:key1", Sig: "ABCDEF..."}
	noDest := full
	noDest.Destination = ""
	cases := []struct {
		name, header string
		want         Params
	}{
		{"spec example", `X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`, full},
		{"scheme case", `x-matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`, full},
		{"names case and order", `X-Matrix SIG="ABCDEF...",Key="ed25519:key1",DESTINATION="destination.hs.example.com",Origin="origin.hs.example.com"`, full},
		{"spaces and tabs", "X-Matrix   origin=\"origin.hs.example.com\" ,\tdestination = \"destination.hs.example.com\",  key=\"ed25519:key1\" , sig=\"ABCDEF...\"  ", full},
		{"unquoted tokens", `X-Matrix origin=origin.hs.example.com,destination=destination.hs.example.com,key="ed25519:key1",sig=ABCDEF...`, full},
		{"unquoted colon (old servers)", `X-Matrix origin=origin.hs.example.com,destination=destination.hs.example.com,key=ed25519:key1,sig=ABCDEF...`, full},
		{"escapes", `X-Matrix origin="origin.hs.\example.com",destination="destination.hs.example.com",key="ed25519:\k\e\y1",sig="ABCDEF..."`, full},
		{"no destination (old servers)", `X-Matrix origin="origin.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`, noDest},
		{"unknown parameters ignored", `X-Matrix origin="origin.hs.example.com",future="a, \"quoted\" thing",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...",x=y`, full},
		{"empty list elements", `X-Matrix ,origin="origin.hs.example.com",,destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...",`, full},
		{"ipv6 origin", `X-Matrix origin="[::1]:8448",key="ed25519:key1",sig="ABCDEF..."`, Params{Origin: "[::1]:8448", Key: "ed25519:key1", Sig: "ABCDEF..."}},
		{"base64 slashes unquoted", `X-Matrix origin=a.b,key=ed25519:k,sig=ab/+cd`, Params{Origin: "a.b", Key: "ed25519:k", Sig: "ab/+cd"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHeader(tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			again, err := ParseHeader(got.String())
			if err != nil || again != got {
				t.Fatalf("String() does not round-trip: %q -> %+v %v", got.String(), again, err)
			}
		})
	}
}

func TestParseHeaderMalformed(t *testing.T) {
	for _, h := range []string{
		``,
		`X-Matrix`,
		`X-Matrix `,
		`Bearer abc`,
		`X-Matrixorigin="a"`,
		`X-Matrix origin="a.b",key="ed25519:k"`, // no sig
		`X-Matrix origin="a.b",sig="x"`,         // no key
		`X-Matrix key="ed25519:k",sig="x"`,      // no origin
		`X-Matrix origin="",key="ed25519:k",sig="x"`,                   // empty origin
		`X-Matrix origin="a.b",destination="",key="ed25519:k",sig="x"`, // empty destination
		`X-Matrix origin="a.b",key="ed25519:k",sig="x",origin="c.d"`,   // duplicate
		`X-Matrix origin="a.b",key="ed25519:k",sig="x",ORIGIN="a.b"`,   // duplicate, other case
		`X-Matrix origin="a.b,key="ed25519:k",sig="x"`,                 // quote runs on
		`X-Matrix origin="a.b" key="ed25519:k",sig="x"`,                // missing comma
		`X-Matrix origin="a.b",key="ed25519:k",sig="x`,                 // unterminated
		`X-Matrix origin="a.b",key="ed25519:k",sig="x\`,                // dangling escape
		`X-Matrix origin=,key="ed25519:k",sig="x"`,                     // empty bare value
		`X-Matrix origin,key="ed25519:k",sig="x"`,                      // no value
		`X-Matrix =a.b,key="ed25519:k",sig="x"`,                        // no name
		"X-Matrix origin=\"a\x01b\",key=\"ed25519:k\",sig=\"x\"",       // control character
		`X-Matrix origin=a"b,key="ed25519:k",sig="x"`,                  // quote inside bare value
		`X-Matrix origin="a.b",key="ed25519:k",sig="x"` + strings.Repeat(" ", maxHeaderLen),
	} {
		if p, err := ParseHeader(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHeader(%q) = %+v, %v; want ErrMalformed", h, p, err)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(`X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`)
	f.Add(`X-Matrix origin=a,key=ed25519:k,sig=x,,`)
	f.Add(`X-Matrix origin="a\"b",key="k",sig="s"`)
	f.Fuzz(func(t *testing.T, h string) {
		p, err := ParseHeader(h)
		if err != nil {
			return
		}
		if p.Origin == "" || p.Key == "" || p.Sig == "" {
			t.Fatalf("accepted without required parameters: %+v", p)
		}
		// Values without quotes or backslashes survive formatting.
		if strings.ContainsAny(p.Origin+p.Destination+p.Key+p.Sig, "\"\\") {
			return
		}
		again, err := ParseHeader(p.String())
		if err != nil || again != p {
			t.Fatalf("round trip of %+v: %+v %v", p, again, err)
		}
	})
}

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	req := Request{
		Method: "PUT", URI: "/_matrix/federation/v1/send/txn1?x=%20y",
		Origin: "origin.example", Destination: "dest.example",
		Content: json.RawMessage(`{ "pdus": [], "b": 1, "a": "\u00e9" }`),
	}
	h, err := Sign(req, "ed25519:k1", key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin != req.Origin || p.Destination != req.Destination || p.Key != "ed25519:k1" {
		t.Fatalf("header %+v", p)
	}
	if err := Verify(req, p, pub); err != nil {
		t.Fatal(err)
	}

	// The signature is the spec's JSON signature over the request object:
	// matrix/event's independent implementation must accept it.
	signed, err := canonicaljson.Marshal(map[string]any{
		"method": req.Method, "uri": req.URI, "origin": req.Origin, "destination": req.Destination,
		"content":    req.Content,
		"signatures": map[string]map[string]string{req.Origin: {p.Key: p.Sig}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := event.VerifyJSON(req.Origin, p.Key, pub, signed); err != nil {
		t.Fatalf("event.VerifyJSON rejects the request signature: %v", err)
	}
	// And a signature made by event.SignJSON verifies here.
	unsigned, _ := canonicaljson.Marshal(map[string]any{
		"method": "GET", "uri": "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab", "origin": "o.example", "destination": "d.example",
	})
	bySignJSON, err := event.SignJSON("o.example", "ed25519:z", key, unsigned)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	_ = json.Unmarshal(bySignJSON, &parsed)
	getReq := Request{Method: "GET", URI: "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab", Origin: "o.example", Destination: "d.example"}
	if err := Verify(getReq, Params{Origin: "o.example", Key: "ed25519:z", Sig: parsed.Signatures["o.example"]["ed25519:z"]}, pub); err != nil {
		t.Fatalf("a SignJSON signature does not verify: %v", err)
	}

	tampered := []func(r *Request){
		func(r *Request) { r.Method = "POST" },
		func(r *Request) { r.URI += "&more" },
		func(r *Request) { r.Origin = "evil.example" },
		func(r *Request) { r.Destination = "other.example" },
		func(r *Request) { r.Content = json.RawMessage(`{"pdus":[],"b":2,"a":"é"}`) },
		func(r *Request) { r.Content = nil },
		func(r *Request) { r.Content = json.RawMessage(`{"pdus":[`) },
	}
	for i, f := range tampered {
		r := req
		f(&r)
		if err := Verify(r, p, pub); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampering %d: %v", i, err)
		}
	}
	// Key order and whitespace of the body do not matter: the content is
	// compared as canonical JSON.
	same := req
	same.Content = json.RawMessage(`{"a":"é","b":1,"pdus":[]}`)
	if err := Verify(same, p, pub); err != nil {
		t.Fatalf("re-encoded body: %v", err)
	}
	if err := Verify(req, p, testKey(2).Public().(ed25519.PublicKey)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong key: %v", err)
	}
	bad := p
	bad.Sig = "!!!"
	if err := Verify(req, bad, pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("garbage sig: %v", err)
	}
	if _, err := Sign(req, "curve:k", key); err == nil {
		t.Fatal("signed with a non-ed25519 key ID")
	}
}

// staticKeys is a KeySource over fixed keys.
type staticKeys map[string]ed25519.PublicKey

func (s staticKeys) RequestKey(_ context.Context, server, keyID string) (ed25519.PublicKey, error) {
	if k, ok := s[server+" "+keyID]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("no key %s of %s", keyID, server)
}

func TestMiddleware(t *testing.T) {
	key := testKey(3)
	pol, err := policy.NewServers(nil, []string{"denied.example"})
	if err != nil {
		t.Fatal(err)
	}
	keys := staticKeys{
		"origin.example ed25519:a": key.Public().(ed25519.PublicKey),
		"denied.example ed25519:a": key.Public().(ed25519.PublicKey),
	}
	v := &Verifier{ServerName: "dest.example", Keys: keys, Policy: pol}
	handler := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin, _ := Origin(r.Context())
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", origin, body)
	}))
	srv := httptest.NewServer(handler)
	defer srv.Close()

	send := func(method, uri, body string, auth ...string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srv.URL+uri, rd)
		for _, a := range auth {
			req.Header.Add("Authorization", a)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	sign := func(origin, dest, method, uri, body string) string {
		t.Helper()
		r := Request{Method: method, URI: uri, Origin: origin, Destination: dest}
		if body != "" {
			r.Content = json.RawMessage(body)
		}
		h, err := Sign(r, "ed25519:a", key)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	const uri = "/_matrix/federation/v1/thing/%24ev?a=b%20c"
	body := `{"x": 1}`

	if code, got := send("PUT", uri, body, sign("origin.example", "dest.example", "PUT", uri, body)); code != 200 || got != "origin.example "+body {
		t.Fatalf("good request: %d %s", code, got)
	}
	if code, got := send("GET", uri, "", sign("origin.example", "dest.example", "GET", uri, "")); code != 200 || got != "origin.example " {
		t.Fatalf("good GET: %d %s", code, got)
	}
	// Old servers leave out destination; the signed JSON still has ours.
	noDest := sign("origin.example", "dest.example", "GET", uri, "")
	noDest = strings.Replace(noDest, `,destination="dest.example"`, "", 1)
	if code, got := send("GET", uri, "", noDest); code != 200 {
		t.Fatalf("no destination: %d %s", code, got)
	}
	// Two headers (two keys of one sender) both verifying pass.
	if code, got := send("GET", uri, "", sign("origin.example", "dest.example", "GET", uri, ""), sign("origin.example", "dest.example", "GET", uri, "")); code != 200 {
		t.Fatalf("two headers: %d %s", code, got)
	}

	refused := []struct {
		name, method, body string
		auth               []string
		status             int
		errcode            string
	}{
		{"missing header", "GET", "", nil, 401, "M_UNAUTHORIZED"},
		{"other scheme", "GET", "", []string{"Bearer abc"}, 401, "M_UNAUTHORIZED"},
		{"malformed", "GET", "", []string{`X-Matrix origin="origin.example"`}, 401, "M_UNAUTHORIZED"},
		{"wrong destination", "GET", "", []string{sign("origin.example", "other.example", "GET", uri, "")}, 401, "M_UNAUTHORIZED"},
		{"tampered body", "PUT", `{"x": 2}`, []string{sign("origin.example", "dest.example", "PUT", uri, body)}, 401, "M_UNAUTHORIZED"},
		{"body added", "PUT", body, []string{sign("origin.example", "dest.example", "PUT", uri, "")}, 401, "M_UNAUTHORIZED"},
		{"not JSON", "PUT", `{"x":`, []string{sign("origin.example", "dest.example", "PUT", uri, body)}, 401, "M_UNAUTHORIZED"},
		{"wrong method", "POST", "", []string{sign("origin.example", "dest.example", "GET", uri, "")}, 401, "M_UNAUTHORIZED"},
		{"other uri", "GET", "", []string{sign("origin.example", "dest.example", "GET", uri+"&d=e", "")}, 401, "M_UNAUTHORIZED"},
		{"unknown origin", "GET", "", []string{sign("unknown.example", "dest.example", "GET", uri, "")}, 401, "M_UNAUTHORIZED"},
		{"invalid origin", "GET", "", []string{strings.Replace(sign("origin.example", "dest.example", "GET", uri, ""), "origin.example", "bad name", 1)}, 401, "M_UNAUTHORIZED"},
		{"origin is us", "GET", "", []string{sign("dest.example", "dest.example", "GET", uri, "")}, 401, "M_UNAUTHORIZED"},
		{"second header bad", "GET", "", []string{sign("origin.example", "dest.example", "GET", uri, ""), sign("origin.example", "dest.example", "GET", "/x", "")}, 401, "M_UNAUTHORIZED"},
		{"headers disagree", "GET", "", []string{sign("origin.example", "dest.example", "GET", uri, ""), sign("denied.example", "dest.example", "GET", uri, "")}, 401, "M_UNAUTHORIZED"},
		{"denied origin", "GET", "", []string{sign("denied.example", "dest.example", "GET", uri, "")}, 403, "M_FORBIDDEN"},
	}
	for _, tc := range refused {
		code, got := send(tc.method, uri, tc.body, tc.auth...)
		var e struct{ Errcode string }
		_ = json.Unmarshal([]byte(got), &e)
		if code != tc.status || e.Errcode != tc.errcode {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, got, tc.status, tc.errcode)
		}
	}
}
