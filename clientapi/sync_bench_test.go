package clientapi_test

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/storage/storagetest"
)

// BenchmarkIncrementalSync measures one send followed by the incremental
// /sync that delivers it, over real HTTP: the server side of the delivery
// latency the load tool reports.
func BenchmarkIncrementalSync(b *testing.B) {
	for _, e := range storagetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			srv := hstest.Start(b, hstest.Options{DSN: e.DSN, Configure: func(c *config.Config) { c.RateLimits = config.RateLimits{} }})
			ctx := context.Background()
			alice := roomUser(b, srv, fmt.Sprintf("alice%d", b.N))
			room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				b.Fatal(err)
			}
			resp, err := alice.SyncRequest(ctx, 0, "", "", false, mevent.PresenceOnline)
			if err != nil {
				b.Fatal(err)
			}
			since := resp.NextBatch
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := alice.SendText(ctx, room.RoomID, "hello"); err != nil {
					b.Fatal(err)
				}
				resp, err := alice.SyncRequest(ctx, 0, since, "", false, mevent.PresenceOnline)
				if err != nil {
					b.Fatal(err)
				}
				since = resp.NextBatch
			}
		})
	}
}
