package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

// fakeRemote stands in for the federation layer.
type fakeRemote struct {
	mu      sync.Mutex
	queried map[string]map[string][]string
	sent    []string // server/sender/type of each SendToDevice
}

func (f *fakeRemote) QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (*RemoteQueryResult, error) {
	f.mu.Lock()
	if f.queried == nil {
		f.queried = map[string]map[string][]string{}
	}
	f.queried[server] = deviceKeys
	f.mu.Unlock()
	switch server {
	case "down.example":
		return nil, errors.New("connection refused")
	case "slow.example":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &RemoteQueryResult{
		DeviceKeys: map[string]map[string]json.RawMessage{
			"@bob:good.example": {"BOBDEV": json.RawMessage(`{"user_id":"@bob:good.example","device_id":"BOBDEV"}`)},
			// A server may not speak for users of other servers.
			"@eve:local.test": {"EVIL": json.RawMessage(`{}`)},
		},
		MasterKeys: map[string]json.RawMessage{
			"@bob:good.example": json.RawMessage(`{"user_id":"@bob:good.example","usage":["master"],"keys":{"ed25519:BOBMASTER":"BOBMASTER"}}`),
		},
	}, nil
}

func (f *fakeRemote) ClaimKeys(ctx context.Context, server string, otks map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	return map[string]map[string]map[string]json.RawMessage{
		"@bob:good.example": {"BOBDEV": {"signed_curve25519:AAA": json.RawMessage(`{"key":"k"}`)}},
	}, nil
}

func (f *fakeRemote) UserDevices(ctx context.Context, userID string) (*DeviceList, error) {
	return nil, errors.New("not used")
}

func (f *fakeRemote) SendToDevice(ctx context.Context, server, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if messageID == "" || len(messages) == 0 {
		return errors.New("empty EDU")
	}
	f.sent = append(f.sent, server+"/"+sender+"/"+eventType)
	return nil
}

func testService(t *testing.T) (*Service, *storage.DB) {
	t.Helper()
	db, err := storage.Open(context.Background(), storagetest.SQLite(t), storage.Pool{MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(Config{DB: db, ServerName: "local.test"}), db
}

func TestRemoteKeys(t *testing.T) {
	ctx := context.Background()
	s, db := testService(t)

	// Without federation, remote servers are failures.
	resp, err := s.QueryKeys(ctx, "@alice:local.test", map[string][]string{"@bob:good.example": nil}, 0)
	if err != nil || resp.Failures["good.example"] == nil {
		t.Fatalf("no federation: %+v %v", resp, err)
	}

	f := &fakeRemote{}
	s.SetRemote(f, f)
	// Alice's user-signing signature on Bob's master key is merged in for
	// her, and only for her.
	if _, err := db.AddKeySignatures(ctx, []storage.KeySignature{{TargetUserID: "@bob:good.example", TargetKeyID: "BOBMASTER",
		SignerUserID: "@alice:local.test", SignerKeyID: "ed25519:ALICEUSK", Signature: "sig"}}, []string{"@alice:local.test"}); err != nil {
		t.Fatal(err)
	}
	resp, err = s.QueryKeys(ctx, "@alice:local.test", map[string][]string{
		"@bob:good.example": {"BOBDEV"}, "@x:down.example": nil, "@y:slow.example": nil, "not a user": nil,
	}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if resp.DeviceKeys["@bob:good.example"]["BOBDEV"] == nil || resp.DeviceKeys["@eve:local.test"] != nil {
		t.Fatalf("device keys: %v", resp.DeviceKeys)
	}
	if resp.Failures["down.example"] == nil || resp.Failures["slow.example"] == nil || resp.Failures["good.example"] != nil {
		t.Fatalf("failures: %v", resp.Failures)
	}
	if got := f.queried["good.example"]["@bob:good.example"]; len(got) != 1 || got[0] != "BOBDEV" {
		t.Fatalf("asked %v", f.queried)
	}
	sigs := signaturesBy(resp.MasterKeys["@bob:good.example"], "@alice:local.test")
	if sigs["ed25519:ALICEUSK"] != "sig" {
		t.Fatalf("Alice's signature not merged: %s", resp.MasterKeys["@bob:good.example"])
	}
	resp, _ = s.QueryKeys(ctx, "@carol:local.test", map[string][]string{"@bob:good.example": nil}, 0)
	if signaturesBy(resp.MasterKeys["@bob:good.example"], "@alice:local.test") != nil {
		t.Fatal("Carol sees Alice's user-signing signature")
	}

	claim, err := s.ClaimKeys(ctx, map[string]map[string]string{"@bob:good.example": {"BOBDEV": "signed_curve25519"}}, 0)
	if err != nil || claim.OneTimeKeys["@bob:good.example"]["BOBDEV"]["signed_curve25519:AAA"] == nil {
		t.Fatalf("remote claim: %+v %v", claim, err)
	}

	// To-device messages for remote users go out once per transaction.
	msgs := map[string]map[string]json.RawMessage{"@bob:good.example": {"*": json.RawMessage(`{"a":1}`)}}
	for range 2 {
		if err := s.SendToDevice(ctx, "@alice:local.test", "ADEV", "m.test", "txn1", msgs); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.sent) != 1 || f.sent[0] != "good.example/@alice:local.test/m.test" {
		t.Fatalf("sent %v", f.sent)
	}
}
