package storage

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/parley-chat/parley/storage/storagetest"
)

// BenchmarkInsertEvents64: one batch of 64 message events (a full batch of
// the room sequencer, or a transaction of remote PDUs), in one
// transaction. One op = the batch.
func BenchmarkInsertEvents64(b *testing.B) {
	ctx := context.Background()
	for _, e := range storagetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			db, err := Open(ctx, e.DSN, Pool{MaxOpenConns: 4})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			body := strings.Repeat("x", 200)
			var pos int64
			// The function runs more than once on the same database.
			if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(stream_pos), 0) FROM events`).Scan(&pos); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rows := make([]*EventRow, 64)
				for j := range rows {
					pos++
					rows[j] = &EventRow{EventID: fmt.Sprintf("$e%d", pos), RoomID: "!r:x", Type: "m.room.message", Sender: "@a:x",
						Depth: pos, OriginServerTS: pos, StreamPos: pos, StateBefore: 1,
						JSON: `{"content":{"body":"` + body + `"}}`, TxnUser: "@a:x", TxnDevice: "D", TxnID: fmt.Sprint(pos)}
				}
				if err := db.WithTx(ctx, func(tx *Tx) error { return db.InsertEvents(ctx, tx, rows) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
