package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
)

// Device keys, one-time keys and cross-signing keys are signed JSON objects
// ("Signing JSON" in the spec's appendices): the signature covers the
// canonical JSON of the object without its signatures and unsigned members,
// and is found under signatures → user ID → key ID. For device keys the
// "server name" slot of a server signature is the user ID and the key ID is
// "ed25519:<device ID>".

// decodeKey decodes an unpadded (or padded) base64 ed25519 public key.
func decodeKey(s string) (ed25519.PublicKey, error) {
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%q is not a base64 ed25519 public key", s)
	}
	return ed25519.PublicKey(raw), nil
}

// verifySigned checks that signer signed obj with the ed25519 key keyID
// (such as "ed25519:DEVICEID"), whose public key is pub in base64.
func verifySigned(obj []byte, signer, keyID, pub string) error {
	key, err := decodeKey(pub)
	if err != nil {
		return err
	}
	return event.VerifyJSON(signer, keyID, key, obj)
}

// canonical returns obj's canonical JSON, failing unless it is an object.
func canonical(obj []byte) ([]byte, error) {
	if t := bytes.TrimLeft(obj, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	return canonicaljson.Canonicalize(obj)
}

// withoutMembers returns obj's canonical JSON without the named top-level
// members.
func withoutMembers(obj []byte, names ...string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	for _, n := range names {
		delete(m, n)
	}
	return canonicaljson.Marshal(m)
}

// sameSignedContent reports whether two signed objects are the same apart
// from their signatures and unsigned data.
func sameSignedContent(a, b []byte) bool {
	ca, err1 := withoutMembers(a, "signatures", "unsigned")
	cb, err2 := withoutMembers(b, "signatures", "unsigned")
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// deviceKeysJSON is the shape of a device's identity keys.
type deviceKeysJSON struct {
	UserID     *string                      `json:"user_id"`
	DeviceID   *string                      `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// CheckDeviceKeys validates a device's identity keys uploaded by userID's
// device deviceID: the object must name that user and device, hold the
// device's ed25519 key "ed25519:<device ID>", and be signed by that key.
// It returns the keys as canonical JSON without unsigned (which the server
// fills in itself) and the device's ed25519 public key in base64. Errors
// wrap ErrBadJSON or ErrInvalidParam.
func CheckDeviceKeys(raw []byte, userID, deviceID string) (canon []byte, ed25519Key string, err error) {
	var dk deviceKeysJSON
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, "", fmt.Errorf("%w: device_keys: %v", ErrBadJSON, err)
	}
	switch {
	case dk.UserID == nil || dk.DeviceID == nil || dk.Algorithms == nil || dk.Keys == nil || dk.Signatures == nil:
		return nil, "", fmt.Errorf("%w: device_keys needs user_id, device_id, algorithms, keys and signatures", ErrBadJSON)
	case *dk.UserID != userID:
		return nil, "", fmt.Errorf("%w: device_keys.user_id %q is not the logged-in user %s", ErrInvalidParam, *dk.UserID, userID)
	case *dk.DeviceID != deviceID:
		return nil, "", fmt.Errorf("%w: device_keys.device_id %q is not the logged-in device %s", ErrInvalidParam, *dk.DeviceID, deviceID)
	}
	keyID := "ed25519:" + deviceID
	pub, ok := dk.Keys[keyID]
	if !ok {
		return nil, "", fmt.Errorf("%w: device_keys.keys has no %s key", ErrInvalidParam, keyID)
	}
	if err := verifySigned(raw, userID, keyID, pub); err != nil {
		return nil, "", fmt.Errorf("%w: device_keys are not signed by the device's own key: %v", ErrInvalidParam, err)
	}
	canon, err = withoutMembers(raw, "unsigned")
	if err != nil {
		return nil, "", fmt.Errorf("%w: device_keys: %v", ErrBadJSON, err)
	}
	return canon, pub, nil
}

// deviceEd25519Key returns the ed25519 key of stored device keys.
func deviceEd25519Key(keysJSON []byte, deviceID string) (string, bool) {
	var dk deviceKeysJSON
	if json.Unmarshal(keysJSON, &dk) != nil {
		return "", false
	}
	k, ok := dk.Keys["ed25519:"+deviceID]
	return k, ok
}

// CheckOneTimeKey validates one one-time or fallback key, named
// "<algorithm>:<key ID>", of userID's device deviceID. A key that is a
// signed object (signed_curve25519) must carry a "key" and be signed by
// the device's ed25519 key devicePub (base64; "" when the device has none,
// which refuses signed keys); a plain string key (curve25519) is taken as
// it is. It returns the algorithm, key ID and canonical JSON.
func CheckOneTimeKey(name string, raw []byte, userID, deviceID, devicePub string) (alg, keyID string, canon []byte, err error) {
	alg, keyID, ok := strings.Cut(name, ":")
	if !ok || alg == "" || keyID == "" {
		return "", "", nil, fmt.Errorf("%w: key name %q is not <algorithm>:<key_id>", ErrInvalidParam, name)
	}
	t := bytes.TrimLeft(raw, " \t\r\n")
	switch {
	case len(t) > 0 && t[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s == "" {
			return "", "", nil, fmt.Errorf("%w: key %s must be a non-empty string or a signed object", ErrBadJSON, name)
		}
		canon, _ = json.Marshal(s)
		return alg, keyID, canon, nil
	case len(t) > 0 && t[0] == '{':
		var k struct {
			Key        *string                      `json:"key"`
			Signatures map[string]map[string]string `json:"signatures"`
		}
		if err := json.Unmarshal(raw, &k); err != nil || k.Key == nil || *k.Key == "" {
			return "", "", nil, fmt.Errorf("%w: key %s needs a key string", ErrBadJSON, name)
		}
		if devicePub == "" {
			return "", "", nil, fmt.Errorf("%w: signed key %s cannot be checked: upload the device's identity keys first", ErrInvalidParam, name)
		}
		if err := verifySigned(raw, userID, "ed25519:"+deviceID, devicePub); err != nil {
			return "", "", nil, fmt.Errorf("%w: key %s is not signed by the device's key: %v", ErrInvalidParam, name, err)
		}
		if canon, err = withoutMembers(raw, "unsigned"); err != nil {
			return "", "", nil, fmt.Errorf("%w: key %s: %v", ErrBadJSON, name, err)
		}
		return alg, keyID, canon, nil
	}
	return "", "", nil, fmt.Errorf("%w: key %s must be a string or a signed object", ErrBadJSON, name)
}

// Cross-signing key usages.
const (
	UsageMaster      = "master"
	UsageSelfSigning = "self_signing"
	UsageUserSigning = "user_signing"
)

// crossSigningKey is a parsed cross-signing key.
type crossSigningKey struct {
	// PublicKey is the unpadded base64 ed25519 key, also its key ID.
	PublicKey string
	// Canon is the key's canonical JSON.
	Canon []byte
}

// keyID is the key's ID in signatures.
func (k *crossSigningKey) keyID() string { return "ed25519:" + k.PublicKey }

// checkCrossSigningKey validates the shape of userID's cross-signing key
// of the given usage: it names the user, lists the usage, and has exactly
// one key "ed25519:<public key>" whose value is that public key. Its
// signatures are checked by the caller, which knows the master key.
func checkCrossSigningKey(raw []byte, userID, usage string) (*crossSigningKey, error) {
	var k struct {
		UserID *string           `json:"user_id"`
		Usage  []string          `json:"usage"`
		Keys   map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("%w: %s key: %v", ErrBadJSON, usage, err)
	}
	if k.UserID == nil || k.Usage == nil || k.Keys == nil {
		return nil, fmt.Errorf("%w: the %s key needs user_id, usage and keys", ErrBadJSON, usage)
	}
	if *k.UserID != userID {
		return nil, fmt.Errorf("%w: the %s key's user_id %q is not %s", ErrInvalidParam, usage, *k.UserID, userID)
	}
	hasUsage := false
	for _, u := range k.Usage {
		hasUsage = hasUsage || u == usage
	}
	if !hasUsage {
		return nil, fmt.Errorf("%w: the %s key's usage does not include %q", ErrInvalidParam, usage, usage)
	}
	if len(k.Keys) != 1 {
		return nil, fmt.Errorf("%w: the %s key must hold exactly one key", ErrInvalidParam, usage)
	}
	for name, value := range k.Keys {
		pub, ok := strings.CutPrefix(name, "ed25519:")
		if !ok || pub != value {
			return nil, fmt.Errorf("%w: the %s key must be named ed25519:<public key>", ErrInvalidParam, usage)
		}
		if _, err := decodeKey(pub); err != nil {
			return nil, fmt.Errorf("%w: the %s key: %v", ErrInvalidParam, usage, err)
		}
	}
	canon, err := canonical(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s key: %v", ErrBadJSON, usage, err)
	}
	pub := ""
	for name := range k.Keys {
		pub = strings.TrimPrefix(name, "ed25519:")
	}
	return &crossSigningKey{PublicKey: pub, Canon: canon}, nil
}

// signaturesBy returns the signatures of obj made by signer: key ID →
// signature.
func signaturesBy(obj []byte, signer string) map[string]string {
	var o struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if json.Unmarshal(obj, &o) != nil {
		return nil
	}
	return o.Signatures[signer]
}

// addSignatures merges signatures (signer → key ID → signature) into a
// signed object's JSON.
func addSignatures(obj []byte, sigs map[string]map[string]string) ([]byte, error) {
	if len(sigs) == 0 {
		return obj, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	existing := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		if err := json.Unmarshal(raw, &existing); err != nil || existing == nil {
			existing = map[string]map[string]string{}
		}
	}
	for signer, byKey := range sigs {
		if existing[signer] == nil {
			existing[signer] = map[string]string{}
		}
		for k, v := range byKey {
			existing[signer][k] = v
		}
	}
	raw, err := json.Marshal(existing)
	if err != nil {
		return nil, err
	}
	m["signatures"] = raw
	return json.Marshal(m)
}

// setUnsigned replaces a JSON object's unsigned member.
func setUnsigned(obj []byte, unsigned map[string]any) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(unsigned)
	if err != nil {
		return nil, err
	}
	m["unsigned"] = raw
	return json.Marshal(m)
}
