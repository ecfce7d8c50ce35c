package sync_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/storage/storagetest"
)

// BenchmarkConcurrentSend measures sends from 20 concurrent senders into one
// room: the per-room sequencer should batch them into few transactions.
func BenchmarkConcurrentSend(b *testing.B) {
	for _, e := range storagetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			env := newEnv(&testing.T{}, e.DSN)
			ctx := context.Background()
			alice := "@alice:test.local"
			roomID, err := env.engine.CreateRoom(ctx, rooms.CreateRequest{Creator: alice, Preset: "public_chat"})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			work := make(chan int)
			done := make(chan error)
			for w := 0; w < 20; w++ {
				go func() {
					for i := range work {
						_, err := env.engine.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: alice, Content: text(fmt.Sprint(i))})
						if err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
			}
			for i := 0; i < b.N; i++ {
				work <- i
			}
			close(work)
			for w := 0; w < 20; w++ {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
