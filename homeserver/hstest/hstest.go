// Package hstest starts real Parley servers inside tests: a real database
// (SQLite, or PostgreSQL when configured), real listeners on loopback, real
// HTTP. Tests drive them as clients and other servers would.
package hstest

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/storage/storagetest"
)

// Server is a running test homeserver.
type Server struct {
	*homeserver.Server
	Config *config.Config
	// ClientURL is the base URL of the client API, e.g. http://127.0.0.1:34567.
	ClientURL string
	// FederationAddr is the host:port of the federation listener.
	FederationAddr string

	t         testing.TB
	beforeRun func(*homeserver.Server)
	cancel    context.CancelFunc
	done      chan error
}

// Options adjust a test server's configuration before it starts.
type Options struct {
	// ServerName defaults to "localhost".
	ServerName string
	// DSN is the database; empty means a fresh SQLite database.
	DSN string
	// Configure may change anything else.
	Configure func(*config.Config)
	// BeforeRun, when set, is called with the built server before it starts
	// serving (on every start), for tests that add routes of their own.
	BeforeRun func(*homeserver.Server)
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.ServerName = "localhost"
	if opts.ServerName != "" {
		cfg.ServerName = opts.ServerName
	}
	cfg.Database = opts.DSN
	if cfg.Database == "" {
		cfg.Database = storagetest.SQLite(t)
	}
	cfg.ListenClient = "127.0.0.1:0"
	cfg.ListenFederation = "127.0.0.1:0"
	cfg.Registration.Enabled = true
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	s := &Server{Config: cfg, t: t, beforeRun: opts.BeforeRun}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// Restart stops the server and starts it again on the same data directory
// and database (the listeners get new ports).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		log.SetOutput(os.Stderr)
		log.SetLevel(logrus.DebugLevel)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := homeserver.New(ctx, s.Config, log.WithField("server", s.Config.ServerName))
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	if s.beforeRun != nil {
		s.beforeRun(srv)
	}
	ready := make(chan struct{})
	s.done = make(chan error, 1)
	go func() {
		s.done <- srv.Run(ctx, func(client, fed net.Addr) {
			s.ClientURL = "http://" + client.String()
			s.FederationAddr = fed.String()
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-s.done:
		cancel()
		s.t.Fatalf("server did not start: %v", err)
	}
	s.Server, s.cancel = srv, cancel
}

// Stop shuts the server down gracefully; calling it twice is harmless.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("server stopped with error: %v", err)
	}
	s.cancel = nil
}

// DataPath is a path inside the server's data directory.
func (s *Server) DataPath(name string) string { return filepath.Join(s.Config.DataDir, name) }
