package rooms

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

type nopNotifier struct{}

func (nopNotifier) OnNewEvents(int64, []string) {}

// BenchmarkNotify10kMembers: waking the local users of a room of 10,000
// members (half of them local) after a batch of one message.
func BenchmarkNotify10kMembers(b *testing.B) {
	e := &Engine{cfg: Config{ServerName: "hs1.test", Notifier: nopNotifier{}}}
	r := newRoom(e, "!r:hs1.test", "10", event.RoomVersionInfo{})
	for i := 0; i < 10_000; i++ {
		server := "hs1.test"
		if i%2 == 1 {
			server = "hs2.test"
		}
		user := fmt.Sprintf("@u%d:%s", i, server)
		ev, err := event.ProtoEvent{Type: "m.room.member", StateKey: &user, Sender: user, RoomID: r.id,
			Content: json.RawMessage(`{"membership":"join"}`), Depth: 1, OriginServerTS: 1}.Build("10", "hs1.test", "ed25519:a", testKey)
		if err != nil {
			b.Fatal(err)
		}
		r.state[storage.StateKey{Type: "m.room.member", StateKey: user}] = ev
	}
	sender := "@u0:hs1.test"
	msg, _ := event.ProtoEvent{Type: "m.room.message", Sender: sender, RoomID: r.id, Content: json.RawMessage(`{}`), Depth: 2,
		OriginServerTS: 2}.Build("10", "hs1.test", "ed25519:a", testKey)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.notify([]built{{ev: msg}}, int64(i))
	}
}

var testKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
