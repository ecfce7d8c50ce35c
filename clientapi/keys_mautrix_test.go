package clientapi_test

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/backup"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/storage/storagetest"
)

// TestKeysDecodeWithMautrix reads the end-to-end answers with a real
// client library's types, to catch shapes that raw-map tests would let
// through (a string where a number belongs, a missing required field).
func TestKeysDecodeWithMautrix(t *testing.T) {
	ctx := context.Background()
	srv := e2eServer(t, storagetest.SQLite(t))
	alice := e2eRegister(t, srv, "alice")
	bob := e2eRegister(t, srv, "bob")
	alice.mustDo("POST", "/keys/upload", map[string]any{
		"device_keys":   alice.sign(alice.deviceKeysObj()),
		"one_time_keys": alice.oneTimeKeys(0, 1),
	})
	cli, err := mautrix.NewClient(srv.ClientURL, mid.UserID(bob.UserID), bob.Token)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = mid.DeviceID(bob.DeviceID)

	q, err := cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{mid.UserID(alice.UserID): {}}})
	if err != nil {
		t.Fatal(err)
	}
	dk, ok := q.DeviceKeys[mid.UserID(alice.UserID)][mid.DeviceID(alice.DeviceID)]
	if !ok || dk.Keys.GetEd25519(mid.DeviceID(alice.DeviceID)).String() != alice.pub {
		t.Fatalf("query: %+v", q)
	}

	c, err := cli.ClaimKeys(ctx, &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
		mid.UserID(alice.UserID): {mid.DeviceID(alice.DeviceID): mid.KeyAlgorithmSignedCurve25519}}})
	if err != nil || len(c.OneTimeKeys[mid.UserID(alice.UserID)][mid.DeviceID(alice.DeviceID)]) != 1 {
		t.Fatalf("claim: %+v %v", c, err)
	}

	content := mevent.Content{Raw: map[string]any{"hello": "world"}}
	if _, err := cli.SendToDevice(ctx, mevent.NewEventType("m.test"), &mautrix.ReqSendToDevice{
		Messages: map[mid.UserID]map[mid.DeviceID]*mevent.Content{mid.UserID(alice.UserID): {"*": &content}}}); err != nil {
		t.Fatal(err)
	}
	acli, _ := mautrix.NewClient(srv.ClientURL, mid.UserID(alice.UserID), alice.Token)
	s, err := acli.SyncRequest(ctx, 0, "", "", false, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ToDevice.Events) != 1 || s.ToDevice.Events[0].Sender != mid.UserID(bob.UserID) || s.FallbackKeys == nil {
		t.Fatalf("sync: to-device %+v, fallback key types %v", s.ToDevice.Events, s.FallbackKeys)
	}

	v, err := cli.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
		Algorithm: mid.KeyBackupAlgorithmMegolmBackupV1, AuthData: backup.MegolmAuthData{PublicKey: "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	// The ephemeral key must be a 32-byte curve25519 key for the client
	// library to decode it; the server never looks inside.
	sessionData := json.RawMessage(`{"ephemeral":"` + alice.pub + `","ciphertext":"Yw","mac":"bQ"}`)
	if _, err := cli.PutKeysInBackup(ctx, v.Version, &mautrix.ReqKeyBackup{Rooms: map[mid.RoomID]mautrix.ReqRoomKeyBackup{
		"!r:localhost": {Sessions: map[mid.SessionID]mautrix.ReqKeyBackupData{"s1": {FirstMessageIndex: 0, ForwardedCount: 0, IsVerified: true, SessionData: sessionData}}}}}); err != nil {
		t.Fatal(err)
	}
	latest, err := cli.GetKeyBackupLatestVersion(ctx)
	if err != nil || latest.Version != v.Version || latest.Count != 1 || latest.AuthData.PublicKey != "abc" {
		t.Fatalf("latest backup: %+v %v", latest, err)
	}
	keys, err := cli.GetKeyBackup(ctx, v.Version)
	if err != nil || len(keys.Rooms["!r:localhost"].Sessions) != 1 {
		t.Fatalf("backup keys: %+v %v", keys, err)
	}
}
