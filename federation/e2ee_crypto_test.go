//go:build goolm

// This test runs real end-to-end encryption: mautrix's crypto with its
// pure-Go Olm and Megolm (goolm). Without the goolm build tag mautrix's
// crypto package needs libolm through cgo, hence the tag:
//
//	go test -tags goolm -run TestE2EEWithMautrixCrypto ./federation/

package federation_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"
)

// cryptoClient is a mautrix client with an Olm machine: its own device's
// keys, sessions with other devices, and the room keys it holds, all in
// memory.
type cryptoClient struct {
	t     *testing.T
	name  string
	cli   *mautrix.Client
	state *mautrix.MemoryStateStore
	mach  *crypto.OlmMachine
	since string
	// plaintexts are the room messages decrypted so far, by body.
	plaintexts map[string]bool
	// pending are encrypted room events whose key has not come yet.
	pending []*mevent.Event
	// toDevice are the decrypted to-device messages of types the machine
	// does not handle itself.
	toDevice []*crypto.DecryptedOlmEvent
	// changed are the users seen in device_lists.changed.
	changed map[mid.UserID]bool
}

func newCryptoClient(t *testing.T, name string, cli *mautrix.Client) *cryptoClient {
	t.Helper()
	ctx := context.Background()
	if cli.DeviceID == "" {
		who, err := cli.Whoami(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cli.DeviceID = who.DeviceID
	}
	state := mautrix.NewMemoryStateStore().(*mautrix.MemoryStateStore)
	cli.StateStore = state
	log := zerolog.Nop()
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		log = zerolog.New(zerolog.NewConsoleWriter()).With().Str("client", name).Logger().Level(zerolog.DebugLevel)
	}
	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), state)
	if err := mach.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("%s uploads keys: %v", name, err)
	}
	t.Cleanup(mach.Destroy)
	return &cryptoClient{t: t, name: name, cli: cli, state: state, mach: mach,
		plaintexts: map[string]bool{}, changed: map[mid.UserID]bool{}}
}

// crossSign creates and publishes the user's cross-signing keys and signs
// this device with them, as a client does when a user sets up encryption.
func (c *cryptoClient) crossSign() {
	c.t.Helper()
	ctx := context.Background()
	keys, err := c.mach.GenerateCrossSigningKeys()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.mach.PublishCrossSigningKeys(ctx, keys, nil); err != nil {
		c.t.Fatalf("%s publishes cross-signing keys: %v", c.name, err)
	}
	if err := c.mach.SignOwnDevice(ctx, c.mach.OwnIdentity()); err != nil {
		c.t.Fatalf("%s signs its device: %v", c.name, err)
	}
}

// sync runs one /sync and hands what came to the machine: device list
// changes, to-device messages (room keys among them), key counts, room
// state; then decrypts what it can of the room messages.
func (c *cryptoClient) sync() {
	c.t.Helper()
	ctx := context.Background()
	resp, err := c.cli.SyncRequest(ctx, 500, c.since, "", false, mevent.PresenceOnline)
	if err != nil {
		c.t.Fatalf("%s syncs: %v", c.name, err)
	}
	since := c.since
	c.since = resp.NextBatch
	for _, u := range resp.DeviceLists.Changed {
		c.changed[u] = true
	}
	c.mach.HandleDeviceLists(ctx, &resp.DeviceLists, since)
	for _, evt := range resp.ToDevice.Events {
		evt.Type.Class = mevent.ToDeviceEventType
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			continue
		}
		if evt.Type == mevent.ToDeviceEncrypted {
			if dec := c.mach.HandleEncryptedEvent(ctx, evt); dec != nil {
				c.toDevice = append(c.toDevice, dec)
			}
			continue
		}
		c.mach.HandleToDeviceEvent(ctx, evt)
	}
	c.mach.HandleOTKCounts(ctx, &resp.DeviceOTKCount)
	c.mach.MarkOlmHashSavePoint(ctx)
	for roomID, room := range resp.Rooms.Join {
		for _, evt := range append(room.State.Events, room.Timeline.Events...) {
			evt.RoomID = roomID
			if evt.StateKey != nil {
				evt.Type.Class = mevent.StateEventType
				_ = evt.Content.ParseRaw(evt.Type)
				mautrix.UpdateStateStore(ctx, c.state, evt)
				continue
			}
			if evt.Type == mevent.EventEncrypted {
				evt.Type.Class = mevent.MessageEventType
				if err := evt.Content.ParseRaw(evt.Type); err == nil {
					c.pending = append(c.pending, evt)
				}
			}
		}
	}
	left := c.pending[:0]
	for _, evt := range c.pending {
		dec, err := c.mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			left = append(left, evt)
			continue
		}
		_ = dec.Content.ParseRaw(dec.Type)
		if msg := dec.Content.AsMessage(); msg != nil {
			c.plaintexts[msg.Body] = true
		}
	}
	c.pending = left
}

// syncUntil syncs until done says so, failing after a while.
func (c *cryptoClient) syncUntil(what string, done func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: %s did not happen", c.name, what)
		}
		c.sync()
	}
}

// send encrypts a message for everyone in the room and sends it: the
// room key is shared first (over Olm, with each device it trusts) when
// the machine has no current session for the room.
func (c *cryptoClient) send(roomID mid.RoomID, body string) {
	c.t.Helper()
	ctx := context.Background()
	members, err := c.state.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		c.t.Fatal(err)
	}
	var enc *mevent.EncryptedEventContent
	for range 3 {
		if err = c.mach.ShareGroupSession(ctx, roomID, members); err != nil {
			c.t.Fatalf("%s shares the room key: %v", c.name, err)
		}
		enc, err = c.mach.EncryptMegolmEvent(ctx, roomID, mevent.EventMessage, &mevent.MessageEventContent{MsgType: mevent.MsgText, Body: body})
		if !crypto.IsShareError(err) {
			break
		}
	}
	if err != nil {
		c.t.Fatalf("%s encrypts: %v", c.name, err)
	}
	if _, err := c.cli.SendMessageEvent(ctx, roomID, mevent.EventEncrypted, enc); err != nil {
		c.t.Fatal(err)
	}
}

// trusts reports whether the machine holds user's device and trusts it
// through cross-signing (trust on first use of the user's master key).
func (c *cryptoClient) trusts(user mid.UserID, device mid.DeviceID) bool {
	ctx := context.Background()
	dev, err := c.mach.CryptoStore.GetDevice(ctx, user, device)
	if err != nil || dev == nil {
		return false
	}
	trust, err := c.mach.ResolveTrustContext(ctx, dev)
	return err == nil && trust >= mid.TrustStateCrossSignedTOFU
}

// fetch asks for user's keys now, as clients do on a device list change.
func (c *cryptoClient) fetch(user mid.UserID) {
	if _, err := c.mach.FetchKeys(context.Background(), []mid.UserID{user}, true); err != nil {
		c.t.Logf("%s fetches %s's keys: %v", c.name, user, err)
	}
}

// Two users on two servers talk in an encrypted room with real clients:
// Megolm room messages both ways, an Olm-encrypted to-device message, and
// a device that logs in later, which the other server learns of through a
// device list update and which gets the room key of the messages after.
func TestE2EEWithMautrixCrypto(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	ctx := context.Background()
	alice := newCryptoClient(t, "alice", fedUser(t, hs1, "alice"))
	bob := newCryptoClient(t, "bob", fedUser(t, hs2, "bob"))
	aliceID, bobID := alice.cli.UserID, bob.cli.UserID
	alice.crossSign()
	bob.crossSign()
	alice.sync()
	bob.sync()

	room, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*mevent.Event{{
		Type: mevent.StateEncryption, StateKey: new(string),
		Content: mevent.Content{Parsed: &mevent.EncryptionEventContent{Algorithm: mid.AlgorithmMegolmV1}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	roomID := room.RoomID
	if _, err := bob.cli.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	bothJoined := func(c *cryptoClient) func() bool {
		return func() bool {
			encrypted, _ := c.state.IsEncrypted(ctx, roomID)
			return encrypted && c.state.IsInRoom(ctx, roomID, aliceID) && c.state.IsInRoom(ctx, roomID, bobID)
		}
	}
	alice.syncUntil("bob's join", bothJoined(alice))
	bob.syncUntil("the encrypted room", bothJoined(bob))

	// Each trusts the other's device through the other's cross-signing
	// keys, fetched from the other server.
	alice.fetch(bobID)
	bob.fetch(aliceID)
	alice.syncUntil("trust in bob's device", func() bool { return alice.trusts(bobID, bob.cli.DeviceID) })
	bob.syncUntil("trust in alice's device", func() bool { return bob.trusts(aliceID, alice.cli.DeviceID) })

	// Megolm both ways: the room keys travel over Olm as to-device
	// messages between the servers.
	alice.send(roomID, "hello bob, this is encrypted")
	bob.syncUntil("alice's encrypted message", func() bool { return bob.plaintexts["hello bob, this is encrypted"] })
	bob.send(roomID, "hello alice, so is this")
	alice.syncUntil("bob's encrypted message", func() bool { return alice.plaintexts["hello alice, so is this"] })

	// An Olm-encrypted to-device message of alice's for bob's device.
	bobDevice, err := alice.mach.GetOrFetchDevice(ctx, bobID, bob.cli.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	secretType := mevent.Type{Type: "org.parley.test.secret", Class: mevent.ToDeviceEventType}
	if err := alice.mach.SendEncryptedToDevice(ctx, bobDevice, secretType, mevent.Content{Raw: map[string]any{"secret": "only bob's device can read this"}}); err != nil {
		t.Fatal(err)
	}
	bob.syncUntil("alice's encrypted to-device message", func() bool {
		for _, ev := range bob.toDevice {
			if ev.Sender == aliceID && ev.Type.Type == secretType.Type && ev.Content.Raw["secret"] == "only bob's device can read this" {
				return true
			}
		}
		return false
	})

	// Bob logs in on a new device; his first device cross-signs it.
	alice.changed = map[mid.UserID]bool{}
	bob2 := newCryptoClient(t, "bob's new device", login(t, hs2, "bob"))
	bob.syncUntil("bob's own new device", func() bool { return bob.changed[bobID] })
	bob.fetch(bobID)
	newDevice, err := bob.mach.GetOrFetchDevice(ctx, bobID, bob2.cli.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.mach.SignOwnDevice(ctx, newDevice); err != nil {
		t.Fatal(err)
	}
	// Alice's server hears of the device (and of its signature) through
	// m.device_list_update EDUs: alice's sync says bob's list changed, and
	// her client fetches it.
	alice.syncUntil("bob's new device, trusted", func() bool {
		return alice.changed[bobID] && alice.trusts(bobID, bob2.cli.DeviceID)
	})
	lists, err := hs1.DB.RemoteDeviceLists(ctx, []string{bobID.String()})
	if err != nil {
		t.Fatal(err)
	}
	if l := lists[bobID.String()]; l == nil || l.Stale || len(l.Devices) != 2 {
		t.Fatalf("hs1's copy of bob's device list: %+v", l)
	}

	// The next message's room key reaches the new device too.
	bob2.sync()
	alice.send(roomID, "welcome, new device")
	bob2.syncUntil("the message after it logged in", func() bool { return bob2.plaintexts["welcome, new device"] })
	bob.syncUntil("the same message", func() bool { return bob.plaintexts["welcome, new device"] })
	if bob2.plaintexts["hello bob, this is encrypted"] {
		t.Error("the new device read a message from before it existed")
	}
}
