package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/federation/fedclient"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// e2eWait retries check until it succeeds or the time is up.
func e2eWait(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// e2eRoom creates a room on alice's server that the others join, and
// waits until alice's server holds every join.
func e2eRoom(t *testing.T, alice *mautrix.Client, via string, others ...*mautrix.Client) mid.RoomID {
	t.Helper()
	ctx := context.Background()
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range others {
		if _, err := o.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{via}}); err != nil {
			t.Fatalf("%s joins: %v", o.UserID, err)
		}
	}
	e2eWait(t, "everyone joined", func() error {
		members, err := alice.JoinedMembers(ctx, room.RoomID)
		if err != nil {
			return err
		}
		if len(members.Joined) != len(others)+1 {
			return fmt.Errorf("%d members", len(members.Joined))
		}
		return nil
	})
	return room.RoomID
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// signedJSON signs obj as signer with the ed25519 key keyID.
func signedJSON(t *testing.T, obj any, signer, keyID string, priv ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := event.SignJSON(signer, keyID, priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// keyDevice is a logged-in device with hand-made identity keys: what a
// client uploads, without a crypto library.
type keyDevice struct {
	cli  *mautrix.Client
	priv ed25519.PrivateKey
	pub  string
}

func newKeyDevice(cli *mautrix.Client) *keyDevice {
	if cli.DeviceID == "" && cli.AccessToken != "" {
		// fedUser's clients know their user, not their device.
		if who, err := cli.Whoami(context.Background()); err == nil {
			cli.DeviceID = who.DeviceID
		}
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &keyDevice{cli: cli, priv: priv, pub: b64(pub)}
}

func (d *keyDevice) user() string   { return d.cli.UserID.String() }
func (d *keyDevice) device() string { return d.cli.DeviceID.String() }

func (d *keyDevice) deviceKeys(t *testing.T) json.RawMessage {
	curve := make([]byte, 32)
	_, _ = rand.Read(curve)
	return signedJSON(t, map[string]any{
		"user_id": d.user(), "device_id": d.device(),
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"ed25519:" + d.device(): d.pub, "curve25519:" + d.device(): b64(curve)},
	}, d.user(), "ed25519:"+d.device(), d.priv)
}

// upload uploads the device's identity keys and n signed one-time keys.
func (d *keyDevice) upload(t *testing.T, n int) {
	t.Helper()
	otks := map[string]json.RawMessage{}
	for i := range n {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		otks[fmt.Sprintf("signed_curve25519:K%d", i)] = signedJSON(t, map[string]any{"key": b64(k)}, d.user(), "ed25519:"+d.device(), d.priv)
	}
	body := map[string]any{"device_keys": d.deviceKeys(t), "one_time_keys": otks}
	if _, err := d.cli.MakeRequest(context.Background(), http.MethodPost, d.cli.BuildClientURL("v3", "keys", "upload"), body, nil); err != nil {
		t.Fatalf("upload keys of %s: %v", d.device(), err)
	}
}

// crossSigningKey builds a cross-signing key of user, signed by the
// master key when one is given.
func crossSigningKey(t *testing.T, user, usage string, master ed25519.PrivateKey) (json.RawMessage, ed25519.PrivateKey) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	obj := map[string]any{"user_id": user, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + b64(pub): b64(pub)}}
	if master == nil {
		raw, _ := json.Marshal(obj)
		return raw, priv
	}
	return signedJSON(t, obj, user, "ed25519:"+b64(master.Public().(ed25519.PublicKey)), master), priv
}

// queryKeys asks cli's server for users' keys.
func queryKeys(t *testing.T, cli *mautrix.Client, users ...mid.UserID) *mautrix.RespQueryKeys {
	t.Helper()
	req := &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{}}
	for _, u := range users {
		req.DeviceKeys[u] = mautrix.DeviceIDList{}
	}
	resp, err := cli.QueryKeys(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// deviceIDs lists the devices of user in a key query answer.
func deviceIDs(resp *mautrix.RespQueryKeys, user mid.UserID) string {
	var ids []string
	for d := range resp.DeviceKeys[user] {
		ids = append(ids, d.String())
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

// login logs a new device of an account in.
func login(t *testing.T, srv *hstest.Server, name string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(srv.ClientURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Login(context.Background(), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name}, Password: "pw-" + name, StoreCredentials: true}); err != nil {
		t.Fatal(err)
	}
	return cli
}

// syncUntilChanged syncs until user is in device_lists.changed.
func (s *syncer) untilChanged(user mid.UserID) {
	s.t.Helper()
	s.waitFor(user.String()+" in device_lists.changed", func(r *mautrix.RespSync) bool {
		for _, u := range r.DeviceLists.Changed {
			if u == user {
				return true
			}
		}
		return false
	})
}

// Device lists, keys and to-device messages between two servers, with
// hand-made keys: key queries and claims reach the other server, device
// list changes arrive as m.device_list_update EDUs and show in /sync, the
// cache of the other server's users follows them and resynchronises after
// a missed update.
func TestE2EEFederationDeviceLists(t *testing.T) {
	hs1, hs2, alice, bob := twoServers(t)
	ctx := context.Background()
	aliceSync := &syncer{t: t, cli: alice}
	bobSync := &syncer{t: t, cli: bob}
	room := e2eRoom(t, alice, "hs1.test", bob)
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })
	bobSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })

	aliceDev := newKeyDevice(alice)
	aliceDev.upload(t, 2)
	bob1 := newKeyDevice(bob)
	bob1.upload(t, 2)
	aliceSync.untilChanged(bob.UserID)
	bobSync.untilChanged(alice.UserID)

	// Keys of the other server's users, both ways.
	if got := deviceIDs(queryKeys(t, alice, bob.UserID), bob.UserID); got != bob1.device() {
		t.Fatalf("alice sees bob's devices %q", got)
	}
	q := queryKeys(t, bob, alice.UserID)
	if k, ok := q.DeviceKeys[alice.UserID][alice.DeviceID]; !ok || k.Keys.GetEd25519(alice.DeviceID).String() != aliceDev.pub {
		t.Fatalf("bob sees alice's keys %+v", q.DeviceKeys)
	}
	claim, err := alice.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
		bob.UserID: {bob.DeviceID: mid.KeyAlgorithmSignedCurve25519}}})
	if err != nil || len(claim.OneTimeKeys[bob.UserID][bob.DeviceID]) != 1 {
		t.Fatalf("claim across servers: %+v %v", claim, err)
	}

	// hs1 follows bob's list: the query above had it fetched.
	cached := func() string {
		lists, err := hs1.DB.RemoteDeviceLists(ctx, []string{bob.UserID.String()})
		if err != nil {
			t.Fatal(err)
		}
		l := lists[bob.UserID.String()]
		if l == nil {
			return "none"
		}
		var ids []string
		for _, d := range l.Devices {
			ids = append(ids, d.DeviceID)
		}
		return fmt.Sprintf("%d:%v:%s", l.StreamID, l.Stale, strings.Join(ids, ","))
	}
	e2eWait(t, "hs1 caches bob's list", func() error {
		if got := cached(); got != "1:false:"+bob1.device() {
			return fmt.Errorf("cached %s", got)
		}
		return nil
	})

	// A new device of bob's: an update in sequence, applied to the cache.
	bob2 := newKeyDevice(login(t, hs2, "bob"))
	bob2.upload(t, 1)
	aliceSync.untilChanged(bob.UserID)
	want := []string{bob1.device(), bob2.device()}
	sort.Strings(want)
	if got := cached(); got != "2:false:"+strings.Join(want, ",") {
		t.Fatalf("cache after the new device: %s", got)
	}
	if got := deviceIDs(queryKeys(t, alice, bob.UserID), bob.UserID); got != strings.Join(want, ",") {
		t.Fatalf("alice sees bob's devices %q", got)
	}

	// To-device messages across servers, to one device and to all.
	content := mevent.Content{Raw: map[string]any{"secret": "for bob"}}
	if _, err := alice.SendToDevice(ctx, mevent.NewEventType("org.example.test"), &mautrix.ReqSendToDevice{
		Messages: map[mid.UserID]map[mid.DeviceID]*mevent.Content{bob.UserID: {bob.DeviceID: &content}}}); err != nil {
		t.Fatal(err)
	}
	bobSync.waitFor("alice's to-device message", func(r *mautrix.RespSync) bool {
		for _, ev := range r.ToDevice.Events {
			if ev.Sender == alice.UserID && ev.Type.Type == "org.example.test" {
				return true
			}
		}
		return false
	})

	// A missed update: hs1's cache is set back, so that bob's next update
	// refers to one it never saw; it fetches the list again.
	if err := hs1.DB.DropRemoteDeviceLists(ctx, bob.UserID.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := hs1.DB.ReplaceRemoteDeviceList(ctx, storage.RemoteDeviceList{UserID: bob.UserID.String(), StreamID: 0,
		Devices: []storage.RemoteDevice{{DeviceID: "GHOST"}}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bob2.cli.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	aliceSync.untilChanged(bob.UserID)
	e2eWait(t, "hs1 resynchronises bob's list", func() error {
		if got := cached(); got != "3:false:"+bob1.device() {
			return fmt.Errorf("cached %s", got)
		}
		return nil
	})
	if got := deviceIDs(queryKeys(t, alice, bob.UserID), bob.UserID); got != bob1.device() {
		t.Fatalf("alice sees bob's devices %q after the deletion", got)
	}

	// Cross-signing keys travel as m.signing_key_update.
	master, masterPriv := crossSigningKey(t, bob.UserID.String(), "master", nil)
	ssk, _ := crossSigningKey(t, bob.UserID.String(), "self_signing", masterPriv)
	if _, err := bob.MakeRequest(ctx, http.MethodPost, bob.BuildClientURL("v3", "keys", "device_signing", "upload"),
		map[string]any{"master_key": master, "self_signing_key": ssk}, nil); err != nil {
		t.Fatal(err)
	}
	aliceSync.untilChanged(bob.UserID)
	q = queryKeys(t, alice, bob.UserID)
	masterPub := mid.Ed25519(b64(masterPriv.Public().(ed25519.PublicKey)))
	if mk, ok := q.MasterKeys[bob.UserID]; !ok || mk.Keys[mid.NewKeyID(mid.KeyAlgorithmEd25519, string(masterPub))] != masterPub {
		t.Fatalf("bob's master key as alice sees it: %+v", q.MasterKeys)
	}
	if _, ok := q.SelfSigningKeys[bob.UserID]; !ok {
		t.Fatalf("bob's self-signing key as alice sees it: %+v", q.SelfSigningKeys)
	}

	// When nobody on hs1 shares a room with bob any more, hs1 stops
	// following his list.
	if _, err := bob.LeaveRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	e2eWait(t, "hs1 drops bob's list", func() error {
		if got := cached(); got != "none" {
			return fmt.Errorf("cached %s", got)
		}
		return nil
	})
}

// Other servers may read and claim our users' keys only, and may speak
// only for their own users: forged and malformed requests and EDUs are
// refused or ignored, and change nothing.
func TestE2EEFederationForgedInput(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test", "hs3.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	hs3 := n.start(t, "hs3.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	mallory := fedUser(t, hs3, "mallory")
	e2eRoom(t, alice, "hs1.test", bob, mallory)
	aliceDev := newKeyDevice(alice)
	aliceDev.upload(t, 3)
	bobDev := newKeyDevice(bob)
	bobDev.upload(t, 1)
	malDev := newKeyDevice(mallory)
	malDev.upload(t, 1)
	// hs1 follows bob's list once alice has asked for his keys.
	queryKeys(t, alice, bob.UserID)
	e2eWait(t, "hs1 caches bob's list", func() error {
		lists, err := hs1.DB.RemoteDeviceLists(ctx, []string{bob.UserID.String()})
		if err != nil || lists[bob.UserID.String()] == nil {
			return fmt.Errorf("not cached (%v)", err)
		}
		return nil
	})
	aliceSync := &syncer{t: t, cli: alice}
	aliceSync.waitFor("initial", func(*mautrix.RespSync) bool { return true })

	// hs3's requests to hs1, signed by hs3 as any server's are.
	fed := func(method, path string, body, out any) error {
		return hs3.Federation.Client().Do(ctx, "hs1.test", method, path, body, out)
	}
	status := func(err error) string {
		var fe *fedclient.Error
		if errors.As(err, &fe) {
			return fmt.Sprintf("%d %s", fe.StatusCode, fe.ErrCode)
		}
		return fmt.Sprint(err)
	}

	t.Run("key query", func(t *testing.T) {
		var res struct {
			DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
			MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
			SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
			UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
		}
		err := fed("POST", "/_matrix/federation/v1/user/keys/query", map[string]any{"device_keys": map[string]any{
			alice.UserID.String(): []string{}, bob.UserID.String(): []string{}, mallory.UserID.String(): []string{}, "not a user": []string{},
		}}, &res)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.DeviceKeys) != 1 || res.DeviceKeys[alice.UserID.String()][alice.DeviceID.String()] == nil || res.UserSigningKeys != nil {
			t.Fatalf("hs1 answered %+v", res)
		}
		for _, bad := range []any{
			map[string]any{},
			map[string]any{"device_keys": "everyone"},
			map[string]any{"device_keys": map[string]any{alice.UserID.String(): "all"}},
			map[string]any{"device_keys": map[string]any{alice.UserID.String(): []int{1}}},
		} {
			if err := fed("POST", "/_matrix/federation/v1/user/keys/query", bad, nil); status(err) != "400 M_BAD_JSON" {
				t.Errorf("query %v: %s", bad, status(err))
			}
		}
	})

	t.Run("key claim", func(t *testing.T) {
		var res struct {
			OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
		}
		err := fed("POST", "/_matrix/federation/v1/user/keys/claim", map[string]any{"one_time_keys": map[string]any{
			alice.UserID.String(): map[string]string{alice.DeviceID.String(): "signed_curve25519", "NODEVICE": "signed_curve25519"},
			bob.UserID.String():   map[string]string{bob.DeviceID.String(): "signed_curve25519"},
		}}, &res)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.OneTimeKeys) != 1 || len(res.OneTimeKeys[alice.UserID.String()]) != 1 || len(res.OneTimeKeys[alice.UserID.String()][alice.DeviceID.String()]) != 1 {
			t.Fatalf("hs1 answered %+v", res.OneTimeKeys)
		}
		// hs1 did not claim bob's key on hs2 for hs3.
		counts, err := hs2.DB.OneTimeKeyCounts(ctx, bob.UserID.String(), bob.DeviceID.String())
		if err != nil || counts["signed_curve25519"] != 1 {
			t.Fatalf("bob's keys on hs2: %v %v", counts, err)
		}
		for _, bad := range []any{
			map[string]any{},
			map[string]any{"one_time_keys": []string{"x"}},
			map[string]any{"one_time_keys": map[string]any{alice.UserID.String(): map[string]any{alice.DeviceID.String(): 5}}},
		} {
			if err := fed("POST", "/_matrix/federation/v1/user/keys/claim", bad, nil); status(err) != "400 M_BAD_JSON" {
				t.Errorf("claim %v: %s", bad, status(err))
			}
		}
	})

	t.Run("user devices", func(t *testing.T) {
		var dl struct {
			UserID   string `json:"user_id"`
			StreamID int64  `json:"stream_id"`
			Devices  []struct {
				DeviceID string          `json:"device_id"`
				Keys     json.RawMessage `json:"keys"`
			} `json:"devices"`
		}
		if err := fed("GET", "/_matrix/federation/v1/user/devices/"+alice.UserID.String(), nil, &dl); err != nil {
			t.Fatal(err)
		}
		if dl.UserID != alice.UserID.String() || dl.StreamID < 1 || len(dl.Devices) != 1 || dl.Devices[0].DeviceID != alice.DeviceID.String() || dl.Devices[0].Keys == nil {
			t.Fatalf("alice's devices: %+v", dl)
		}
		if err := fed("GET", "/_matrix/federation/v1/user/devices/"+bob.UserID.String(), nil, nil); status(err) != "404 M_NOT_FOUND" {
			t.Errorf("devices of another server's user: %s", status(err))
		}
		if err := fed("GET", "/_matrix/federation/v1/user/devices/alice", nil, nil); status(err) != "400 M_INVALID_PARAM" {
			t.Errorf("devices of a malformed user ID: %s", status(err))
		}
		// A local user who does not exist has no devices.
		if err := fed("GET", "/_matrix/federation/v1/user/devices/@nobody:hs1.test", nil, &dl); err != nil || len(dl.Devices) != 0 {
			t.Errorf("devices of an unknown user: %+v %v", dl, err)
		}
	})

	// sendEDUs sends a transaction of EDUs from hs3 to hs1.
	txn := 0
	sendEDUs := func(edus ...map[string]any) {
		t.Helper()
		txn++
		body := map[string]any{"origin": "hs3.test", "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": edus}
		if err := fed("PUT", fmt.Sprintf("/_matrix/federation/v1/send/e2ee-%d", txn), body, nil); err != nil {
			t.Fatal(err)
		}
	}
	edu := func(typ string, content any) map[string]any {
		return map[string]any{"edu_type": typ, "content": content}
	}
	toDevice := func(sender, messageID, marker string) map[string]any {
		return edu("m.direct_to_device", map[string]any{"sender": sender, "type": "org.example.test", "message_id": messageID,
			"messages": map[string]any{alice.UserID.String(): map[string]any{"*": map[string]string{"marker": marker}}}})
	}

	t.Run("EDUs", func(t *testing.T) {
		bobID := bob.UserID.String()
		evil := &keyDevice{cli: &mautrix.Client{UserID: bob.UserID, DeviceID: "EVIL"}}
		evilPub, evilPriv, _ := ed25519.GenerateKey(rand.Reader)
		evil.priv, evil.pub = evilPriv, b64(evilPub)
		evilMaster, _ := crossSigningKey(t, bobID, "master", nil)
		// mallory's own device with keys signed by another key.
		badKeys := newKeyDevice(&mautrix.Client{UserID: mallory.UserID, DeviceID: "BADKEYS"})
		badKeys.priv = evilPriv
		stranger := &keyDevice{cli: &mautrix.Client{UserID: "@stranger:hs3.test", DeviceID: "S"}, priv: evilPriv, pub: b64(evilPub)}
		sendEDUs(
			// To-device messages in the name of another server's user.
			toDevice(bobID, "forged-1", "forged"),
			// Device lists and cross-signing keys of bob, who is hs2's.
			edu("m.device_list_update", map[string]any{"user_id": bobID, "device_id": "EVIL", "stream_id": 99, "prev_id": []int{1},
				"keys": evil.deviceKeys(t)}),
			edu("m.device_list_update", map[string]any{"user_id": bobID, "device_id": bob.DeviceID.String(), "stream_id": 100, "deleted": true}),
			edu("m.signing_key_update", map[string]any{"user_id": bobID, "master_key": evilMaster}),
			// Keys of mallory's that her device did not sign.
			edu("m.device_list_update", map[string]any{"user_id": mallory.UserID.String(), "device_id": "BADKEYS", "stream_id": 50,
				"keys": badKeys.deviceKeys(t)}),
			// A user nobody here shares a room with.
			edu("m.device_list_update", map[string]any{"user_id": "@stranger:hs3.test", "device_id": "S", "stream_id": 1,
				"keys": stranger.deviceKeys(t)}),
			// Malformed ones.
			edu("m.device_list_update", "not an object"),
			edu("m.device_list_update", map[string]any{"user_id": 5}),
			edu("m.direct_to_device", map[string]any{"sender": mallory.UserID.String(), "type": "org.example.test", "messages": map[string]any{}}),
			edu("m.direct_to_device", []int{1}),
			// A genuine message of mallory's, twice under one message_id.
			toDevice(mallory.UserID.String(), "genuine-1", "genuine"),
		)
		sendEDUs(toDevice(mallory.UserID.String(), "genuine-1", "genuine again"))

		// Alice gets mallory's message once, and nothing else.
		var markers []string
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			r, err := alice.SyncRequest(ctx, 500, aliceSync.since, "", false, mevent.PresenceOnline)
			if err != nil {
				t.Fatal(err)
			}
			aliceSync.since = r.NextBatch
			for _, ev := range r.ToDevice.Events {
				if ev.Type.Type == "org.example.test" {
					markers = append(markers, fmt.Sprintf("%s:%v", ev.Sender, ev.Content.Raw["marker"]))
				}
			}
			for _, u := range r.DeviceLists.Changed {
				if u == bob.UserID || u == "@stranger:hs3.test" {
					t.Errorf("a forged update shows in alice's sync: %s changed", u)
				}
			}
		}
		if len(markers) != 1 || markers[0] != mallory.UserID.String()+":genuine" {
			t.Fatalf("alice's to-device messages: %v", markers)
		}

		// Bob's keys as hs1 holds them and hands them out are untouched.
		q := queryKeys(t, alice, bob.UserID, mallory.UserID)
		if got := deviceIDs(q, bob.UserID); got != bob.DeviceID.String() {
			t.Fatalf("bob's devices after forged updates: %q", got)
		}
		if _, ok := q.MasterKeys[bob.UserID]; ok {
			t.Fatalf("a forged master key of bob's: %+v", q.MasterKeys)
		}
		if _, ok := q.DeviceKeys[mallory.UserID]["BADKEYS"]; ok {
			t.Fatal("a device with keys it did not sign")
		}
		lists, err := hs1.DB.RemoteDeviceLists(ctx, []string{bobID, "@stranger:hs3.test"})
		if err != nil {
			t.Fatal(err)
		}
		if l := lists[bobID]; l == nil || l.Stale || len(l.Devices) != 1 || l.MasterKey != "" {
			t.Fatalf("hs1's cache of bob: %+v", l)
		}
		if lists["@stranger:hs3.test"] != nil {
			t.Fatal("hs1 caches a user nobody shares a room with")
		}
	})
}
