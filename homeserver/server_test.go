package homeserver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/storage/storagetest"
)

func TestHealthFollowsTheDatabase(t *testing.T) {
	for _, e := range storagetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			cfg.Database = e.DSN
			if err := cfg.Finish(); err != nil {
				t.Fatal(err)
			}
			log := logrus.New()
			log.SetOutput(io.Discard)
			s, err := New(context.Background(), cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			h := s.ClientHandler()
			get := func() int {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
				return rec.Code
			}
			if code := get(); code != http.StatusOK {
				t.Fatalf("healthy database: %d", code)
			}
			s.DB.Close()
			if code := get(); code != http.StatusServiceUnavailable {
				t.Fatalf("closed database: %d, want 503", code)
			}
		})
	}
}
