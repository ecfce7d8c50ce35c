package e2ee

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

type testKey struct {
	pub  string
	priv ed25519.PrivateKey
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{pub: base64.RawStdEncoding.EncodeToString(pub), priv: priv}
}

// sign signs obj as signer with key keyID and returns the signed JSON.
func (k testKey) sign(t *testing.T, obj any, signer, keyID string) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := event.SignJSON(signer, keyID, k.priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func deviceKeysObj(user, device string, k testKey) map[string]any {
	return map[string]any{
		"user_id":    user,
		"device_id":  device,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"curve25519:" + device: "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI",
			"ed25519:" + device:    k.pub,
		},
	}
}

func TestCheckDeviceKeys(t *testing.T) {
	const user, device = "@alice:example.org", "DEV1"
	k, other := newTestKey(t), newTestKey(t)
	good := k.sign(t, deviceKeysObj(user, device, k), user, "ed25519:"+device)

	canon, pub, err := CheckDeviceKeys(good, user, device)
	if err != nil {
		t.Fatalf("good keys refused: %v", err)
	}
	if pub != k.pub {
		t.Fatalf("ed25519 key %q, want %q", pub, k.pub)
	}
	if strings.Contains(string(canon), "unsigned") {
		t.Fatal("unsigned was kept")
	}
	// With unsigned data added by the client: still fine, and dropped.
	var withUnsigned map[string]any
	_ = json.Unmarshal(good, &withUnsigned)
	withUnsigned["unsigned"] = map[string]any{"device_display_name": "forged name"}
	raw, _ := json.Marshal(withUnsigned)
	if canon2, _, err := CheckDeviceKeys(raw, user, device); err != nil || string(canon2) != string(canon) {
		t.Fatalf("unsigned should be ignored and dropped: %v %s", err, canon2)
	}

	modified := map[string]any{}
	_ = json.Unmarshal(good, &modified)
	modified["keys"].(map[string]any)["curve25519:"+device] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	modifiedRaw, _ := json.Marshal(modified)

	noEd := deviceKeysObj(user, device, k)
	delete(noEd["keys"].(map[string]string), "ed25519:"+device)

	for name, tc := range map[string]struct {
		raw            []byte
		user, device   string
		want           error
		wantSubstrings string
	}{
		"wrong user":        {good, "@mallory:example.org", device, ErrInvalidParam, "user_id"},
		"wrong device":      {good, user, "DEV2", ErrInvalidParam, "device_id"},
		"signed by another": {other.sign(t, deviceKeysObj(user, device, k), user, "ed25519:"+device), user, device, ErrInvalidParam, "signed"},
		"claims another key": {other.sign(t, deviceKeysObj(user, device, other), "@alice:example.org", "ed25519:OTHER"),
			user, device, ErrInvalidParam, "signed"},
		"modified after signing": {modifiedRaw, user, device, ErrInvalidParam, "signed"},
		"unsigned":               {mustJSON(deviceKeysObj(user, device, k)), user, device, ErrBadJSON, "signatures"},
		"no ed25519 key":         {k.sign(t, noEd, user, "ed25519:"+device), user, device, ErrInvalidParam, "no ed25519"},
		"not an object":          {[]byte(`[1]`), user, device, ErrBadJSON, ""},
		"garbage key":            {k.sign(t, deviceKeysObj(user, device, testKey{pub: "!!!", priv: k.priv}), user, "ed25519:"+device), user, device, ErrInvalidParam, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := CheckDeviceKeys(tc.raw, tc.user, tc.device)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantSubstrings) {
				t.Fatalf("error %q does not mention %q", err, tc.wantSubstrings)
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestCheckOneTimeKey(t *testing.T) {
	const user, device = "@alice:example.org", "DEV1"
	k, other := newTestKey(t), newTestKey(t)
	signed := k.sign(t, map[string]any{"key": "zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs"}, user, "ed25519:"+device)
	alg, id, canon, err := CheckOneTimeKey("signed_curve25519:AAAAHg", signed, user, device, k.pub)
	if err != nil || alg != "signed_curve25519" || id != "AAAAHg" || len(canon) == 0 {
		t.Fatalf("good key: %v %q %q", err, alg, id)
	}
	if _, _, _, err := CheckOneTimeKey("curve25519:AAAA", []byte(`"zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs"`), user, device, ""); err != nil {
		t.Fatalf("plain key: %v", err)
	}
	bad := other.sign(t, map[string]any{"key": "zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs"}, user, "ed25519:"+device)
	for name, tc := range map[string]struct {
		keyName, pub string
		raw          []byte
		want         error
	}{
		"bad signature":      {"signed_curve25519:A", k.pub, bad, ErrInvalidParam},
		"no device key":      {"signed_curve25519:A", "", signed, ErrInvalidParam},
		"no key ID":          {"signed_curve25519", k.pub, signed, ErrInvalidParam},
		"number":             {"signed_curve25519:A", k.pub, []byte(`12`), ErrBadJSON},
		"object without key": {"signed_curve25519:A", k.pub, k.sign(t, map[string]any{"x": 1}, user, "ed25519:"+device), ErrBadJSON},
		"signed by the other user": {"signed_curve25519:A", k.pub,
			k.sign(t, map[string]any{"key": "abc"}, "@bob:example.org", "ed25519:"+device), ErrInvalidParam},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, _, err := CheckOneTimeKey(tc.keyName, tc.raw, user, device, tc.pub); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func crossSigningObj(user, usage string, k testKey) map[string]any {
	return map[string]any{"user_id": user, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + k.pub: k.pub}}
}

func TestCheckCrossSigningKey(t *testing.T) {
	const user = "@alice:example.org"
	master := newTestKey(t)
	k, err := checkCrossSigningKey(mustJSON(crossSigningObj(user, UsageMaster, master)), user, UsageMaster)
	if err != nil || k.PublicKey != master.pub {
		t.Fatalf("good master key: %v", err)
	}
	twoKeys := crossSigningObj(user, UsageMaster, master)
	twoKeys["keys"].(map[string]string)["ed25519:other"] = "other"
	mismatch := crossSigningObj(user, UsageMaster, master)
	mismatch["keys"] = map[string]string{"ed25519:" + master.pub: "something else"}
	for name, tc := range map[string]struct {
		obj   map[string]any
		user  string
		usage string
	}{
		"wrong user":          {crossSigningObj(user, UsageMaster, master), "@bob:example.org", UsageMaster},
		"wrong usage":         {crossSigningObj(user, UsageMaster, master), user, UsageSelfSigning},
		"two keys":            {twoKeys, user, UsageMaster},
		"name is not the key": {mismatch, user, UsageMaster},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := checkCrossSigningKey(mustJSON(tc.obj), tc.user, tc.usage); !errors.Is(err, ErrInvalidParam) {
				t.Fatalf("got %v, want ErrInvalidParam", err)
			}
		})
	}

	// The self-signing key must be signed by the master key.
	ssk := newTestKey(t)
	signed := master.sign(t, crossSigningObj(user, UsageSelfSigning, ssk), user, "ed25519:"+master.pub)
	if err := verifySigned(signed, user, "ed25519:"+master.pub, master.pub); err != nil {
		t.Fatalf("master signature: %v", err)
	}
	selfSigned := ssk.sign(t, crossSigningObj(user, UsageSelfSigning, ssk), user, "ed25519:"+master.pub)
	if err := verifySigned(selfSigned, user, "ed25519:"+master.pub, master.pub); err == nil {
		t.Fatal("a key signed by itself under the master key's ID verified")
	}
}

func TestSameSignedContent(t *testing.T) {
	const user, device = "@alice:example.org", "DEV1"
	k, ssk := newTestKey(t), newTestKey(t)
	a := k.sign(t, deviceKeysObj(user, device, k), user, "ed25519:"+device)
	b := ssk.sign(t, json.RawMessage(a), user, "ed25519:"+ssk.pub) // more signatures
	if !sameSignedContent(a, b) {
		t.Fatal("signatures should not matter")
	}
	other := k.sign(t, deviceKeysObj(user, "DEV2", k), user, "ed25519:"+device)
	if sameSignedContent(a, other) {
		t.Fatal("different keys compared equal")
	}
}

func TestBetterRoomKey(t *testing.T) {
	key := func(verified bool, fmi, fc int64) *storage.RoomKey {
		return &storage.RoomKey{IsVerified: verified, FirstMessageIndex: fmi, ForwardedCount: fc}
	}
	for _, tc := range []struct {
		name     string
		old, new *storage.RoomKey
		want     bool
	}{
		{"verified beats unverified", key(false, 0, 0), key(true, 5, 5), true},
		{"unverified never beats verified", key(true, 5, 5), key(false, 0, 0), false},
		{"lower first index wins", key(false, 5, 0), key(false, 3, 9), true},
		{"higher first index loses", key(false, 3, 0), key(false, 5, 0), false},
		{"lower forwarded count wins", key(true, 3, 2), key(true, 3, 1), true},
		{"higher forwarded count loses", key(true, 3, 1), key(true, 3, 2), false},
		{"tie keeps the stored key", key(true, 3, 1), key(true, 3, 1), false},
	} {
		if got := betterRoomKey(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestSignatureVisibility(t *testing.T) {
	self := storage.KeySignature{TargetUserID: "@bob:x", SignerUserID: "@bob:x"}
	cross := storage.KeySignature{TargetUserID: "@bob:x", SignerUserID: "@alice:x"}
	if !signatureVisible(self, "@carol:x") || !signatureVisible(self, "") {
		t.Fatal("self-signatures are public")
	}
	if !signatureVisible(cross, "@alice:x") {
		t.Fatal("the signer sees their own signature")
	}
	if signatureVisible(cross, "@bob:x") || signatureVisible(cross, "@carol:x") || signatureVisible(cross, "") {
		t.Fatal("user-signing signatures are for the signer only")
	}
}
