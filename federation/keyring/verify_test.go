package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

func seedKey(b byte) ed25519.PrivateKey {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return ed25519.NewKeyFromSeed(s)
}

func b64(k ed25519.PrivateKey) string {
	return base64.RawStdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
}

// response builds a key response for server and signs it with each
// signer (server name, key ID, key).
func response(t *testing.T, obj map[string]any, signers ...struct {
	server, keyID string
	key           ed25519.PrivateKey
}) []byte {
	t.Helper()
	raw, err := canonicaljson.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		if raw, err = event.SignJSON(s.server, s.keyID, s.key, raw); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}

type signer = struct {
	server, keyID string
	key           ed25519.PrivateKey
}

func TestVerifyResponse(t *testing.T) {
	k1, k2, notary := seedKey(1), seedKey(2), seedKey(3)
	base := func() map[string]any {
		return map[string]any{
			"server_name":     "o.test",
			"valid_until_ts":  int64(2_000_000_000_000),
			"verify_keys":     map[string]any{"ed25519:k1": map[string]string{"key": b64(k1)}, "curve25519:x": map[string]string{"key": "zzz"}},
			"old_verify_keys": map[string]any{"ed25519:k0": map[string]any{"key": b64(k2), "expired_ts": 5}},
		}
	}
	good := response(t, base(), signer{"o.test", "ed25519:k1", k1}, signer{"n.test", "ed25519:n", notary})
	r, err := verifyResponse(good, "o.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.keys) != 2 || r.keys["ed25519:k1"].expiredTS != 0 || r.keys["ed25519:k0"].expiredTS != 5 || r.validUntilTS != 2_000_000_000_000 {
		t.Fatalf("parsed %+v", r.keys)
	}
	// The stored form keeps only the server's own signature, and it still
	// verifies.
	var stored struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	_ = json.Unmarshal(r.canonical, &stored)
	if len(stored.Signatures) != 1 || stored.Signatures["o.test"] == nil {
		t.Fatalf("stored signatures %v", stored.Signatures)
	}
	if err := event.VerifyJSON("o.test", "ed25519:k1", k1.Public().(ed25519.PublicKey), r.canonical); err != nil {
		t.Fatal(err)
	}

	without := func(key string) map[string]any { m := base(); delete(m, key); return m }
	with := func(key string, v any) map[string]any { m := base(); m[key] = v; return m }
	tampered := base()
	cases := map[string][]byte{
		"other server":       response(t, with("server_name", "x.test"), signer{"o.test", "ed25519:k1", k1}),
		"no valid_until_ts":  response(t, without("valid_until_ts"), signer{"o.test", "ed25519:k1", k1}),
		"unsigned":           response(t, base()),
		"signed by notary":   response(t, base(), signer{"n.test", "ed25519:n", notary}),
		"signed by old key":  response(t, base(), signer{"o.test", "ed25519:k0", k2}),
		"unlisted key":       response(t, base(), signer{"o.test", "ed25519:k9", k2}),
		"wrong key":          response(t, base(), signer{"o.test", "ed25519:k1", k2}),
		"bad key":            response(t, with("verify_keys", map[string]any{"ed25519:k1": map[string]string{"key": "short"}}), signer{"o.test", "ed25519:k1", k1}),
		"old without expiry": response(t, with("old_verify_keys", map[string]any{"ed25519:k0": map[string]any{"key": b64(k2)}}), signer{"o.test", "ed25519:k1", k1}),
		"not JSON":           []byte(`{"server_name":`),
	}
	// Changed after signing.
	signed := response(t, tampered, signer{"o.test", "ed25519:k1", k1})
	var m map[string]any
	_ = json.Unmarshal(signed, &m)
	m["valid_until_ts"] = 9_000_000_000_000
	cases["tampered"], _ = json.Marshal(m)
	for name, raw := range cases {
		if _, err := verifyResponse(raw, "o.test"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestValidityRules(t *testing.T) {
	db, err := storage.Open(context.Background(), storagetest.SQLite(t), storage.Pool{MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.UnixMilli(1_700_000_000_000)
	own, ownOld := seedKey(7), seedKey(8)
	k := New(Config{
		ServerName: "me.test", Store: db, Now: func() time.Time { return now },
		OwnKeys: []OwnKey{{KeyID: "ed25519:cur", Public: own.Public().(ed25519.PublicKey)}, {KeyID: "ed25519:old", Public: ownOld.Public().(ed25519.PublicKey), ExpiredTS: 1000}},
	})
	ms := now.UnixMilli()
	day := (24 * time.Hour).Milliseconds()
	k1, k0 := seedKey(1), seedKey(2)
	store := func(validUntil int64, keys map[string]*entry) {
		t.Helper()
		if err := k.store(context.Background(), &keyResponse{serverName: "o.test", validUntilTS: validUntil, keys: keys, canonical: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Published valid for 30 days: trusted for 7 only.
	store(ms+30*day, map[string]*entry{
		"ed25519:k1": {key: k1.Public().(ed25519.PublicKey), validUntilTS: ms + 30*day},
		"ed25519:k0": {key: k0.Public().(ed25519.PublicKey), validUntilTS: ms + 30*day, expiredTS: ms - day},
	})
	cases := []struct {
		keyID string
		atTS  int64
		want  error
	}{
		{"ed25519:k1", ms, nil},
		{"ed25519:k1", ms + 6*day, nil},
		{"ed25519:k1", ms + 8*day, ErrKeyNotValid}, // the 7-day cap
		{"ed25519:k1", 0, nil},                     // room versions 1-4
		{"ed25519:k1", 1, nil},                     // long ago
		{"ed25519:k0", ms - 2*day, nil},            // before it expired
		{"ed25519:k0", ms - day, ErrKeyNotValid},   // at expiry
		{"ed25519:k0", 0, nil},
		{"ed25519:k9", ms, ErrUnknownKey},
	}
	for _, tc := range cases {
		if _, err := k.Lookup("o.test", tc.keyID, tc.atTS); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s at %d: %v, want %v", tc.keyID, tc.atTS, err, tc.want)
		}
	}
	// A replayed older response (shorter validity) does not undo a newer
	// one.
	store(ms+day, map[string]*entry{"ed25519:k0": {key: k0.Public().(ed25519.PublicKey), validUntilTS: ms + day}})
	if _, err := k.Lookup("o.test", "ed25519:k0", ms); !errors.Is(err, ErrKeyNotValid) {
		t.Fatalf("replay revived an expired key: %v", err)
	}
	// Our own keys need no fetching.
	for _, tc := range []struct {
		keyID string
		atTS  int64
		ok    bool
	}{{"ed25519:cur", ms + 100*day, true}, {"ed25519:old", 999, true}, {"ed25519:old", 1000, false}, {"ed25519:none", ms, false}} {
		if _, err := k.Lookup("me.test", tc.keyID, tc.atTS); (err == nil) != tc.ok {
			t.Errorf("own %s at %d: %v", tc.keyID, tc.atTS, err)
		}
	}
	if _, err := k.RequestKey(context.Background(), "me.test", "ed25519:old"); err == nil {
		t.Error("an expired own key signs requests")
	}
	// The database holds what memory holds.
	rows, err := db.ServerKeys(context.Background(), "o.test")
	if err != nil || len(rows) != 2 {
		t.Fatalf("stored rows %v %v", rows, err)
	}
}
