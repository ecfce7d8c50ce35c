package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/homeserver/media"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/storagetest"
)

func TestPurgeMedia(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			work := t.TempDir()
			data := filepath.Join(work, "data")
			env := baseEnv(data, "PARLEY_DATABASE="+e.DSN)
			out, err := runCmd(t, work, env, "generate-config", "--server-name", "localhost", "--data-dir", data)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			cfg := filepath.Join(work, "parley.yaml")
			if err := os.WriteFile(cfg, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}

			// Two cached remote media, one unused for 40 days, and an old
			// local upload, which the purge must keep.
			ctx := context.Background()
			db, err := storage.Open(ctx, e.DSN, storage.Pool{MaxOpenConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			store, err := media.NewFSStore(filepath.Join(data, "media"))
			if err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-40 * 24 * time.Hour).UnixMilli()
			hashes := map[string]string{}
			for _, m := range []struct {
				server, id string
				remote     bool
				ts         int64
			}{
				{"remote.example", "old", true, old},
				{"remote.example", "recent", true, time.Now().UnixMilli()},
				{"localhost", "local", false, old},
			} {
				st, err := store.Put(ctx, strings.NewReader("content of "+m.id))
				if err != nil {
					t.Fatal(err)
				}
				if err := st.Commit(); err != nil {
					t.Fatal(err)
				}
				hashes[m.id] = st.Hash()
				err = db.InsertMedia(ctx, storage.Media{ServerName: m.server, MediaID: m.id, ContentHash: st.Hash(),
					ContentType: "text/plain", Size: st.Size(), CreatedTS: m.ts, Remote: m.remote, LastAccessTS: m.ts}, 0)
				if err != nil {
					t.Fatal(err)
				}
			}
			db.Close()

			out, err = runCmd(t, work, env, "purge-media", "--config", cfg, "--older-than", "720h")
			if err != nil || !strings.Contains(out, "purged 1 cached remote media") {
				t.Fatalf("purge-media: %v\n%s", err, out)
			}
			for id, gone := range map[string]bool{"old": true, "recent": false, "local": false} {
				f, err := store.Open(ctx, hashes[id])
				if err == nil {
					f.Close()
				}
				if (err != nil) != gone {
					t.Errorf("%s: open after the purge: %v", id, err)
				}
			}
			if out, err := runCmd(t, work, env, "purge-media", "--config", cfg); err == nil || !strings.Contains(out, "--older-than") {
				t.Fatalf("purge-media without --older-than: %v\n%s", err, out)
			}
		})
	}
}
