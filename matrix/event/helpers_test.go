package event_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
)

const (
	testServer = "a.example"
	testKeyID  = "ed25519:a"
)

var testKey = func() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("parley test key seed"))
	return ed25519.NewKeyFromSeed(seed[:])
}()

// testKeys knows the public keys of the given servers' test keys.
func testKeys(servers map[string]ed25519.PrivateKey) event.KeyLookup {
	return func(server, keyID string, _ int64) (ed25519.PublicKey, error) {
		if k, ok := servers[server]; ok && keyID == testKeyID {
			return k.Public().(ed25519.PublicKey), nil
		}
		return nil, errors.New("unknown key")
	}
}

func ptr[T any](v T) *T { return &v }

// fakeEventID returns a well-formed event ID of the room version's format.
func fakeEventID(v event.RoomVersion, seed string) string {
	info, _ := v.Info()
	sum := sha256.Sum256([]byte(seed))
	switch info.EventIDFormat {
	case event.EventIDFormatV1:
		return "$" + seed + ":" + testServer
	case event.EventIDFormatV3:
		return "$" + base64.RawStdEncoding.EncodeToString(sum[:])
	default:
		return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
}

// fakeRoomID returns a well-formed room ID of the room version's format.
func fakeRoomID(v event.RoomVersion) string {
	info, _ := v.Info()
	if info.CreateEventIsRoomID {
		sum := sha256.Sum256([]byte("room"))
		return "!" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return "!room:" + testServer
}

// buildTestEvent completes p with plausible defaults for room version v
// (room ID, prev and auth events, depth, timestamp) and builds it with the
// test key.
func buildTestEvent(t testing.TB, v event.RoomVersion, p event.ProtoEvent) *event.Event {
	t.Helper()
	info, _ := v.Info()
	isCreate := p.Type == "m.room.create" && p.StateKey != nil && *p.StateKey == ""
	if p.RoomID == "" && !(isCreate && info.CreateEventIsRoomID) {
		p.RoomID = fakeRoomID(v)
	}
	if !isCreate && p.PrevEvents == nil {
		p.PrevEvents = []string{fakeEventID(v, "prev1"), fakeEventID(v, "prev2")}
		p.AuthEvents = []string{fakeEventID(v, "auth1")}
	}
	if p.Depth == 0 {
		p.Depth = 7
	}
	if p.OriginServerTS == 0 {
		p.OriginServerTS = 1700000000000
	}
	if info.EventIDFormat == event.EventIDFormatV1 && p.ReferenceHashes == nil {
		p.ReferenceHashes = map[string]string{}
		for _, id := range append(append([]string{}, p.PrevEvents...), p.AuthEvents...) {
			sum := sha256.Sum256([]byte(id))
			p.ReferenceHashes[id] = base64.RawStdEncoding.EncodeToString(sum[:])
		}
	}
	ev, err := p.Build(v, testServer, testKeyID, testKey)
	if err != nil {
		t.Fatalf("Build v%s: %v", v, err)
	}
	return ev
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
