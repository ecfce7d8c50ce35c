// Package clientapi is the client-server HTTP API: routing, authentication,
// request parsing and Matrix errors. Handlers are thin: they call the
// homeserver's services and never touch SQL.
package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
)

// SupportedVersions are the client-server spec versions this server
// implements. Only versions whose endpoints really work are listed: a client
// uses this list to decide what it may call.
var SupportedVersions = []string{}

// Config is what the client API needs from the assembled server.
type Config struct {
	ServerName string
}

// API serves the client-server API.
type API struct {
	cfg Config
}

// New builds the client API.
func New(cfg Config) *API {
	return &API{cfg: cfg}
}

// Register adds the client API's routes to r, which must come from
// httputil.NewRouter so that unknown endpoints answer M_UNRECOGNIZED.
func (a *API) Register(r *mux.Router) {
	r.HandleFunc("/_matrix/client/versions", a.versions).Methods(http.MethodGet)
}

func (a *API) versions(w http.ResponseWriter, _ *http.Request) {
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"versions":          SupportedVersions,
		"unstable_features": map[string]bool{},
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
