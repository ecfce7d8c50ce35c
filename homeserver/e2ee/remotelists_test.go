package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/storage"
)

// listRecorder records what the service sends to other servers about
// local device lists, and answers /user/devices for remote users.
type listRecorder struct {
	mu       sync.Mutex
	updates  []string // destinations/user/device/stream/prev/deleted/has keys
	signing  []string // destinations/user/has master/has self-signing
	lists    map[string]*DeviceList
	fetched  []string
	fetchErr error
}

func (r *listRecorder) SendDeviceListUpdates(destinations []string, updates []DeviceListUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range updates {
		r.updates = append(r.updates, fmt.Sprintf("%v/%s/%s/%d/%v/%v/%v", destinations, u.UserID, u.DeviceID, u.StreamID, u.PrevID, u.Deleted, u.Keys != nil))
	}
}

func (r *listRecorder) SendSigningKeyUpdate(destinations []string, u SigningKeyUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signing = append(r.signing, fmt.Sprintf("%v/%s/%v/%v", destinations, u.UserID, u.MasterKey != nil, u.SelfSigningKey != nil))
}

func (r *listRecorder) QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (*RemoteQueryResult, error) {
	return nil, errors.New("not reachable")
}

func (r *listRecorder) ClaimKeys(ctx context.Context, server string, otks map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	return nil, errors.New("not reachable")
}

func (r *listRecorder) UserDevices(ctx context.Context, userID string) (*DeviceList, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetched = append(r.fetched, userID)
	if r.fetchErr != nil {
		return nil, r.fetchErr
	}
	if l, ok := r.lists[userID]; ok {
		return l, nil
	}
	return nil, errors.New("unknown user")
}

func (r *listRecorder) take() (updates, signing []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	updates, signing = r.updates, r.signing
	r.updates, r.signing = nil, nil
	return updates, signing
}

func join(t *testing.T, db *storage.DB, roomID string, users ...string) {
	t.Helper()
	for _, u := range users {
		if err := storage.SetMembership(context.Background(), db, storage.Membership{RoomID: roomID, UserID: u, Membership: "join", EventID: "$" + u, StreamPos: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A local user's device list changes go to the servers that share a room
// with the user, numbered in sequence; /user/devices reports the latest
// number.
func TestPublishDeviceLists(t *testing.T) {
	ctx := context.Background()
	s, db := testService(t)
	t.Cleanup(s.Stop)
	rec := &listRecorder{}
	s.SetRemoteDeviceLists(rec)
	const alice = "@alice:local.test"
	if err := db.CreateAccountWithDevice(ctx, storage.Account{Localpart: "alice"},
		&storage.NewDevice{Localpart: "alice", DeviceID: "D1", TokenHash: []byte("D1"), TS: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LoginDevice(ctx, storage.NewDevice{Localpart: "alice", DeviceID: "D2", TokenHash: []byte("D2"), TS: 1}); err != nil {
		t.Fatal(err)
	}
	join(t, db, "!r:local.test", alice, "@bob:remote.test", "@carol:other.test", "@dave:local.test")
	k1, k2 := newTestKey(t), newTestKey(t)
	upload := func(device string, k testKey) {
		t.Helper()
		if _, err := s.UploadKeys(ctx, alice, device, UploadRequest{DeviceKeys: k.sign(t, deviceKeysObj(alice, device, k), alice, "ed25519:"+device)}); err != nil {
			t.Fatal(err)
		}
	}
	upload("D1", k1)
	upload("D2", k2)
	// The same keys again change nothing.
	upload("D2", k2)
	s.DevicesDeleted(ctx, alice, []string{"D2"})
	updates, _ := rec.take()
	want := []string{
		"[other.test remote.test]/@alice:local.test/D1/1/[]/false/true",
		"[other.test remote.test]/@alice:local.test/D2/2/[1]/false/true",
		"[other.test remote.test]/@alice:local.test/D2/3/[2]/true/false",
	}
	if fmt.Sprint(updates) != fmt.Sprint(want) {
		t.Fatalf("updates:\n%v\nwant\n%v", updates, want)
	}
	dl, err := s.LocalUserDevices(ctx, alice)
	if err != nil || dl.StreamID != 3 || len(dl.Devices) != 1 || dl.Devices[0].DeviceID != "D1" || dl.Devices[0].Keys == nil {
		t.Fatalf("user devices: %+v %v", dl, err)
	}

	// Cross-signing keys: the public ones go out; the self-signing key's
	// signature on a device goes out as an update of that device.
	master, ssk, usk := newTestKey(t), newTestKey(t), newTestKey(t)
	up, err := ParseCrossSigningUpload(alice, mustJSON(crossSigningObj(alice, UsageMaster, master)),
		master.sign(t, crossSigningObj(alice, UsageSelfSigning, ssk), alice, "ed25519:"+master.pub),
		master.sign(t, crossSigningObj(alice, UsageUserSigning, usk), alice, "ed25519:"+master.pub))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UploadCrossSigningKeys(ctx, up, false); err != nil {
		t.Fatal(err)
	}
	signed := ssk.sign(t, deviceKeysObj(alice, "D1", k1), alice, "ed25519:"+ssk.pub)
	if failures, err := s.UploadSignatures(ctx, alice, map[string]map[string]json.RawMessage{alice: {"D1": signed}}); err != nil || len(failures) != 0 {
		t.Fatalf("signature upload: %v %v", failures, err)
	}
	updates, signing := rec.take()
	if fmt.Sprint(signing) != "[[other.test remote.test]/@alice:local.test/true/true]" {
		t.Fatalf("signing key updates: %v", signing)
	}
	if fmt.Sprint(updates) != "[[other.test remote.test]/@alice:local.test/D1/4/[3]/false/true]" {
		t.Fatalf("updates after the signature: %v", updates)
	}
	if dl, _ := s.LocalUserDevices(ctx, alice); dl.StreamID != 4 || signaturesBy(dl.Devices[0].Keys, alice)["ed25519:"+ssk.pub] == "" {
		t.Fatalf("user devices after the signature: %+v", dl)
	}
}

// Updates of remote users' device lists: applied in sequence, a gap
// resynchronises, updates for users of other servers or nobody follows
// are ignored, and key queries are answered from the cache.
func TestRemoteDeviceListUpdates(t *testing.T) {
	ctx := context.Background()
	s, db := testService(t)
	t.Cleanup(s.Stop)
	rec := &listRecorder{lists: map[string]*DeviceList{}}
	s.SetRemote(rec, nil)
	const bob = "@bob:remote.test"
	join(t, db, "!r:local.test", "@alice:local.test", bob, "@eve:evil.test")
	b1, b2, b3 := newTestKey(t), newTestKey(t), newTestKey(t)
	keys := func(device string, k testKey) json.RawMessage {
		return k.sign(t, deviceKeysObj(bob, device, k), bob, "ed25519:"+device)
	}
	rec.lists[bob] = &DeviceList{UserID: bob, StreamID: 4, Devices: []DeviceListItem{{DeviceID: "B1", DeviceDisplayName: "phone", Keys: keys("B1", b1)}}}
	cachedDevices := func() string {
		ls, err := db.RemoteDeviceLists(ctx, []string{bob})
		if err != nil {
			t.Fatal(err)
		}
		l := ls[bob]
		if l == nil {
			return "none"
		}
		out := fmt.Sprintf("%d:%v", l.StreamID, l.Stale)
		for _, d := range l.Devices {
			out += ":" + d.DeviceID
		}
		return out
	}
	// The first update finds nothing cached: the list is fetched.
	s.HandleDeviceListUpdate(ctx, "remote.test", DeviceListUpdate{UserID: bob, DeviceID: "B1", StreamID: 4, PrevID: []int64{3}, Keys: keys("B1", b1)})
	waitFor(t, "the list fetched", func() bool { return cachedDevices() == "4:false:B1" })
	// In sequence: applied without fetching.
	s.HandleDeviceListUpdate(ctx, "remote.test", DeviceListUpdate{UserID: bob, DeviceID: "B2", StreamID: 5, PrevID: []int64{4}, Keys: keys("B2", b2)})
	if got := cachedDevices(); got != "5:false:B1:B2" {
		t.Fatalf("after an update in sequence: %s", got)
	}
	// Keys that are not the device's own, another server speaking for
	// bob, a malformed user ID: ignored.
	s.HandleDeviceListUpdate(ctx, "remote.test", DeviceListUpdate{UserID: bob, DeviceID: "B3", StreamID: 6, PrevID: []int64{5}, Keys: keys("OTHER", b3)})
	s.HandleDeviceListUpdate(ctx, "evil.test", DeviceListUpdate{UserID: bob, DeviceID: "B1", StreamID: 6, PrevID: []int64{5}, Deleted: true})
	s.HandleDeviceListUpdate(ctx, "evil.test", DeviceListUpdate{UserID: "bob", DeviceID: "B1", StreamID: 6, Deleted: true})
	// A user of the sending server who shares no room with anyone here.
	s.HandleDeviceListUpdate(ctx, "remote.test", DeviceListUpdate{UserID: "@stranger:remote.test", DeviceID: "S", StreamID: 1})
	if got := cachedDevices(); got != "5:false:B1:B2" {
		t.Fatalf("after ignored updates: %s", got)
	}
	if ls, _ := db.RemoteDeviceLists(ctx, []string{"@stranger:remote.test"}); len(ls) != 0 {
		t.Fatal("a list of a user nobody follows")
	}

	// Queries for bob are answered from the cache (the recorder cannot be
	// queried), display names included.
	resp, err := s.QueryKeys(ctx, "@alice:local.test", map[string][]string{bob: nil}, 0)
	if err != nil || len(resp.DeviceKeys[bob]) != 2 || resp.Failures["remote.test"] != nil {
		t.Fatalf("query from the cache: %+v %v", resp, err)
	}
	var unsigned struct {
		Unsigned struct {
			Name string `json:"device_display_name"`
		} `json:"unsigned"`
	}
	if json.Unmarshal(resp.DeviceKeys[bob]["B1"], &unsigned); unsigned.Unsigned.Name != "phone" {
		t.Fatalf("B1 from the cache: %s", resp.DeviceKeys[bob]["B1"])
	}
	resp, _ = s.QueryKeys(ctx, "@alice:local.test", map[string][]string{bob: {"B2"}}, 0)
	if len(resp.DeviceKeys[bob]) != 1 || resp.DeviceKeys[bob]["B2"] == nil {
		t.Fatalf("one device from the cache: %+v", resp.DeviceKeys)
	}

	// Cross-signing keys: a self-signing key not signed by the master key
	// is refused; good ones are cached and queried.
	master, ssk := newTestKey(t), newTestKey(t)
	s.HandleSigningKeyUpdate(ctx, "remote.test", SigningKeyUpdate{UserID: bob, MasterKey: mustJSON(crossSigningObj(bob, UsageMaster, master)),
		SelfSigningKey: ssk.sign(t, crossSigningObj(bob, UsageSelfSigning, ssk), bob, "ed25519:"+ssk.pub)})
	if resp, _ := s.QueryKeys(ctx, "@alice:local.test", map[string][]string{bob: nil}, 0); resp.MasterKeys[bob] != nil {
		t.Fatalf("a badly signed update was taken: %s", resp.MasterKeys[bob])
	}
	s.HandleSigningKeyUpdate(ctx, "evil.test", SigningKeyUpdate{UserID: bob, MasterKey: mustJSON(crossSigningObj(bob, UsageMaster, master))})
	if resp, _ := s.QueryKeys(ctx, "@alice:local.test", map[string][]string{bob: nil}, 0); resp.MasterKeys[bob] != nil {
		t.Fatalf("another server's update was taken: %s", resp.MasterKeys[bob])
	}
	s.HandleSigningKeyUpdate(ctx, "remote.test", SigningKeyUpdate{UserID: bob, MasterKey: mustJSON(crossSigningObj(bob, UsageMaster, master)),
		SelfSigningKey: master.sign(t, crossSigningObj(bob, UsageSelfSigning, ssk), bob, "ed25519:"+master.pub)})
	if resp, _ := s.QueryKeys(ctx, "@alice:local.test", map[string][]string{bob: nil}, 0); resp.MasterKeys[bob] == nil || resp.SelfSigningKeys[bob] == nil {
		t.Fatalf("cross-signing keys from the cache: %+v", resp)
	}

	// A gap: the list goes stale and is fetched again. While it is stale,
	// queries go to bob's server (which is unreachable here).
	rec.mu.Lock()
	rec.fetchErr = errors.New("down")
	rec.mu.Unlock()
	s.HandleDeviceListUpdate(ctx, "remote.test", DeviceListUpdate{UserID: bob, DeviceID: "B3", StreamID: 9, PrevID: []int64{8}, Keys: keys("B3", b3)})
	waitFor(t, "a fetch after the gap", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.fetched) == 2
	})
	if got := cachedDevices(); got != "5:true:B1:B2" {
		t.Fatalf("after a gap: %s", got)
	}
	if resp, _ := s.QueryKeys(ctx, "@alice:local.test", map[string][]string{bob: nil}, 0); resp.Failures["remote.test"] == nil {
		t.Fatalf("a stale list answered a query: %+v", resp)
	}
	rec.mu.Lock()
	rec.fetchErr = nil
	rec.lists[bob] = &DeviceList{UserID: bob, StreamID: 9, Devices: []DeviceListItem{
		{DeviceID: "B1", Keys: keys("B1", b1)}, {DeviceID: "B3", Keys: keys("B3", b3)},
		// A device whose keys are not its own is left out.
		{DeviceID: "B4", Keys: keys("B1", b1)},
	}}
	rec.mu.Unlock()
	s.HandleDeviceListUpdate(ctx, "remote.test", DeviceListUpdate{UserID: bob, DeviceID: "B3", StreamID: 9, PrevID: []int64{8}, Keys: keys("B3", b3)})
	waitFor(t, "the list fetched again", func() bool { return cachedDevices() == "9:false:B1:B3" })

	// When nobody here shares a room with bob any more, the list goes.
	if err := storage.SetMembership(ctx, db, storage.Membership{RoomID: "!r:local.test", UserID: bob, Membership: "leave", EventID: "$l", StreamPos: 2}); err != nil {
		t.Fatal(err)
	}
	s.MemberLeft("!r:local.test", bob)
	waitFor(t, "the list dropped", func() bool { return cachedDevices() == "none" })
}
