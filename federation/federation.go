// Package federation is the server-server API: inbound handlers, X-Matrix
// request signing and verification, the key server and keyring, server
// discovery, and the outbound per-destination sender.
package federation

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
)

// Config is what the federation API needs from the assembled server.
type Config struct {
	ServerName    string
	ServerVersion string
}

// API serves the server-server API.
type API struct {
	cfg Config
}

// New builds the federation API.
func New(cfg Config) *API {
	return &API{cfg: cfg}
}

// Register adds the federation routes to r (from httputil.NewRouter).
func (a *API) Register(r *mux.Router) {
	// GET /version is one of the two federation endpoints that need no
	// X-Matrix authentication.
	r.HandleFunc("/_matrix/federation/v1/version", a.version).Methods(http.MethodGet)
}

func (a *API) version(w http.ResponseWriter, _ *http.Request) {
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"server": map[string]string{"name": "Parley", "version": a.cfg.ServerVersion},
	})
}
