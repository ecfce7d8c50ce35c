// Package clientapi is the client-server HTTP API: routing, authentication,
// request parsing and Matrix errors. Handlers are thin: they call the
// homeserver's services and never touch SQL.
//
// Every endpoint under /_matrix/client/v3 is also served under the older
// /_matrix/client/r0 prefix, which some clients still use: register routes
// with the route function Register passes around, never on the router
// directly.
package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/e2ee"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/ratelimit"
	"github.com/parley-chat/parley/homeserver/users"
)

// SupportedVersions are the client-server spec versions this server
// implements. Clients use the list to decide what they may call, so only
// versions whose endpoints really work are listed: r0.6.1, v1.1 and v1.2
// (spaces, /hierarchy and registration tokens included; 3PIDs, guests and
// single sign-on are optional and absent). Later versions are not claimed
// until each one's additions are checked; features of later versions that
// do work are announced in UnstableFeatures.
var SupportedVersions = []string{"r0.6.1", "v1.1", "v1.2"}

// UnstableFeatures announces features beyond the listed versions that
// clients gate on flags: authenticated media (Matrix 1.11, MSC3916).
var UnstableFeatures = map[string]bool{"org.matrix.msc3916.stable": true}

// clientPrefixes are the path prefixes every client endpoint answers under.
var clientPrefixes = []string{"/_matrix/client/v3", "/_matrix/client/r0"}

// Config is what the client API needs from the assembled server.
type Config struct {
	ServerName string
	// PublicBaseURL is the client API's URL as clients reach it, for
	// discovery.
	PublicBaseURL string
	// RegistrationEnabled opens /register to everyone.
	RegistrationEnabled bool
	// RegistrationRequiresToken limits /register to holders of a
	// registration token (with RegistrationEnabled).
	RegistrationRequiresToken bool
	// RegistrationSharedSecret enables the shared-secret admin
	// registration API when not empty.
	RegistrationSharedSecret string
	// XForwardedFor takes client addresses from X-Forwarded-For (behind a
	// reverse proxy).
	XForwardedFor bool
	// DefaultRoomVersion is the version of rooms created without one, as
	// /capabilities tells clients ("" means the spec's recommendation).
	DefaultRoomVersion string

	Users      *users.Service
	RateLimits RateLimits
	// Rooms serves the room, message and sync endpoints (rooms.go).
	Rooms RoomServices
	// E2EE serves the key, to-device and key backup endpoints (keys.go).
	E2EE *e2ee.Service
	// AppServices are the application services: as_token authentication,
	// their registration and login, ping, third-party lookups and network
	// directories (appservice.go, thirdparty.go). Nil means none.
	AppServices *appservice.Service
	// Ephemeral serves typing, receipts, read markers and presence
	// (typing.go, receipts.go, presence.go).
	Ephemeral EphemeralServices
}

// RateLimits are the limiters of the actions the client API throttles. A
// nil limiter does not limit. Apply them with API.rateLimit.
type RateLimits struct {
	// Login is keyed by client address and by account.
	Login *ratelimit.Limiter
	// Registration is keyed by client address.
	Registration *ratelimit.Limiter
	// RoomCreation is keyed by user ID.
	RoomCreation *ratelimit.Limiter
	// MessageSending is keyed by user ID.
	MessageSending *ratelimit.Limiter
}

// API serves the client-server API.
type API struct {
	cfg   Config
	users *users.Service
	rooms RoomServices
}

// New builds the client API.
func New(cfg Config) *API {
	return &API{cfg: cfg, users: cfg.Users, rooms: cfg.Rooms}
}

// Register adds the client API's routes to r, which must come from
// httputil.NewRouter so that unknown endpoints answer M_UNRECOGNIZED.
func (a *API) Register(r *mux.Router) {
	r.HandleFunc("/_matrix/client/versions", a.versions).Methods(http.MethodGet)
	r.HandleFunc("/.well-known/matrix/client", a.wellKnown).Methods(http.MethodGet)
	route := func(path string, h http.HandlerFunc, methods ...string) {
		for _, prefix := range clientPrefixes {
			r.HandleFunc(prefix+path, h).Methods(methods...)
		}
	}
	if a.users != nil {
		a.registerAccountRoutes(route)
		raw := func(path string, h http.HandlerFunc, methods ...string) { r.HandleFunc(path, h).Methods(methods...) }
		a.registerAdminRoutes(raw)
		a.registerTokenRoutes(raw)
	}
	if a.rooms.Rooms != nil {
		a.registerRoomRoutes(route)
	}
	if a.cfg.E2EE != nil {
		a.registerKeysRoutes(route)
	}
	if a.users != nil {
		a.registerAppServiceRoutes(r, route)
	}
	a.registerEphemeralRoutes(route)
}

func (a *API) versions(w http.ResponseWriter, _ *http.Request) {
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"versions":          SupportedVersions,
		"unstable_features": UnstableFeatures,
	})
}

// CORS answers preflight requests and adds the headers the spec asks for to
// every response, since web clients call the API from other origins. It
// wraps the whole router: preflight OPTIONS requests must succeed for every
// path, including ones whose other methods are not yet known.
func CORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}
