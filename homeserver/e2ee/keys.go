package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/storage"
)

// DefaultRemoteTimeout is how long key queries and claims wait for remote
// servers when the client does not say (the spec recommends 10 seconds).
const DefaultRemoteTimeout = 10 * time.Second

// maxRemoteTimeout bounds the timeout a client may ask for.
const maxRemoteTimeout = 60 * time.Second

// AlgorithmSignedCurve25519 is the one-time key algorithm of Olm. Its
// count is always reported, zero included, because some clients only
// upload keys when they see it.
const AlgorithmSignedCurve25519 = "signed_curve25519"

// UploadRequest is the body of POST /keys/upload.
type UploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

// UploadKeys stores keys of userID's device deviceID and returns the
// device's unclaimed one-time key counts per algorithm.
//
// Identity keys are checked (user, device, self-signature) and immutable:
// uploading the same keys again is accepted, different ones are refused
// with ErrInvalidParam. Signed one-time and fallback keys must be signed by
// the device's ed25519 key, from the same request or stored before.
func (s *Service) UploadKeys(ctx context.Context, userID, deviceID string, req UploadRequest) (map[string]int, error) {
	localpart, ok := s.localpart(userID)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a local user", ErrForbidden, userID)
	}
	stored, err := s.db.DeviceKeys(ctx, userID, []string{deviceID})
	if err != nil {
		return nil, err
	}
	existing, hasExisting := stored[deviceID]
	up := storage.KeyUpload{UserID: userID, Localpart: localpart, DeviceID: deviceID}
	devicePub := ""
	if hasExisting {
		devicePub, _ = deviceEd25519Key([]byte(existing), deviceID)
	}
	if len(req.DeviceKeys) > 0 && !bytes.Equal(bytes.TrimSpace(req.DeviceKeys), []byte("null")) {
		canon, pub, err := CheckDeviceKeys(req.DeviceKeys, userID, deviceID)
		if err != nil {
			return nil, err
		}
		if hasExisting {
			if !sameSignedContent([]byte(existing), canon) {
				return nil, fmt.Errorf("%w: device %s already has different identity keys, which cannot be changed; log in as a new device instead", ErrInvalidParam, deviceID)
			}
		} else {
			up.DeviceKeys = string(canon)
			devicePub = pub
		}
	}
	for _, name := range sortedKeys(req.OneTimeKeys) {
		alg, keyID, canon, err := CheckOneTimeKey(name, req.OneTimeKeys[name], userID, deviceID, devicePub)
		if err != nil {
			return nil, fmt.Errorf("one_time_keys: %w", err)
		}
		up.OneTimeKeys = append(up.OneTimeKeys, storage.OneTimeKey{Algorithm: alg, KeyID: keyID, JSON: string(canon)})
	}
	seenAlg := map[string]bool{}
	for _, name := range sortedKeys(req.FallbackKeys) {
		alg, keyID, canon, err := CheckOneTimeKey(name, req.FallbackKeys[name], userID, deviceID, devicePub)
		if err != nil {
			return nil, fmt.Errorf("fallback_keys: %w", err)
		}
		if seenAlg[alg] {
			return nil, fmt.Errorf("%w: fallback_keys holds more than one %s key", ErrInvalidParam, alg)
		}
		seenAlg[alg] = true
		up.FallbackKeys = append(up.FallbackKeys, storage.OneTimeKey{Algorithm: alg, KeyID: keyID, JSON: string(canon)})
	}

	counts, pos, err := s.db.UploadE2EKeys(ctx, up)
	if errors.Is(err, storage.ErrDeviceKeysExist) {
		// Another request of the same device stored keys in between:
		// fine if they are these keys.
		stored, serr := s.db.DeviceKeys(ctx, userID, []string{deviceID})
		if serr != nil {
			return nil, serr
		}
		if !sameSignedContent([]byte(stored[deviceID]), []byte(up.DeviceKeys)) {
			return nil, fmt.Errorf("%w: device %s already has different identity keys, which cannot be changed", ErrInvalidParam, deviceID)
		}
		up.DeviceKeys = ""
		counts, pos, err = s.db.UploadE2EKeys(ctx, up)
	}
	switch {
	case errors.Is(err, storage.ErrNoDevice):
		return nil, fmt.Errorf("%w: device %s no longer exists", ErrForbidden, deviceID)
	case errors.Is(err, storage.ErrOneTimeKeyExists):
		return nil, fmt.Errorf("%w: %v", ErrInvalidParam, err)
	case err != nil:
		return nil, err
	}
	if pos != 0 {
		s.deviceListChanged(ctx, userID)
		// New identity keys make the device usable: other servers hear
		// of it now.
		s.publishDevices(ctx, userID, []string{deviceID}, false)
	}
	if _, ok := counts[AlgorithmSignedCurve25519]; !ok {
		counts[AlgorithmSignedCurve25519] = 0
	}
	return counts, nil
}

// QueryResponse is the body of the answer to POST /keys/query.
type QueryResponse struct {
	// Failures maps the servers that could not be reached to an error.
	Failures        map[string]any                        `json:"failures"`
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
}

func newQueryResponse() *QueryResponse {
	return &QueryResponse{
		Failures:        map[string]any{},
		DeviceKeys:      map[string]map[string]json.RawMessage{},
		MasterKeys:      map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{},
		UserSigningKeys: map[string]json.RawMessage{},
	}
}

// QueryKeys answers POST /keys/query for viewer: the device and
// cross-signing keys of the users in deviceKeys (user ID → device IDs, an
// empty list meaning all). Local keys come with the uploaded signatures
// the viewer may see and the devices' display names; the user-signing key
// is returned to its owner only. Remote users are asked through
// RemoteKeys, waiting at most timeout (0: the default); servers that do
// not answer are listed in Failures. Malformed user IDs are ignored.
func (s *Service) QueryKeys(ctx context.Context, viewer string, deviceKeys map[string][]string, timeout time.Duration) (*QueryResponse, error) {
	resp := newQueryResponse()
	local := map[string][]string{}
	remote := map[string]map[string][]string{}
	for user, devices := range deviceKeys {
		if _, ok := s.localpart(user); ok {
			local[user] = devices
		} else if server, ok := serverOf(user); ok {
			if remote[server] == nil {
				remote[server] = map[string][]string{}
			}
			remote[server][user] = devices
		}
	}
	if err := s.queryLocal(ctx, viewer, local, resp); err != nil {
		return nil, err
	}
	s.queryRemote(ctx, viewer, remote, timeout, resp)
	return resp, nil
}

// QueryLocalKeys answers a remote server's key query (the federation
// /user/keys/query) for local users: no user-signing keys, and only the
// signatures users made on their own keys.
func (s *Service) QueryLocalKeys(ctx context.Context, deviceKeys map[string][]string) (*RemoteQueryResult, error) {
	resp := newQueryResponse()
	local := map[string][]string{}
	for user, devices := range deviceKeys {
		if _, ok := s.localpart(user); ok {
			local[user] = devices
		}
	}
	if err := s.queryLocal(ctx, "", local, resp); err != nil {
		return nil, err
	}
	return &RemoteQueryResult{DeviceKeys: resp.DeviceKeys, MasterKeys: resp.MasterKeys, SelfSigningKeys: resp.SelfSigningKeys}, nil
}

// signatureVisible says whether viewer may see a signature uploaded by
// signer on target's key: the signatures users make on their own keys are
// public; those they make on other users' keys (with their user-signing
// key) are for themselves only, as the spec's cross-signing section draws
// them.
func signatureVisible(sig storage.KeySignature, viewer string) bool {
	return sig.SignerUserID == sig.TargetUserID || (viewer != "" && sig.SignerUserID == viewer)
}

// visibleSignatures indexes the signatures viewer may see by target user
// and key: user → key → signer → key ID → signature.
func visibleSignatures(sigs []storage.KeySignature, viewer string) map[string]map[string]map[string]map[string]string {
	out := map[string]map[string]map[string]map[string]string{}
	for _, sig := range sigs {
		if !signatureVisible(sig, viewer) {
			continue
		}
		byKey := out[sig.TargetUserID]
		if byKey == nil {
			byKey = map[string]map[string]map[string]string{}
			out[sig.TargetUserID] = byKey
		}
		bySigner := byKey[sig.TargetKeyID]
		if bySigner == nil {
			bySigner = map[string]map[string]string{}
			byKey[sig.TargetKeyID] = bySigner
		}
		if bySigner[sig.SignerUserID] == nil {
			bySigner[sig.SignerUserID] = map[string]string{}
		}
		bySigner[sig.SignerUserID][sig.SignerKeyID] = sig.Signature
	}
	return out
}

// queryLocal adds local users' keys to resp. viewer "" is a remote server.
func (s *Service) queryLocal(ctx context.Context, viewer string, users map[string][]string, resp *QueryResponse) error {
	if len(users) == 0 {
		return nil
	}
	userIDs := sortedKeys(users)
	sigRows, err := s.db.KeySignaturesOf(ctx, userIDs)
	if err != nil {
		return err
	}
	sigs := visibleSignatures(sigRows, viewer)
	for _, user := range userIDs {
		localpart, _ := s.localpart(user)
		rows, err := s.db.LocalDeviceKeysOf(ctx, user, localpart, users[user])
		if err != nil {
			return err
		}
		devices := map[string]json.RawMessage{}
		for _, row := range rows {
			js, err := addSignatures([]byte(row.JSON), sigs[user][row.DeviceID])
			if err != nil {
				s.log.WithError(err).WithField("user_id", user).Warn("e2ee: stored device keys do not parse")
				continue
			}
			unsigned := map[string]any{}
			if row.DisplayName != "" {
				unsigned["device_display_name"] = row.DisplayName
			}
			if js, err = setUnsigned(js, unsigned); err != nil {
				continue
			}
			devices[row.DeviceID] = js
		}
		// A known user without device keys still gets an (empty) entry,
		// so that clients can tell "no devices" from "not asked".
		resp.DeviceKeys[user] = devices
	}
	cs, err := s.db.CrossSigningKeys(ctx, userIDs)
	if err != nil {
		return err
	}
	for user, keys := range cs {
		for typ, k := range keys {
			var dst map[string]json.RawMessage
			switch typ {
			case UsageMaster:
				dst = resp.MasterKeys
			case UsageSelfSigning:
				dst = resp.SelfSigningKeys
			case UsageUserSigning:
				if viewer != user {
					continue
				}
				dst = resp.UserSigningKeys
			default:
				continue
			}
			js, err := addSignatures([]byte(k.JSON), sigs[user][k.PublicKey])
			if err != nil {
				s.log.WithError(err).WithField("user_id", user).Warn("e2ee: stored cross-signing key does not parse")
				continue
			}
			dst[user] = js
		}
	}
	return nil
}

// remoteContext bounds a call to remote servers by the client's timeout.
func remoteContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		timeout = DefaultRemoteTimeout
	}
	return context.WithTimeout(ctx, min(timeout, maxRemoteTimeout))
}

// remoteFailure is the failures entry of a server that did not answer.
func remoteFailure(err error) map[string]any {
	return map[string]any{"status": 503, "message": err.Error()}
}

// errNoFederation is the failure of remote servers while no federation
// layer is installed.
var errNoFederation = errors.New("federation is not available on this server")

// queryRemote answers for remote users: from the cached device lists of
// the users we follow, and by asking each server for the others, all at
// once.
func (s *Service) queryRemote(ctx context.Context, viewer string, servers map[string]map[string][]string, timeout time.Duration, resp *QueryResponse) {
	if len(servers) == 0 {
		return
	}
	type result struct {
		server string
		res    *RemoteQueryResult
	}
	var results []result
	cached, ask, toResync := s.cachedQuery(ctx, servers)
	for server, res := range cached {
		results = append(results, result{server, res})
	}
	// Users we follow but hold no current list of are asked for like the
	// others; fetching their lists makes the next query local.
	for _, u := range toResync {
		s.scheduleResync(u)
	}
	rk := s.remoteKeys()
	if rk == nil {
		for server := range ask {
			resp.Failures[server] = remoteFailure(errNoFederation)
		}
		ask = nil
	}
	// The timeout bounds the remote servers only, not the local look-ups
	// after them.
	rctx, cancel := remoteContext(ctx, timeout)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for server, users := range ask {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := rk.QueryKeys(rctx, server, users)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.Failures[server] = remoteFailure(err)
				return
			}
			results = append(results, result{server, res})
		}()
	}
	wg.Wait()
	// Signatures local users made on remote users' master keys (with their
	// user-signing keys) are stored here, not there.
	var remoteUsers []string
	for _, users := range servers {
		remoteUsers = append(remoteUsers, sortedKeys(users)...)
	}
	sigRows, err := s.db.KeySignaturesOf(ctx, remoteUsers)
	if err != nil {
		s.log.WithError(err).Warn("e2ee: loading signatures on remote keys")
	}
	sigs := visibleSignatures(sigRows, viewer)
	for _, r := range results {
		server, res := r.server, r.res
		if res == nil {
			continue
		}
		// Keep only what the server may speak for: its own users.
		for user, devices := range res.DeviceKeys {
			if _, asked := servers[server][user]; asked && devices != nil {
				resp.DeviceKeys[user] = devices
			}
		}
		for user, k := range res.MasterKeys {
			if _, asked := servers[server][user]; asked {
				var mk struct {
					Keys map[string]string `json:"keys"`
				}
				merged := k
				if json.Unmarshal(k, &mk) == nil {
					for _, pub := range mk.Keys {
						if m, err := addSignatures(k, sigs[user][pub]); err == nil {
							merged = m
						}
					}
				}
				resp.MasterKeys[user] = merged
			}
		}
		for user, k := range res.SelfSigningKeys {
			if _, asked := servers[server][user]; asked {
				resp.SelfSigningKeys[user] = k
			}
		}
	}
}

// ClaimResponse is the body of the answer to POST /keys/claim.
type ClaimResponse struct {
	Failures map[string]any `json:"failures"`
	// OneTimeKeys maps user ID → device ID → "algorithm:key_id" → key.
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
}

// ClaimKeys answers POST /keys/claim: for each user → device → algorithm
// it hands out one of the device's one-time keys, or its fallback key when
// none is left. Remote users' keys are claimed through RemoteKeys.
func (s *Service) ClaimKeys(ctx context.Context, oneTimeKeys map[string]map[string]string, timeout time.Duration) (*ClaimResponse, error) {
	resp := &ClaimResponse{Failures: map[string]any{}, OneTimeKeys: map[string]map[string]map[string]json.RawMessage{}}
	local := map[string]map[string]string{}
	remote := map[string]map[string]map[string]string{}
	for user, devices := range oneTimeKeys {
		if _, ok := s.localpart(user); ok {
			local[user] = devices
		} else if server, ok := serverOf(user); ok {
			if remote[server] == nil {
				remote[server] = map[string]map[string]string{}
			}
			remote[server][user] = devices
		}
	}
	claimed, err := s.ClaimLocalKeys(ctx, local)
	if err != nil {
		return nil, err
	}
	resp.OneTimeKeys = claimed
	if len(remote) == 0 {
		return resp, nil
	}
	rk := s.remoteKeys()
	if rk == nil {
		for server := range remote {
			resp.Failures[server] = remoteFailure(errNoFederation)
		}
		return resp, nil
	}
	rctx, cancel := remoteContext(ctx, timeout)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for server, users := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := rk.ClaimKeys(rctx, server, users)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.Failures[server] = remoteFailure(err)
				return
			}
			for user, devices := range res {
				if _, asked := users[user]; asked {
					resp.OneTimeKeys[user] = devices
				}
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

// ClaimLocalKeys claims one-time keys of local users (user ID → device ID
// → algorithm), for local clients and the federation /user/keys/claim.
// Devices without keys are left out of the answer.
func (s *Service) ClaimLocalKeys(ctx context.Context, oneTimeKeys map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]map[string]json.RawMessage{}
	for _, user := range sortedKeys(oneTimeKeys) {
		if _, ok := s.localpart(user); !ok {
			continue
		}
		devices := oneTimeKeys[user]
		for _, device := range sortedKeys(devices) {
			alg := devices[device]
			keyID, js, _, found, err := s.db.ClaimKey(ctx, user, device, alg)
			if err != nil {
				return nil, err
			}
			if !found {
				continue
			}
			if out[user] == nil {
				out[user] = map[string]map[string]json.RawMessage{}
			}
			out[user][device] = map[string]json.RawMessage{alg + ":" + keyID: json.RawMessage(js)}
		}
	}
	return out, nil
}

// LocalUserDevices is a local user's whole device list for the federation
// /user/devices/{userId}, or ErrNotFound for a user that is not local.
// Devices without identity keys are left out (the spec requires keys for
// every device listed, and such devices take no part in encryption); its
// stream ID is that of the user's latest m.device_list_update.
func (s *Service) LocalUserDevices(ctx context.Context, userID string) (*DeviceList, error) {
	localpart, ok := s.localpart(userID)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a local user", ErrNotFound, userID)
	}
	// The stream ID is read before the devices: a change committed in
	// between is then in the list and also in the update after stream_id,
	// which the other server applies again harmlessly; read the other way
	// round, its update would look like one already applied.
	streamID, err := s.db.DeviceListStreamID(ctx, userID)
	if err != nil {
		return nil, err
	}
	res, err := s.QueryLocalKeys(ctx, map[string][]string{userID: {}})
	if err != nil {
		return nil, err
	}
	devices, err := s.db.Devices(ctx, localpart)
	if err != nil {
		return nil, err
	}
	dl := &DeviceList{UserID: userID, StreamID: streamID, Devices: []DeviceListItem{},
		MasterKey: res.MasterKeys[userID], SelfSigningKey: res.SelfSigningKeys[userID]}
	for _, d := range devices {
		keys := res.DeviceKeys[userID][d.DeviceID]
		if keys == nil {
			continue
		}
		dl.Devices = append(dl.Devices, DeviceListItem{DeviceID: d.DeviceID, DeviceDisplayName: d.DisplayName, Keys: keys})
	}
	return dl, nil
}
