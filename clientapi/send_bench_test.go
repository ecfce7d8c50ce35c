package clientapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/storage/storagetest"
)

// BenchmarkSendHTTP measures /send over real HTTP from 20 concurrent
// senders into one room, on each database engine. The load tool
// (cmd/parley-load) measures the same from outside, with latencies.
func BenchmarkSendHTTP(b *testing.B) {
	for _, e := range storagetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			srv := hstest.Start(b, hstest.Options{DSN: e.DSN, Configure: func(c *config.Config) { c.RateLimits = config.RateLimits{} }})
			alice := roomUser(b, srv, fmt.Sprintf("alice%d", b.N)) // the function runs once per b.N on one database
			room, err := alice.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				b.Fatal(err)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			base := fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/", srv.ClientURL, room.RoomID)
			var n atomic.Int64
			b.SetParallelism(10) // 2 cores x 10 = 20 senders
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req, _ := http.NewRequest("PUT", fmt.Sprintf("%s%d", base, i), bytes.NewReader([]byte(`{"msgtype":"m.text","body":"hello"}`)))
					req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
