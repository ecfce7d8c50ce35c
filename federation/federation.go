// Package federation is the server-server API: inbound handlers, X-Matrix
// request signing and verification, the key server and keyring, server
// discovery, and the outbound per-destination sender.
//
// The parts live in subpackages with one job each: policy (who may be
// talked to), xmatrix (request signatures), discovery (finding and dialing
// servers), fedclient (signed outbound requests), keyring (remote keys) and
// keyserver (our keys and the notary). This package assembles them.
package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/federation/discovery"
	"github.com/parley-chat/parley/federation/fedclient"
	"github.com/parley-chat/parley/federation/keyring"
	"github.com/parley-chat/parley/federation/keyserver"
	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/federation/xmatrix"
	"github.com/parley-chat/parley/homeserver/httputil"
)

// Config is what the federation API needs from the assembled server.
type Config struct {
	ServerName    string
	ServerVersion string
	// KeyID and Key are the server's current signing key.
	KeyID string
	Key   ed25519.PrivateKey
	// OldKeys are rotated-out keys, published in old_verify_keys.
	OldKeys []keyserver.OldKey
	// KeyValidityPeriod is how long published keys are declared valid.
	KeyValidityPeriod time.Duration
	// Store keeps remote servers' keys.
	Store keyring.Store
	// TrustedKeyServers are the notaries asked for keys.
	TrustedKeyServers []string
	// StaticHosts, AllowPrivateAddresses, RootCAs and DNS configure
	// discovery (see discovery.Config); a nil DNS means the system's.
	StaticHosts           map[string]string
	AllowPrivateAddresses bool
	RootCAs               *x509.CertPool
	DNS                   discovery.DNS
	// AllowServers and DenyServers are the federation policy.
	AllowServers, DenyServers []string
	Log                       logrus.FieldLogger
}

// API serves the server-server API and holds the federation machinery the
// rest of the server uses to talk to other servers.
type API struct {
	cfg      Config
	policy   *policy.Servers
	resolver *discovery.Resolver
	client   *fedclient.Client
	keyring  *keyring.Keyring
	keys     *keyserver.Server
	verifier *xmatrix.Verifier
	authed   *mux.Router

	eduMu       sync.RWMutex
	eduHandlers map[string]EDUHandler

	// sender is set by Rooms; inbound requests tell it who is up.
	senderMu sync.RWMutex
	sender   *Sender
}

// EDUHandler processes one EDU received from origin. It must not block for
// long: the sending server waits for the transaction's answer.
type EDUHandler func(ctx context.Context, origin string, content json.RawMessage)

// HandleEDU registers the handler of an EDU type (m.typing, m.receipt,
// m.presence, m.device_list_update, m.direct_to_device,
// m.signing_key_update...). Unhandled types are ignored, as the spec asks.
func (a *API) HandleEDU(eduType string, h EDUHandler) {
	a.eduMu.Lock()
	defer a.eduMu.Unlock()
	if a.eduHandlers == nil {
		a.eduHandlers = map[string]EDUHandler{}
	}
	a.eduHandlers[eduType] = h
}

func (a *API) eduHandler(eduType string) EDUHandler {
	a.eduMu.RLock()
	defer a.eduMu.RUnlock()
	return a.eduHandlers[eduType]
}

// New builds the federation API and its machinery.
func New(cfg Config) (*API, error) {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("federation: no signing key")
	}
	pol, err := policy.NewServers(cfg.AllowServers, cfg.DenyServers)
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	resolver, err := discovery.New(discovery.Config{
		DNS:                   cfg.DNS,
		StaticHosts:           cfg.StaticHosts,
		AllowPrivateAddresses: cfg.AllowPrivateAddresses,
		RootCAs:               cfg.RootCAs,
		Log:                   cfg.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	client, err := fedclient.New(fedclient.Config{
		ServerName: cfg.ServerName, KeyID: cfg.KeyID, Key: cfg.Key,
		Resolver: resolver, Policy: pol,
	})
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	own := []keyring.OwnKey{{KeyID: cfg.KeyID, Public: cfg.Key.Public().(ed25519.PublicKey)}}
	for _, o := range cfg.OldKeys {
		if o.KeyID == cfg.KeyID {
			return nil, fmt.Errorf("federation: old signing key %s is the current signing key", o.KeyID)
		}
		own = append(own, keyring.OwnKey{KeyID: o.KeyID, Public: o.Public, ExpiredTS: o.ExpiredTS})
	}
	ring := keyring.New(keyring.Config{
		ServerName: cfg.ServerName, OwnKeys: own,
		Client: client, Store: cfg.Store, Notaries: cfg.TrustedKeyServers, Log: cfg.Log,
	})
	a := &API{
		cfg: cfg, policy: pol, resolver: resolver, client: client, keyring: ring,
		keys: keyserver.New(keyserver.Config{
			ServerName: cfg.ServerName, KeyID: cfg.KeyID, Key: cfg.Key, OldKeys: cfg.OldKeys,
			ValidityPeriod: cfg.KeyValidityPeriod, Keys: ring,
		}),
		verifier: &xmatrix.Verifier{ServerName: cfg.ServerName, Keys: ring, Policy: pol},
	}
	return a, nil
}

// Register adds the federation routes to r (from httputil.NewRouter). The
// key endpoints and GET /version need no authentication; every other
// route, registered on Authenticated, needs a valid X-Matrix signature.
func (a *API) Register(r *mux.Router) {
	r.HandleFunc("/_matrix/federation/v1/version", a.version).Methods(http.MethodGet)
	a.keys.Register(r)
	// A subrouter without matchers of its own: its routes take full paths,
	// and a request matching none of them falls through to r's 404.
	a.authed = r.NewRoute().Subrouter()
	a.authed.Use(a.verifier.Middleware, a.heardFrom)
}

// heardFrom notes every authenticated request's origin as alive, so that
// our queue for it is retried at once instead of at the end of a backoff.
func (a *API) heardFrom(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o, ok := xmatrix.Origin(r.Context()); ok {
			a.senderMu.RLock()
			s := a.sender
			a.senderMu.RUnlock()
			if s != nil {
				s.Alive(o)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Authenticated is the router for federation endpoints that require
// X-Matrix authentication; handlers find the sending server with
// xmatrix.Origin. It is nil until Register has been called.
func (a *API) Authenticated() *mux.Router { return a.authed }

// Client sends signed requests to other servers.
func (a *API) Client() *fedclient.Client { return a.client }

// Keyring knows other servers' signing keys.
func (a *API) Keyring() *keyring.Keyring { return a.keyring }

// Resolver finds and dials other servers.
func (a *API) Resolver() *discovery.Resolver { return a.resolver }

// Policy decides which servers this one federates with.
func (a *API) Policy() *policy.Servers { return a.policy }

func (a *API) version(w http.ResponseWriter, _ *http.Request) {
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"server": map[string]string{"name": "Parley", "version": a.cfg.ServerVersion},
	})
}
