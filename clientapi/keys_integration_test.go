package clientapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/storage/storagetest"
)

// forEngine runs test against a fresh server on each database engine.
func forEngine(t *testing.T, test func(t *testing.T, srv *hstest.Server)) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { test(t, e2eServer(t, e.DSN)) })
	}
}

func TestKeysUploadQueryClaim(t *testing.T) {
	forEngine(t, testKeysUploadQueryClaim)
}

func testKeysUploadQueryClaim(t *testing.T, srv *hstest.Server) {
	alice := e2eRegister(t, srv, "alice")
	bob := e2eRegister(t, srv, "bob")
	alice.mustDo("PUT", "/devices/"+alice.DeviceID, map[string]any{"display_name": "Alice's phone"})

	// Forged identity keys are refused.
	mallory := e2eRegister(t, srv, "mallory")
	wrongUser := alice.deviceKeysObj()
	wrongUser["user_id"] = bob.UserID
	wrongDevice := alice.deviceKeysObj()
	wrongDevice["device_id"] = "OTHERDEVICE"
	modified := map[string]any{}
	_ = json.Unmarshal(alice.sign(alice.deviceKeysObj()), &modified)
	modified["keys"].(map[string]any)["curve25519:"+alice.DeviceID] = "bW9kaWZpZWQgYWZ0ZXIgc2lnbmluZyEhISEhISEhISE"
	for name, body := range map[string]any{
		"wrong user":              alice.sign(wrongUser),
		"wrong device":            alice.sign(wrongDevice),
		"signed by another key":   signAs(t, alice.deviceKeysObj(), alice.UserID, "ed25519:"+alice.DeviceID, mallory.priv),
		"modified after signing":  modified,
		"without self-signature":  alice.deviceKeysObj(),
		"signed as someone else":  signAs(t, alice.deviceKeysObj(), bob.UserID, "ed25519:"+alice.DeviceID, alice.priv),
		"another user's keys (1)": mallory.sign(mallory.deviceKeysObj()),
	} {
		status, resp := alice.do("POST", "/keys/upload", map[string]any{"device_keys": body})
		if status != http.StatusBadRequest || (resp["errcode"] != "M_INVALID_PARAM" && resp["errcode"] != "M_BAD_JSON") {
			t.Errorf("%s: got %d %v, want 400 M_INVALID_PARAM", name, status, resp)
		}
	}

	// Good keys with one-time keys and a fallback key.
	dk := alice.sign(alice.deviceKeysObj())
	resp := alice.mustDo("POST", "/keys/upload", map[string]any{
		"device_keys":   dk,
		"one_time_keys": alice.oneTimeKeys(0, 10),
		"fallback_keys": map[string]any{"signed_curve25519:FB1": alice.sign(map[string]any{"key": "fallback-1", "fallback": true})},
	})
	if got := obj(resp, "one_time_key_counts")["signed_curve25519"]; fmt.Sprint(got) != "10" {
		t.Fatalf("one_time_key_counts %v", resp)
	}
	// The same keys again are fine (a retried request); others are not.
	alice.mustDo("POST", "/keys/upload", map[string]any{"device_keys": dk})
	if status, resp := alice.do("POST", "/keys/upload", map[string]any{"device_keys": alice.sign(alice.deviceKeysObj())}); status != http.StatusBadRequest {
		t.Fatalf("changing device keys: %d %v", status, resp)
	}
	// One-time keys must be signed by the device.
	badOTK := signAs(t, map[string]any{"key": "x"}, alice.UserID, "ed25519:"+alice.DeviceID, mallory.priv)
	if status, resp := alice.do("POST", "/keys/upload", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:BAD": badOTK}}); status != http.StatusBadRequest {
		t.Fatalf("badly signed one-time key: %d %v", status, resp)
	}

	// Bob sees Alice's device with its display name and self-signature.
	q := bob.mustDo("POST", "/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}, "timeout": 1000})
	got := obj(q, "device_keys", alice.UserID, alice.DeviceID)
	if got == nil {
		t.Fatalf("query: %v", q)
	}
	if obj(got, "unsigned")["device_display_name"] != "Alice's phone" {
		t.Fatalf("unsigned: %v", got)
	}
	if obj(got, "keys")["ed25519:"+alice.DeviceID] != alice.pub || obj(got, "signatures", alice.UserID)["ed25519:"+alice.DeviceID] == nil {
		t.Fatalf("keys: %v", got)
	}
	// Remote users without federation are failures, not errors.
	q = bob.mustDo("POST", "/keys/query", map[string]any{"device_keys": map[string]any{"@someone:remote.example": []string{}}})
	if obj(q, "failures", "remote.example") == nil {
		t.Fatalf("remote failure missing: %v", q)
	}
	// Asking for one device only.
	q = bob.mustDo("POST", "/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{"NOPE"}}})
	if len(obj(q, "device_keys", alice.UserID)) != 0 {
		t.Fatalf("unknown device returned: %v", q)
	}

	// 100 concurrent claims of 10 one-time keys: each key goes out once,
	// the other 90 claims get the fallback key.
	var (
		mu      sync.Mutex
		claimed = map[string]int{}
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, resp := bob.raw("POST", "/keys/claim", bob.Token, map[string]any{
				"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}},
			})
			mu.Lock()
			defer mu.Unlock()
			if status != http.StatusOK {
				t.Errorf("claim: %d %v", status, resp)
				return
			}
			keys := obj(resp, "one_time_keys", alice.UserID, alice.DeviceID)
			if len(keys) != 1 {
				t.Errorf("claim returned %v", resp)
			}
			for id := range keys {
				claimed[id]++
			}
		}()
	}
	close(start)
	wg.Wait()
	if claimed["signed_curve25519:FB1"] != 90 {
		t.Errorf("fallback key handed out %d times, want 90", claimed["signed_curve25519:FB1"])
	}
	for i := range 10 {
		if n := claimed[fmt.Sprintf("signed_curve25519:K%04d", i)]; n != 1 {
			t.Errorf("one-time key %d handed out %d times", i, n)
		}
	}
	if len(claimed) != 11 {
		t.Errorf("claimed keys: %v", claimed)
	}
	// Alice's sync shows no keys left and the fallback key used.
	s := alice.sync("", 0)
	if fmt.Sprint(obj(s, "device_one_time_keys_count")["signed_curve25519"]) != "0" {
		t.Fatalf("counts after claims: %v", s["device_one_time_keys_count"])
	}
	if fb, ok := s["device_unused_fallback_key_types"].([]any); !ok || len(fb) != 0 {
		t.Fatalf("fallback key should be used: %v", s["device_unused_fallback_key_types"])
	}
	// A new fallback key is unused again.
	alice.mustDo("POST", "/keys/upload", map[string]any{
		"fallback_keys": map[string]any{"signed_curve25519:FB2": alice.sign(map[string]any{"key": "fallback-2", "fallback": true})},
	})
	s = alice.sync("", 0)
	if fb := strs(s["device_unused_fallback_key_types"]); len(fb) != 1 || fb[0] != "signed_curve25519" {
		t.Fatalf("new fallback key: %v", s["device_unused_fallback_key_types"])
	}
	// Claiming from an unknown device returns nothing for it.
	c := bob.mustDo("POST", "/keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{"NOPE": "signed_curve25519"}}})
	if len(obj(c, "one_time_keys", alice.UserID)) != 0 {
		t.Fatalf("claim of an unknown device: %v", c)
	}
	// Works under r0 too.
	req, _ := http.NewRequest("POST", srv.ClientURL+"/_matrix/client/r0/keys/query", strings.NewReader(`{"device_keys":{}}`))
	req.Header.Set("Authorization", "Bearer "+alice.Token)
	if r0, err := http.DefaultClient.Do(req); err != nil || r0.StatusCode != http.StatusOK {
		t.Fatalf("r0 keys/query: %v %v", r0, err)
	} else {
		r0.Body.Close()
	}
}

func TestKeysToDevice(t *testing.T) {
	forEngine(t, testKeysToDevice)
}

func toDeviceEvents(s map[string]any) []map[string]any {
	evs, _ := obj(s, "to_device")["events"].([]any)
	out := make([]map[string]any, 0, len(evs))
	for _, e := range evs {
		m, _ := e.(map[string]any)
		out = append(out, m)
	}
	return out
}

func testKeysToDevice(t *testing.T, srv *hstest.Server) {
	alice1 := e2eRegister(t, srv, "alice")
	alice2 := alice1.login("second")
	bob := e2eRegister(t, srv, "bob")

	send := func(txn string, to map[string]any) {
		t.Helper()
		bob.mustDo("PUT", "/sendToDevice/m.test/"+url.PathEscape(txn), map[string]any{"messages": to})
	}
	// A retried request delivers once.
	msg := map[string]any{alice1.UserID: map[string]any{alice1.DeviceID: map[string]any{"n": 1}}}
	send("txn1", msg)
	send("txn1", msg)

	s1 := alice1.sync("", 0)
	evs := toDeviceEvents(s1)
	if len(evs) != 1 || evs[0]["sender"] != bob.UserID || evs[0]["type"] != "m.test" || fmt.Sprint(obj(evs[0], "content")["n"]) != "1" {
		t.Fatalf("to-device after a retried send: %v", evs)
	}
	if evs := toDeviceEvents(alice2.sync("", 0)); len(evs) != 0 {
		t.Fatalf("the other device got %v", evs)
	}
	// Until acknowledged, a sync from the same point delivers again.
	if evs := toDeviceEvents(alice1.sync("", 0)); len(evs) != 1 {
		t.Fatalf("redelivery before acknowledgement: %v", evs)
	}
	// Syncing from the token acknowledges: nothing more, and gone from the store.
	s2 := alice1.sync(s1["next_batch"].(string), 0)
	if evs := toDeviceEvents(s2); len(evs) != 0 {
		t.Fatalf("delivered twice: %v", evs)
	}
	if n := countRows(t, srv, "to_device_messages", "user_id", alice1.UserID); n != 0 {
		t.Fatalf("%d messages left after acknowledgement", n)
	}

	// "*" reaches every device of the user; unknown devices and remote
	// users (no federation yet) are dropped without failing the request.
	send("txn2", map[string]any{
		alice1.UserID:           map[string]any{"*": map[string]any{"n": 2}, "NOSUCHDEVICE": map[string]any{"n": 99}},
		"@carol:remote.example": map[string]any{"DEV": map[string]any{"n": 3}},
	})
	s3 := alice1.sync(s2["next_batch"].(string), 0)
	if evs := toDeviceEvents(s3); len(evs) != 1 || fmt.Sprint(obj(evs[0], "content")["n"]) != "2" {
		t.Fatalf("wildcard, device 1: %v", evs)
	}
	if evs := toDeviceEvents(alice2.sync("", 0)); len(evs) != 1 || fmt.Sprint(obj(evs[0], "content")["n"]) != "2" {
		t.Fatalf("wildcard, device 2: %v", evs)
	}

	// A long queue comes 100 at a time, in order.
	for i := range 150 {
		send(fmt.Sprintf("bulk%d", i), map[string]any{alice1.UserID: map[string]any{alice1.DeviceID: map[string]any{"i": i}}})
	}
	since := s3["next_batch"].(string)
	var got []int
	for round := 0; round < 4 && len(got) < 150; round++ {
		s := alice1.sync(since, 0)
		evs := toDeviceEvents(s)
		if len(evs) > 100 {
			t.Fatalf("%d to-device messages in one response", len(evs))
		}
		for _, e := range evs {
			var i int
			fmt.Sscan(fmt.Sprint(obj(e, "content")["i"]), &i)
			got = append(got, i)
		}
		since = s["next_batch"].(string)
	}
	if len(got) != 150 || !sort.IntsAreSorted(got) || got[0] != 0 || got[149] != 149 {
		t.Fatalf("bulk delivery: %d messages %v", len(got), got)
	}
	if evs := toDeviceEvents(alice1.sync(since, 0)); len(evs) != 0 {
		t.Fatalf("left over: %v", evs)
	}

	// A waiting sync is woken by a message.
	done := make(chan []map[string]any, 1)
	start := time.Now()
	go func() { done <- toDeviceEvents(alice1.sync(since, 20000)) }()
	time.Sleep(200 * time.Millisecond)
	send("wake", map[string]any{alice1.UserID: map[string]any{alice1.DeviceID: map[string]any{"wake": true}}})
	if evs := <-done; len(evs) != 1 || time.Since(start) > 15*time.Second {
		t.Fatalf("long-poll: %v after %v", evs, time.Since(start))
	}

	// A request without messages is refused; a non-object message too.
	if status, _ := bob.do("PUT", "/sendToDevice/m.test/bad1", map[string]any{}); status != http.StatusBadRequest {
		t.Fatalf("missing messages: %d", status)
	}
	if status, _ := bob.do("PUT", "/sendToDevice/m.test/bad2", map[string]any{"messages": map[string]any{alice1.UserID: map[string]any{"*": 5}}}); status != http.StatusBadRequest {
		t.Fatalf("non-object message: %d", status)
	}
}

func TestKeysDeviceLists(t *testing.T) {
	forEngine(t, testKeysDeviceLists)
}

func deviceListsOf(s map[string]any) (changed, left []string) {
	dl := obj(s, "device_lists")
	return strs(dl["changed"]), strs(dl["left"])
}

func testKeysDeviceLists(t *testing.T, srv *hstest.Server) {
	alice := e2eRegister(t, srv, "alice")
	bob := e2eRegister(t, srv, "bob")
	carol := e2eRegister(t, srv, "carol")
	dave := e2eRegister(t, srv, "dave") // shares no room with bob

	room := alice.mustDo("POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	bob.mustDo("POST", "/join/"+url.PathEscape(room), map[string]any{})

	s0 := bob.sync("", 0)
	since := s0["next_batch"].(string)
	if _, ok := s0["device_unused_fallback_key_types"].([]any); !ok {
		t.Fatalf("device_unused_fallback_key_types must always be present: %v", s0)
	}

	// A new device of Alice's with keys, and keys of Dave's: Bob hears of Alice only.
	alice2 := alice.login("laptop")
	alice2.uploadDeviceKeys()
	dave.uploadDeviceKeys()
	s1 := bob.sync(since, 0)
	changed, _ := deviceListsOf(s1)
	if !contains(changed, alice.UserID) || contains(changed, dave.UserID) {
		t.Fatalf("after Alice's new device: changed %v", changed)
	}

	// Bob's own new device shows up in his own device list changes.
	bob2 := bob.login("tablet")
	bob2.uploadDeviceKeys()
	s2 := bob.sync(s1["next_batch"].(string), 0)
	if changed, _ := deviceListsOf(s2); !contains(changed, bob.UserID) || contains(changed, alice.UserID) {
		t.Fatalf("after Bob's new device: changed %v", changed)
	}

	// Carol joining makes her a user Bob now shares a room with.
	carol.mustDo("POST", "/join/"+url.PathEscape(room), map[string]any{})
	s3 := bob.sync(s2["next_batch"].(string), 0)
	if changed, _ := deviceListsOf(s3); !contains(changed, carol.UserID) {
		t.Fatalf("after Carol joined: changed %v", changed)
	}

	// A waiting sync is woken by a device change.
	done := make(chan map[string]any, 1)
	start := time.Now()
	go func() { done <- bob.sync(s3["next_batch"].(string), 20000) }()
	time.Sleep(200 * time.Millisecond)
	carol.uploadDeviceKeys()
	s4 := <-done
	if changed, _ := deviceListsOf(s4); !contains(changed, carol.UserID) || time.Since(start) > 15*time.Second {
		t.Fatalf("long-poll: changed %v after %v", changed, time.Since(start))
	}

	// Alice leaves the only room she shared with Bob: she is in left.
	alice.mustDo("POST", "/rooms/"+url.PathEscape(room)+"/leave", map[string]any{})
	s5 := bob.sync(s4["next_batch"].(string), 0)
	if changed, left := deviceListsOf(s5); !contains(left, alice.UserID) || contains(changed, alice.UserID) || contains(left, carol.UserID) {
		t.Fatalf("after Alice left: changed %v left %v", changed, left)
	}

	// /keys/changes between two tokens: Carol came and changed keys;
	// Alice changed keys but is gone now.
	ch := bob.mustDo("GET", "/keys/changes?from="+url.QueryEscape(since)+"&to="+url.QueryEscape(s5["next_batch"].(string)), nil)
	changed, left := strs(ch["changed"]), strs(ch["left"])
	if !contains(changed, carol.UserID) || !contains(changed, bob.UserID) || contains(changed, alice.UserID) || contains(changed, dave.UserID) || !contains(left, alice.UserID) {
		t.Fatalf("keys/changes: %v", ch)
	}
	ch = bob.mustDo("GET", "/keys/changes?from="+url.QueryEscape(s5["next_batch"].(string))+"&to="+url.QueryEscape(s5["next_batch"].(string)), nil)
	if len(strs(ch["changed"])) != 0 || len(strs(ch["left"])) != 0 {
		t.Fatalf("keys/changes over an empty range: %v", ch)
	}
	if status, _ := bob.do("GET", "/keys/changes?from=garbage&to=s1_2", nil); status != http.StatusBadRequest {
		t.Fatalf("bad token: %d", status)
	}
}

func TestKeysCrossSigning(t *testing.T) {
	forEngine(t, testKeysCrossSigning)
}

type csKeys struct {
	masterPub, sskPub, uskPub    string
	master, ssk, usk             map[string]any
	masterPriv, sskPriv, uskPriv []byte
}

func makeCrossSigning(t *testing.T, c *e2eClient) (csKeys, map[string]any) {
	t.Helper()
	var k csKeys
	var mp, sp, up []byte
	k.masterPub, mp = newEd25519(t)
	k.sskPub, sp = newEd25519(t)
	k.uskPub, up = newEd25519(t)
	k.masterPriv, k.sskPriv, k.uskPriv = mp, sp, up
	key := func(usage, pub string) map[string]any {
		return map[string]any{"user_id": c.UserID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}}
	}
	k.master = key("master", k.masterPub)
	k.ssk = key("self_signing", k.sskPub)
	k.usk = key("user_signing", k.uskPub)
	body := map[string]any{
		"master_key":       k.master,
		"self_signing_key": signAs(t, k.ssk, c.UserID, "ed25519:"+k.masterPub, mp),
		"user_signing_key": signAs(t, k.usk, c.UserID, "ed25519:"+k.masterPub, mp),
	}
	return k, body
}

func testKeysCrossSigning(t *testing.T, srv *hstest.Server) {
	alice := e2eRegister(t, srv, "alice")
	bob := e2eRegister(t, srv, "bob")
	aliceDK := alice.uploadDeviceKeys()

	// The first upload needs no authentication; the same keys again neither.
	ak, body := makeCrossSigning(t, alice)
	alice.mustDo("POST", "/keys/device_signing/upload", body)
	alice.mustDo("POST", "/keys/device_signing/upload", body)

	// Replacing them does.
	ak2, body2 := makeCrossSigning(t, alice)
	status, ch := alice.do("POST", "/keys/device_signing/upload", body2)
	if status != http.StatusUnauthorized || ch["session"] == nil || ch["flows"] == nil {
		t.Fatalf("replacing keys without auth: %d %v", status, ch)
	}
	body2["auth"] = map[string]any{"type": "m.login.password", "session": ch["session"],
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": alice.password}
	alice.mustDo("POST", "/keys/device_signing/upload", body2)
	ak = ak2

	// A self-signing key not signed by the master key is refused.
	bk, bobBody := makeCrossSigning(t, bob)
	bobBody["self_signing_key"] = signAs(t, bk.ssk, bob.UserID, "ed25519:"+bk.masterPub, bk.sskPriv)
	if status, resp := bob.do("POST", "/keys/device_signing/upload", bobBody); status != http.StatusBadRequest || resp["errcode"] != "M_INVALID_SIGNATURE" {
		t.Fatalf("badly signed self-signing key: %d %v", status, resp)
	}
	// Without any master key, a lone self-signing key is refused too.
	if status, resp := bob.do("POST", "/keys/device_signing/upload", map[string]any{"self_signing_key": bobBody["self_signing_key"]}); status != http.StatusBadRequest || resp["errcode"] != "M_MISSING_PARAM" {
		t.Fatalf("self-signing key without master: %d %v", status, resp)
	}
	bk, bobBody = makeCrossSigning(t, bob)
	bob.mustDo("POST", "/keys/device_signing/upload", bobBody)

	// Alice signs her device with her self-signing key and Bob's master key
	// with her user-signing key; one bad signature fails alone.
	var devObj map[string]any
	_ = json.Unmarshal(aliceDK, &devObj)
	delete(devObj, "signatures")
	signedDev := signAs(t, devObj, alice.UserID, "ed25519:"+ak.sskPub, ak.sskPriv)
	signedBob := signAs(t, bk.master, alice.UserID, "ed25519:"+ak.uskPub, ak.uskPriv)
	forged := signAs(t, bk.master, alice.UserID, "ed25519:"+ak.uskPub, ak.sskPriv)
	resp := alice.mustDo("POST", "/keys/signatures/upload", map[string]any{
		alice.UserID: map[string]any{alice.DeviceID: signedDev},
		bob.UserID:   map[string]any{bk.masterPub: signedBob},
	})
	if f := obj(resp, "failures"); len(f) != 0 {
		t.Fatalf("signature upload failures: %v", f)
	}
	resp = alice.mustDo("POST", "/keys/signatures/upload", map[string]any{bob.UserID: map[string]any{bk.masterPub: forged}})
	if obj(resp, "failures", bob.UserID, bk.masterPub)["errcode"] != "M_INVALID_SIGNATURE" {
		t.Fatalf("forged signature: %v", resp)
	}

	// What Bob sees of Alice: device signed by her self-signing key,
	// master and self-signing keys, no user-signing key.
	q := bob.mustDo("POST", "/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}, bob.UserID: []string{}}})
	if obj(q, "device_keys", alice.UserID, alice.DeviceID, "signatures", alice.UserID)["ed25519:"+ak.sskPub] == nil {
		t.Fatalf("device signature missing: %v", obj(q, "device_keys", alice.UserID))
	}
	if obj(q, "master_keys", alice.UserID, "keys")["ed25519:"+ak.masterPub] == nil || obj(q, "self_signing_keys", alice.UserID) == nil {
		t.Fatalf("Alice's cross-signing keys: %v", q)
	}
	if obj(q, "user_signing_keys", alice.UserID) != nil || obj(q, "user_signing_keys", bob.UserID) == nil {
		t.Fatalf("user-signing keys go to their owner only: %v", obj(q, "user_signing_keys"))
	}
	// Alice's signature on Bob's master key is for Alice's eyes only.
	if obj(q, "master_keys", bob.UserID, "signatures", alice.UserID) != nil {
		t.Fatalf("Bob sees Alice's user-signing signature: %v", obj(q, "master_keys", bob.UserID))
	}
	q = alice.mustDo("POST", "/keys/query", map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
	if obj(q, "master_keys", bob.UserID, "signatures", alice.UserID)["ed25519:"+ak.uskPub] == nil {
		t.Fatalf("Alice does not see her signature on Bob's key: %v", obj(q, "master_keys", bob.UserID))
	}

	// A key whose public key is a device ID of the user is refused.
	clash := map[string]any{"user_id": alice.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:" + alice.DeviceID: alice.DeviceID}}
	if status, resp := alice.do("POST", "/keys/device_signing/upload", map[string]any{"master_key": clash, "auth": body2["auth"]}); status == http.StatusOK {
		t.Fatalf("key ID clashing with a device: %d %v", status, resp)
	}
}

func TestKeysBackup(t *testing.T) {
	forEngine(t, testKeysBackup)
}

func testKeysBackup(t *testing.T, srv *hstest.Server) {
	alice := e2eRegister(t, srv, "alice")
	bob := e2eRegister(t, srv, "bob")
	const alg = "m.megolm_backup.v1.curve25519-aes-sha2"

	if status, resp := alice.do("GET", "/room_keys/version", nil); status != http.StatusNotFound || resp["errcode"] != "M_NOT_FOUND" {
		t.Fatalf("no backup yet: %d %v", status, resp)
	}
	v1 := alice.mustDo("POST", "/room_keys/version", map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "abc"}})["version"].(string)
	info := alice.mustDo("GET", "/room_keys/version", nil)
	if info["version"] != v1 || fmt.Sprint(info["count"]) != "0" || info["etag"] == nil || obj(info, "auth_data")["public_key"] != "abc" {
		t.Fatalf("current version: %v", info)
	}
	etag0 := info["etag"]
	// Bob sees none of it.
	if status, _ := bob.do("GET", "/room_keys/version/"+v1, nil); status != http.StatusNotFound {
		t.Fatalf("another user's backup: %d", status)
	}

	key := func(fmi, fc int, verified bool, data string) map[string]any {
		return map[string]any{"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
			"session_data": map[string]any{"ciphertext": data}}
	}
	path := func(p string, v string) string { return "/room_keys/keys" + p + "?version=" + v }
	room := url.PathEscape("!room:localhost")

	r := alice.mustDo("PUT", path("/"+room+"/sess1", v1), key(5, 1, false, "first"))
	if fmt.Sprint(r["count"]) != "1" || r["etag"] == etag0 {
		t.Fatalf("put one key: %v", r)
	}
	etag1 := r["etag"]
	// A worse key (higher first_message_index) does not replace it, nor
	// change the etag.
	r = alice.mustDo("PUT", path("/"+room, v1), map[string]any{"sessions": map[string]any{"sess1": key(7, 0, false, "worse")}})
	if r["etag"] != etag1 {
		t.Fatalf("etag changed by a worse key: %v", r)
	}
	got := alice.mustDo("GET", path("/"+room+"/sess1", v1), nil)
	if obj(got, "session_data")["ciphertext"] != "first" {
		t.Fatalf("worse key replaced the stored one: %v", got)
	}
	// A verified key wins over a better index; a lower index wins next.
	alice.mustDo("PUT", path("", v1), map[string]any{"rooms": map[string]any{"!room:localhost": map[string]any{"sessions": map[string]any{
		"sess1": key(9, 3, true, "verified"), "sess2": key(0, 0, false, "other"),
	}}}})
	if got := alice.mustDo("GET", path("/"+room+"/sess1", v1), nil); obj(got, "session_data")["ciphertext"] != "verified" {
		t.Fatalf("verified key did not win: %v", got)
	}
	alice.mustDo("PUT", path("/"+room+"/sess1", v1), key(2, 3, true, "lower index"))
	alice.mustDo("PUT", path("/"+room+"/sess1", v1), key(2, 9, true, "more forwarded"))
	if got := alice.mustDo("GET", path("/"+room+"/sess1", v1), nil); obj(got, "session_data")["ciphertext"] != "lower index" {
		t.Fatalf("replacement rules: %v", got)
	}
	all := alice.mustDo("GET", path("", v1), nil)
	if len(obj(all, "rooms", "!room:localhost", "sessions")) != 2 {
		t.Fatalf("all keys: %v", all)
	}
	if rk := alice.mustDo("GET", path("/"+url.PathEscape("!empty:localhost"), v1), nil); rk["sessions"] == nil || len(obj(rk, "sessions")) != 0 {
		t.Fatalf("empty room: %v", rk)
	}
	if status, _ := alice.do("GET", path("/"+room+"/nosuch", v1), nil); status != http.StatusNotFound {
		t.Fatalf("unknown session: %d", status)
	}
	// Missing fields are refused.
	if status, _ := alice.do("PUT", path("/"+room+"/sess3", v1), map[string]any{"session_data": map[string]any{}}); status != http.StatusBadRequest {
		t.Fatalf("incomplete key: %d", status)
	}

	// A new version becomes current; writes to the old one are refused.
	v2 := alice.mustDo("POST", "/room_keys/version", map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "def"}})["version"].(string)
	status, resp := alice.do("PUT", path("/"+room+"/sess1", v1), key(0, 0, true, "late"))
	if status != http.StatusForbidden || resp["errcode"] != "M_WRONG_ROOM_KEYS_VERSION" || resp["current_version"] != v2 {
		t.Fatalf("write to old version: %d %v", status, resp)
	}
	// The old version can still be read; the count stays per version.
	if info := alice.mustDo("GET", "/room_keys/version/"+v1, nil); fmt.Sprint(info["count"]) != "2" {
		t.Fatalf("old version: %v", info)
	}
	if status, _ := alice.do("PUT", path("/"+room+"/s", "99"), key(0, 0, true, "x")); status != http.StatusNotFound {
		t.Fatalf("unknown version: %d", status)
	}

	// auth_data updates: algorithm and version must match.
	if status, _ := alice.do("PUT", "/room_keys/version/"+v2, map[string]any{"algorithm": "other", "auth_data": map[string]any{}}); status != http.StatusBadRequest {
		t.Fatalf("algorithm change: %d", status)
	}
	if status, _ := alice.do("PUT", "/room_keys/version/"+v2, map[string]any{"algorithm": alg, "auth_data": map[string]any{}, "version": v1}); status != http.StatusBadRequest {
		t.Fatalf("version mismatch: %d", status)
	}
	alice.mustDo("PUT", "/room_keys/version/"+v2, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "ghi"}})
	if info := alice.mustDo("GET", "/room_keys/version/"+v2, nil); obj(info, "auth_data")["public_key"] != "ghi" {
		t.Fatalf("auth_data update: %v", info)
	}

	// Deleting keys bumps the etag and lowers the count.
	alice.mustDo("PUT", path("/"+room+"/a", v2), key(0, 0, false, "a"))
	before := alice.mustDo("GET", "/room_keys/version/"+v2, nil)
	r = alice.mustDo("DELETE", path("/"+room+"/a", v2), nil)
	if fmt.Sprint(r["count"]) != "0" || r["etag"] == before["etag"] {
		t.Fatalf("delete key: %v (before %v)", r, before)
	}

	// Deleting the current version makes the previous one current; deleting
	// it again succeeds; an unknown version is 404.
	alice.mustDo("DELETE", "/room_keys/version/"+v2, nil)
	if info := alice.mustDo("GET", "/room_keys/version", nil); info["version"] != v1 {
		t.Fatalf("after deleting %s: %v", v2, info)
	}
	alice.mustDo("DELETE", "/room_keys/version/"+v2, nil)
	if status, _ := alice.do("DELETE", "/room_keys/version/99", nil); status != http.StatusNotFound {
		t.Fatalf("delete unknown version: %d", status)
	}
	if status, _ := alice.do("GET", "/room_keys/version/"+v2, nil); status != http.StatusNotFound {
		t.Fatalf("deleted version readable: %d", status)
	}
}

func TestKeysDeviceDeletion(t *testing.T) {
	forEngine(t, testKeysDeviceDeletion)
}

func testKeysDeviceDeletion(t *testing.T, srv *hstest.Server) {
	alice := e2eRegister(t, srv, "alice")
	alice2 := alice.login("old phone")
	bob := e2eRegister(t, srv, "bob")
	room := alice.mustDo("POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	bob.mustDo("POST", "/join/"+url.PathEscape(room), map[string]any{})

	alice.uploadDeviceKeys()
	alice2.mustDo("POST", "/keys/upload", map[string]any{
		"device_keys": alice2.sign(alice2.deviceKeysObj()), "one_time_keys": alice2.oneTimeKeys(0, 5),
		"fallback_keys": map[string]any{"signed_curve25519:F": alice2.sign(map[string]any{"key": "f", "fallback": true})},
	})
	bob.mustDo("PUT", "/sendToDevice/m.test/t1", map[string]any{"messages": map[string]any{alice.UserID: map[string]any{"*": map[string]any{}}}})
	since := bob.sync("", 0)["next_batch"].(string)

	// Deleting the device (behind the password) deletes its keys and messages.
	auth := func(status int, ch map[string]any) map[string]any {
		if status != http.StatusUnauthorized {
			t.Fatalf("expected a UIA challenge: %d %v", status, ch)
		}
		return map[string]any{"auth": map[string]any{"type": "m.login.password", "session": ch["session"],
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": alice.password}}
	}
	alice.mustDo("DELETE", "/devices/"+alice2.DeviceID, auth(alice.do("DELETE", "/devices/"+alice2.DeviceID, map[string]any{})))

	q := bob.mustDo("POST", "/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if devs := obj(q, "device_keys", alice.UserID); devs[alice2.DeviceID] != nil || devs[alice.DeviceID] == nil {
		t.Fatalf("after deleting a device: %v", devs)
	}
	c := bob.mustDo("POST", "/keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice2.DeviceID: "signed_curve25519"}}})
	if len(obj(c, "one_time_keys", alice.UserID)) != 0 {
		t.Fatalf("claimed a deleted device's key: %v", c)
	}
	for _, table := range []string{"e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "to_device_messages"} {
		var n int
		if err := srv.DB.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE user_id = $1 AND device_id = $2", alice.UserID, alice2.DeviceID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d rows of the deleted device (%v)", table, n, err)
		}
	}
	if changed, _ := deviceListsOf(bob.sync(since, 0)); !contains(changed, alice.UserID) {
		t.Fatalf("device deletion not in Bob's device lists: %v", changed)
	}

	// Deactivation deletes everything: keys, cross-signing keys, backups.
	_, body := makeCrossSigning(t, alice)
	alice.mustDo("POST", "/keys/device_signing/upload", body)
	alice.mustDo("POST", "/room_keys/version", map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{}})
	alice.mustDo("POST", "/account/deactivate", auth(alice.do("POST", "/account/deactivate", map[string]any{})))
	for _, table := range []string{"e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "to_device_messages", "e2e_cross_signing_keys", "e2e_room_keys_versions"} {
		if n := countRows(t, srv, table, "user_id", alice.UserID); n != 0 {
			t.Fatalf("%s: %d rows after deactivation", table, n)
		}
	}
}
