// Package homeserver assembles Parley: it opens storage, loads keys, builds
// the client and federation APIs and runs their listeners until shut down.
package homeserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/clientapi"
	"github.com/parley-chat/parley/federation"
	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/config"
	"github.com/parley-chat/parley/homeserver/e2ee"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/keys"
	"github.com/parley-chat/parley/homeserver/media"
	"github.com/parley-chat/parley/homeserver/presence"
	"github.com/parley-chat/parley/homeserver/push"
	"github.com/parley-chat/parley/homeserver/ratelimit"
	"github.com/parley-chat/parley/homeserver/receipts"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/homeserver/typing"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage"
)

// federationBodyLimit bounds federation request bodies: a transaction of
// 50 PDUs of 64 KiB, with room to spare.
const federationBodyLimit = 8 << 20

// Version is Parley's version, reported by `parley version` and the
// federation /version endpoint.
const Version = "0.1.0-dev"

// Server is one running homeserver.
type Server struct {
	cfg              *config.Config
	log              logrus.FieldLogger
	DB               *storage.DB
	SigningKey       *keys.SigningKey
	Users            *users.Service
	Rooms            *rooms.Engine
	Sync             *sync.Service
	Notifier         *sync.Notifier
	Media            *media.Service
	E2EE             *e2ee.Service
	Typing           *typing.Service
	Receipts         *receipts.Service
	Presence         *presence.Service
	Push             *push.Service
	Federation       *federation.API
	FederationSender *federation.Sender
	// AppServices are the application services (bridges).
	AppServices *appservice.Service
	// chat is relations, directories, search, upgrades, reports and
	// server notices (chatwiring.go).
	chat *chat

	tlsCert tls.Certificate
	client  *http.Server
	fed     *http.Server
}

// New opens the database (applying migrations), loads or creates the
// signing key and TLS certificate, and builds the HTTP handlers. Nothing
// listens until Run.
func New(ctx context.Context, cfg *config.Config, log logrus.FieldLogger) (*Server, error) {
	db, err := OpenDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, DB: db, Users: users.New(db, cfg.ServerName)}
	if s.SigningKey, err = keys.LoadOrCreateSigningKey(cfg.SigningKeyPath); err != nil {
		db.Close()
		return nil, err
	}
	if s.tlsCert, err = loadTLS(cfg); err != nil {
		db.Close()
		return nil, err
	}

	roomServices, err := s.buildRooms(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}

	if s.Media, err = NewMediaService(cfg, db, log); err != nil {
		db.Close()
		return nil, err
	}
	s.buildPush()
	if err := s.buildAppServices(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.connectAppServiceEphemeral()

	clientRouter := httputil.NewRouter()
	clientRouter.HandleFunc("/health", s.health).Methods(http.MethodGet)
	rl := cfg.RateLimits
	capi := clientapi.New(clientapi.Config{
		ServerName:                cfg.ServerName,
		PublicBaseURL:             cfg.PublicBaseURL,
		RegistrationEnabled:       cfg.Registration.Enabled,
		RegistrationSharedSecret:  cfg.Registration.SharedSecret,
		RegistrationRequiresToken: cfg.Registration.RequiresToken,
		XForwardedFor:             cfg.XForwardedFor,
		DefaultRoomVersion:        cfg.DefaultRoomVersion,
		Users:                     s.Users,
		Rooms:                     roomServices,
		E2EE:                      s.E2EE,
		AppServices:               s.AppServices,
		Ephemeral:                 clientapi.EphemeralServices{Typing: s.Typing, Receipts: s.Receipts, Presence: s.Presence},
		RateLimits: clientapi.RateLimits{
			Login:          ratelimit.New(rl.Login.PerSecond, rl.Login.Burst),
			Registration:   ratelimit.New(rl.Registration.PerSecond, rl.Registration.Burst),
			RoomCreation:   ratelimit.New(rl.RoomCreation.PerSecond, rl.RoomCreation.Burst),
			MessageSending: ratelimit.New(rl.MessageSending.PerSecond, rl.MessageSending.Burst),
		},
	})
	capi.Register(clientRouter)
	s.buildChat()
	capi.RegisterChat(clientRouter, s.chat.api)
	capi.RegisterPush(clientRouter, s.Push)
	capi.RegisterMedia(clientRouter, clientapi.MediaConfig{Media: s.Media, AllowUnauthenticated: cfg.Media.AllowUnauthenticated})
	clientLog, clientHandler := log.WithField("listener", "client"), clientapi.CORS(clientRouter)
	s.client = &http.Server{
		// Media uploads get their own, larger body limit.
		Handler: clientapi.SplitMediaUploads(
			httputil.Middleware(clientLog, cfg.MaxRequestBodyBytes, clientHandler),
			httputil.Middleware(clientLog, cfg.Media.MaxUploadBytes, clientHandler)),
		ReadHeaderTimeout: 30 * time.Second,
	}

	fedRouter := httputil.NewRouter()
	if s.Federation, err = newFederation(cfg, s.SigningKey, db, log); err != nil {
		db.Close()
		return nil, err
	}
	s.Federation.Register(fedRouter)
	s.Federation.OpenID(fedRouter, s.Users)
	var roomFed rooms.Federation
	roomFed, s.FederationSender = s.Federation.Rooms(s.Rooms, db, s.Users)
	s.Media.SetRemoteFetcher(s.Federation.Media(s.Media))
	s.Federation.UseRoomACL(s.Rooms)
	s.Users.SetRemoteProfiles(s.Federation.QueryProfile)
	s.chat.api.Directory.SetRemote(s.Federation.Directory(s.chat.api.Directory))
	s.chat.api.Directory.SetRemoteHierarchy(s.Federation.Hierarchy(s.chat.api.Directory))
	s.Rooms.SetFederation(roomFed)
	s.federateEphemeral()
	s.federateE2EE()
	s.fed = &http.Server{
		// A transaction may carry 50 events of up to 64 KiB each.
		Handler:           httputil.Middleware(log.WithField("listener", "federation"), max(cfg.MaxRequestBodyBytes, federationBodyLimit), fedRouter),
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.tlsCert}, MinVersion: tls.VersionTLS12},
	}
	return s, nil
}

// OpenDatabase opens the configured database with its pool settings.
func OpenDatabase(ctx context.Context, cfg *config.Config) (*storage.DB, error) {
	return storage.Open(ctx, cfg.Database, storage.Pool{
		MaxOpenConns:    cfg.DatabasePool.MaxOpenConns,
		MaxIdleConns:    cfg.DatabasePool.MaxIdleConns,
		ConnMaxLifetime: cfg.DatabasePool.ConnMaxLifetime,
	})
}

// NewMediaService opens the media store under media.path and builds the
// media repository (for the server and for `parley purge-media`).
func NewMediaService(cfg *config.Config, db *storage.DB, log logrus.FieldLogger) (*media.Service, error) {
	store, err := media.NewFSStore(cfg.Media.Path)
	if err != nil {
		return nil, err
	}
	return media.New(media.Config{
		ServerName:         cfg.ServerName,
		DB:                 db,
		Store:              store,
		MaxUploadBytes:     cfg.Media.MaxUploadBytes,
		MaxBytesPerUser:    cfg.Media.MaxBytesPerUser,
		MaxPendingUploads:  cfg.Media.MaxPendingUploads,
		MaxThumbnailPixels: cfg.Media.MaxThumbnailPixels,
		URLPreview: media.PreviewConfig{
			Enabled:               cfg.Media.URLPreview.Enabled,
			AllowPrivateAddresses: cfg.Media.URLPreview.AllowPrivateAddresses,
		},
		Log: log.WithField("component", "media"),
	}), nil
}

// ClientHandler is the client API's handler, for tests that serve it themselves.
func (s *Server) ClientHandler() http.Handler { return s.client.Handler }

// health answers 200 when the database answers and 503 when it does not,
// so that a load balancer stops sending traffic to a server that cannot work.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.DB.PingContext(ctx); err != nil {
		httputil.Logger(r.Context()).WithError(err).Warn("health: database does not answer")
		httputil.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Listening is called by Run with the real addresses once both listeners
// are open (useful with port 0).
type Listening func(client, federation net.Addr)

// Run serves both APIs until ctx is cancelled, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish within the configured
// shutdown timeout, and closes the database.
func (s *Server) Run(ctx context.Context, ready Listening) error {
	defer s.DB.Close()
	// Resynchronisations of remote device lists write to the database.
	defer s.E2EE.Stop()
	// Evaluates what is still queued before the database closes.
	defer s.Push.Stop()
	s.Push.Start()
	// Runs before the database closes: pushers stop mid-transaction, to
	// send it again after the next start.
	defer s.AppServices.Stop()
	s.AppServices.Start()
	// Resume queued federation traffic first; a stop requested meanwhile
	// is an ordinary shutdown, not a failure.
	if err := s.FederationSender.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("federation sender: %w", err)
	}
	defer s.startEphemeral(ctx)()
	defer s.startChat(ctx)()
	cl, err := net.Listen("tcp", s.cfg.ListenClient)
	if err != nil {
		return fmt.Errorf("client API: %w", err)
	}
	fl, err := net.Listen("tcp", s.cfg.ListenFederation)
	if err != nil {
		cl.Close()
		return fmt.Errorf("federation API: %w", err)
	}
	s.log.WithField("addr", cl.Addr().String()).Info("client API listening (HTTP)")
	s.log.WithField("addr", fl.Addr().String()).Info("federation API listening (HTTPS)")
	if ready != nil {
		ready(cl.Addr(), fl.Addr())
	}

	errs := make(chan error, 2)
	go func() { errs <- s.client.Serve(cl) }()
	go func() { errs <- s.fed.ServeTLS(fl, "", "") }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	s.log.Info("shutting down")
	// Waiting /sync requests answer now rather than at their timeouts.
	s.Notifier.Close()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var shutErr error
	for _, srv := range []*http.Server{s.client, s.fed} {
		if err := srv.Shutdown(sctx); err != nil {
			shutErr = errors.Join(shutErr, err)
		}
	}
	if shutErr != nil {
		s.log.WithError(shutErr).Warn("in-flight requests did not finish in time")
	}
	if runErr != nil && !errors.Is(runErr, http.ErrServerClosed) {
		return runErr
	}
	return nil
}
