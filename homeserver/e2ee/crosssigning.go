package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/parley-chat/parley/storage"
)

// CrossSigningUpload is a checked POST /keys/device_signing/upload: the
// keys it holds (nil when absent).
type CrossSigningUpload struct {
	userID      string
	master      *crossSigningKey
	selfSigning *crossSigningKey
	userSigning *crossSigningKey
}

// ParseCrossSigningUpload checks the shape of the keys of a cross-signing
// upload by userID (each may be empty). Signatures are checked on upload,
// against the master key that is current then.
func ParseCrossSigningUpload(userID string, master, selfSigning, userSigning json.RawMessage) (*CrossSigningUpload, error) {
	up := &CrossSigningUpload{userID: userID}
	for _, k := range []struct {
		raw   json.RawMessage
		usage string
		dst   **crossSigningKey
	}{{master, UsageMaster, &up.master}, {selfSigning, UsageSelfSigning, &up.selfSigning}, {userSigning, UsageUserSigning, &up.userSigning}} {
		if len(k.raw) == 0 || bytes.Equal(bytes.TrimSpace(k.raw), []byte("null")) {
			continue
		}
		parsed, err := checkCrossSigningKey(k.raw, userID, k.usage)
		if err != nil {
			return nil, err
		}
		*k.dst = parsed
	}
	return up, nil
}

// keys lists the upload's keys by usage.
func (up *CrossSigningUpload) keys() map[string]*crossSigningKey {
	out := map[string]*crossSigningKey{}
	if up.master != nil {
		out[UsageMaster] = up.master
	}
	if up.selfSigning != nil {
		out[UsageSelfSigning] = up.selfSigning
	}
	if up.userSigning != nil {
		out[UsageUserSigning] = up.userSigning
	}
	return out
}

// needsAuth applies the spec's rule for POST /keys/device_signing/upload:
// user-interactive authentication is needed unless the user has no master
// key yet, or every key in the request is exactly the one already stored
// (a retried upload).
func (up *CrossSigningUpload) needsAuth(current map[string]storage.CrossSigningKey) bool {
	if _, ok := current[UsageMaster]; !ok {
		return false
	}
	for usage, k := range up.keys() {
		stored, ok := current[usage]
		if !ok || !bytes.Equal([]byte(stored.JSON), k.Canon) {
			return true
		}
	}
	return false
}

// CrossSigningNeedsAuth reports whether the upload needs user-interactive
// authentication, by the keys stored now.
func (s *Service) CrossSigningNeedsAuth(ctx context.Context, up *CrossSigningUpload) (bool, error) {
	cs, err := s.db.CrossSigningKeys(ctx, []string{up.userID})
	if err != nil {
		return false, err
	}
	return up.needsAuth(cs[up.userID]), nil
}

// UploadCrossSigningKeys stores the upload's keys. The self-signing and
// user-signing keys must be signed by the master key of the upload or, if
// it has none, the stored one (ErrInvalidSignature; ErrMissingParam when
// there is no master key at all). No key may have a device ID of the user
// as its public key (ErrForbidden), since clients verify master keys as if
// they were devices. Unless authenticated, an upload that replaces keys
// fails with ErrAuthRequired; this is decided under the same lock as the
// write, so two first uploads racing cannot both skip authentication.
func (s *Service) UploadCrossSigningKeys(ctx context.Context, up *CrossSigningUpload, authenticated bool) error {
	keys := up.keys()
	if len(keys) == 0 {
		return nil
	}
	localpart, ok := s.localpart(up.userID)
	if !ok {
		return fmt.Errorf("%w: %s is not a local user", ErrForbidden, up.userID)
	}
	devices, err := s.db.Devices(ctx, localpart)
	if err != nil {
		return err
	}
	for _, d := range devices {
		for _, k := range keys {
			if k.PublicKey == d.DeviceID {
				return fmt.Errorf("%w: the key ID %s is in use by a device", ErrForbidden, k.PublicKey)
			}
		}
	}
	toStore := map[string]storage.CrossSigningKey{}
	for usage, k := range keys {
		toStore[usage] = storage.CrossSigningKey{PublicKey: k.PublicKey, JSON: string(k.Canon)}
	}
	_, err = s.db.SetCrossSigningKeys(ctx, up.userID, toStore, func(current map[string]storage.CrossSigningKey) error {
		if !authenticated && up.needsAuth(current) {
			return ErrAuthRequired
		}
		master := up.master
		if master == nil {
			stored, ok := current[UsageMaster]
			if !ok {
				return fmt.Errorf("%w: no master key: upload one first or with these keys", ErrMissingParam)
			}
			master = &crossSigningKey{PublicKey: stored.PublicKey, Canon: []byte(stored.JSON)}
		}
		for _, k := range []*crossSigningKey{up.selfSigning, up.userSigning} {
			if k == nil {
				continue
			}
			if err := verifySigned(k.Canon, up.userID, master.keyID(), master.PublicKey); err != nil {
				return fmt.Errorf("%w: a key is not signed by the master key: %v", ErrInvalidSignature, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.deviceListChanged(ctx, up.userID)
	// The user-signing key is private to its owner; the others are
	// public and go to the servers that share a room with the user.
	if up.master != nil || up.selfSigning != nil {
		s.publishSigningKeys(ctx, up.userID)
	}
	return nil
}

// SignatureFailure is one entry of the failures of POST
// /keys/signatures/upload.
type SignatureFailure struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// UploadSignatures answers POST /keys/signatures/upload: signatures by
// userID's keys on keys of userID (device keys signed by the self-signing
// key, the master key signed by a device) or of other users (their master
// keys, signed by the user-signing key). signed maps target user ID → key
// ID (a device ID or a master public key) → the signed object, which must
// be the stored key apart from its signatures. Signatures that do not
// verify are reported in the failures map (user → key → error); the
// others are stored and appear in /keys/query.
func (s *Service) UploadSignatures(ctx context.Context, userID string, signed map[string]map[string]json.RawMessage) (map[string]map[string]SignatureFailure, error) {
	failures := map[string]map[string]SignatureFailure{}
	fail := func(user, key, code, format string, args ...any) {
		if failures[user] == nil {
			failures[user] = map[string]SignatureFailure{}
		}
		failures[user][key] = SignatureFailure{ErrCode: code, Error: fmt.Sprintf(format, args...)}
	}
	targets := sortedKeys(signed)
	loadUsers := append([]string{userID}, targets...)
	cs, err := s.db.CrossSigningKeys(ctx, loadUsers)
	if err != nil {
		return nil, err
	}
	own := cs[userID]
	ownDevices, err := s.db.DeviceKeys(ctx, userID, nil)
	if err != nil {
		return nil, err
	}

	var sigs []storage.KeySignature
	// accept stores the signatures by signer key IDs that verify against
	// obj, and reports whether there was at least one.
	accept := func(target, keyID string, obj []byte, verify func(signerKeyID string) (bool, error)) {
		by := signaturesBy(obj, userID)
		ids := sortedKeys(by)
		found := false
		for _, sk := range ids {
			ok, err := verify(sk)
			if !ok {
				continue // not a key this signature may be made with
			}
			if err != nil {
				fail(target, keyID, "M_INVALID_SIGNATURE", "invalid signature by %s: %v", sk, err)
				return
			}
			sigs = append(sigs, storage.KeySignature{TargetUserID: target, TargetKeyID: keyID,
				SignerUserID: userID, SignerKeyID: sk, Signature: by[sk]})
			found = true
		}
		if !found {
			fail(target, keyID, "M_INVALID_SIGNATURE", "no signature by a key of %s that may sign this key", userID)
		}
	}

	for _, target := range targets {
		_, local := s.localpart(target)
		for _, keyID := range sortedKeys(signed[target]) {
			obj := []byte(signed[target][keyID])
			var head struct {
				UserID string `json:"user_id"`
			}
			if err := json.Unmarshal(obj, &head); err != nil || head.UserID != target {
				fail(target, keyID, "M_INVALID_PARAM", "the signed object must be a key of %s", target)
				continue
			}
			switch {
			case target == userID && ownDevices[keyID] != "":
				// One of the user's devices, signed by the self-signing key.
				ssk, ok := own[UsageSelfSigning]
				if !ok {
					fail(target, keyID, "M_INVALID_SIGNATURE", "upload a self-signing key first")
					continue
				}
				if !sameSignedContent(obj, []byte(ownDevices[keyID])) {
					fail(target, keyID, "M_INVALID_PARAM", "the signed object is not the device's stored keys")
					continue
				}
				accept(target, keyID, obj, func(sk string) (bool, error) {
					if sk != "ed25519:"+ssk.PublicKey {
						return false, nil
					}
					return true, verifySigned(obj, userID, sk, ssk.PublicKey)
				})
			case target == userID && own[UsageMaster].PublicKey == keyID && keyID != "":
				// The user's master key, signed by one of their devices.
				if !sameSignedContent(obj, []byte(own[UsageMaster].JSON)) {
					fail(target, keyID, "M_INVALID_PARAM", "the signed object is not the stored master key")
					continue
				}
				accept(target, keyID, obj, func(sk string) (bool, error) {
					device, ok := strings.CutPrefix(sk, "ed25519:")
					if !ok || ownDevices[device] == "" {
						return false, nil
					}
					pub, ok := deviceEd25519Key([]byte(ownDevices[device]), device)
					if !ok {
						return false, nil
					}
					return true, verifySigned(obj, userID, sk, pub)
				})
			case target != userID:
				// Another user's master key, signed by the user-signing key.
				usk, ok := own[UsageUserSigning]
				if !ok {
					fail(target, keyID, "M_INVALID_SIGNATURE", "upload a user-signing key first")
					continue
				}
				mk, err := checkCrossSigningKey(obj, target, UsageMaster)
				if err != nil || mk.PublicKey != keyID {
					fail(target, keyID, "M_INVALID_PARAM", "the signed object is not %s's master key %s", target, keyID)
					continue
				}
				if local {
					// Local keys are known: the object must be the stored
					// one. Remote keys are checked by the signer's client,
					// which fetched them.
					stored, ok := cs[target][UsageMaster]
					if !ok || stored.PublicKey != keyID || !sameSignedContent(obj, []byte(stored.JSON)) {
						fail(target, keyID, "M_INVALID_PARAM", "%s is not %s's current master key", keyID, target)
						continue
					}
				}
				accept(target, keyID, obj, func(sk string) (bool, error) {
					if sk != "ed25519:"+usk.PublicKey {
						return false, nil
					}
					return true, verifySigned(obj, userID, sk, usk.PublicKey)
				})
			default:
				fail(target, keyID, "M_NOT_FOUND", "unknown key %s", keyID)
			}
		}
	}
	// A failed signature of a key fails the key: keep only the others.
	kept := sigs[:0]
	for _, sig := range sigs {
		if _, failed := failures[sig.TargetUserID][sig.TargetKeyID]; !failed {
			kept = append(kept, sig)
		}
	}
	if len(kept) > 0 {
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].TargetUserID < kept[j].TargetUserID })
		// Signatures on the user's own keys change what everyone sees of
		// them; those on others' keys only what the user sees. Either way
		// it is the user's device list that changed.
		if _, err := s.db.AddKeySignatures(ctx, kept, []string{userID}); err != nil {
			return nil, err
		}
		s.deviceListChanged(ctx, userID)
		s.publishSignatures(ctx, userID, kept)
	}
	return failures, nil
}

// publishSignatures tells other servers of new signatures on a user's own
// keys: signed devices go out as device list updates with their new keys,
// a signed master key as a signing key update. Signatures on other users'
// keys are the signer's private business and stay here.
func (s *Service) publishSignatures(ctx context.Context, userID string, sigs []storage.KeySignature) {
	own, err := s.db.DeviceKeys(ctx, userID, nil)
	if err != nil {
		s.log.WithError(err).WithField("user_id", userID).Warn("e2ee: loading device keys to publish signatures")
		return
	}
	seen := map[string]bool{}
	var devices []string
	master := false
	for _, sig := range sigs {
		switch {
		case sig.TargetUserID != userID || seen[sig.TargetKeyID]:
		case own[sig.TargetKeyID] != "":
			devices = append(devices, sig.TargetKeyID)
		default:
			master = true
		}
		seen[sig.TargetKeyID] = true
	}
	sort.Strings(devices)
	s.publishDevices(ctx, userID, devices, false)
	if master {
		s.publishSigningKeys(ctx, userID)
	}
}
