package authrules

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/parley-chat/parley/matrix/canonicaljson"
)

// thirdPartyPublicKeys returns the ed25519 keys of m.room.third_party_invite
// content: `public_key` and every `public_keys[].public_key`. Keys that do
// not decode are skipped: no signature can match them.
func thirdPartyPublicKeys(content []byte) []ed25519.PublicKey {
	m, err := objectKeys(content)
	if err != nil {
		return nil
	}
	var keys []ed25519.PublicKey
	add := func(raw json.RawMessage) {
		s, ok := jsonString(raw)
		if !ok {
			return
		}
		if b, err := decodeBase64(s); err == nil && len(b) == ed25519.PublicKeySize {
			keys = append(keys, ed25519.PublicKey(b))
		}
	}
	add(m["public_key"])
	var list []json.RawMessage
	if raw, ok := m["public_keys"]; ok && json.Unmarshal(raw, &list) == nil {
		for _, item := range list {
			if obj, err := objectKeys(item); err == nil {
				add(obj["public_key"])
			}
		}
	}
	return keys
}

// signedMatchesAnyKey reports whether any ed25519 signature in the `signed`
// object of a third-party invite verifies, under any of keys, over the
// canonical JSON of `signed` without `signatures` and `unsigned` (appendices,
// "Checking for a Signature").
func signedMatchesAnyKey(signed map[string]json.RawMessage, keys []ed25519.PublicKey) bool {
	if len(keys) == 0 {
		return false
	}
	var sigs map[string]map[string]json.RawMessage
	if err := json.Unmarshal(signed["signatures"], &sigs); err != nil {
		return false
	}
	rest := make(map[string]json.RawMessage, len(signed))
	for k, v := range signed {
		if k != "signatures" && k != "unsigned" {
			rest[k] = v
		}
	}
	msg, err := canonicaljson.Marshal(rest)
	if err != nil {
		return false
	}
	for _, byKey := range sigs {
		for keyID, rawSig := range byKey {
			if !strings.HasPrefix(keyID, "ed25519:") {
				continue // an algorithm we do not understand
			}
			s, ok := jsonString(rawSig)
			if !ok {
				continue
			}
			sig, err := decodeBase64(s)
			if err != nil || len(sig) != ed25519.SignatureSize {
				continue
			}
			for _, k := range keys {
				if ed25519.Verify(k, msg, sig) {
					return true
				}
			}
		}
	}
	return false
}

// decodeBase64 accepts the standard and URL-safe alphabets, padded or not, as
// the spec asks of decoders.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
