// Package keyserver serves this server's signing keys
// (GET /_matrix/key/v2/server) and acts as a notary for other servers' keys
// (GET and POST /_matrix/key/v2/query), adding its own signature to each
// response it relays.
package keyserver

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
)

// maxQueryServers bounds one POST /_matrix/key/v2/query, whose every
// server may cost a remote fetch.
const maxQueryServers = 100

// OldKey is a key this server no longer signs with, still published in
// old_verify_keys so that events it signed can be verified.
type OldKey struct {
	KeyID     string
	Public    ed25519.PublicKey
	ExpiredTS int64
}

// Responses gives other servers' self-signed key responses (the keyring
// implements it).
type Responses interface {
	Responses(ctx context.Context, serverName string, keyIDs []string, minValidUntilTS int64) ([][]byte, error)
}

// Config configures the key server.
type Config struct {
	ServerName string
	KeyID      string
	Key        ed25519.PrivateKey
	OldKeys    []OldKey
	// ValidityPeriod is how long after each response its keys are
	// declared valid (valid_until_ts).
	ValidityPeriod time.Duration
	// Keys answers notary queries about other servers.
	Keys Responses
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the key endpoints.
type Server struct {
	cfg Config
}

// New builds the key server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}
}

// Register adds the key endpoints, which need no request authentication.
func (s *Server) Register(r *mux.Router) {
	r.HandleFunc("/_matrix/key/v2/server", s.serverKeys).Methods(http.MethodGet)
	// The key ID suffix was removed from the spec, but older servers still
	// ask this way; the answer is the same.
	r.HandleFunc("/_matrix/key/v2/server/{keyID}", s.serverKeys).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/key/v2/query/{serverName}", s.queryOne).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/key/v2/query", s.queryMany).Methods(http.MethodPost)
}

// OwnKeys returns this server's key response, signed with its current key.
func (s *Server) OwnKeys() ([]byte, error) {
	type verifyKey struct {
		Key string `json:"key"`
	}
	type oldKey struct {
		Key       string `json:"key"`
		ExpiredTS int64  `json:"expired_ts"`
	}
	pub := s.cfg.Key.Public().(ed25519.PublicKey)
	old := map[string]oldKey{}
	for _, k := range s.cfg.OldKeys {
		old[k.KeyID] = oldKey{Key: base64.RawStdEncoding.EncodeToString(k.Public), ExpiredTS: k.ExpiredTS}
	}
	unsigned, err := canonicaljson.Marshal(map[string]any{
		"server_name":     s.cfg.ServerName,
		"verify_keys":     map[string]verifyKey{s.cfg.KeyID: {Key: base64.RawStdEncoding.EncodeToString(pub)}},
		"old_verify_keys": old,
		"valid_until_ts":  s.cfg.Now().Add(s.cfg.ValidityPeriod).UnixMilli(),
	})
	if err != nil {
		return nil, err
	}
	return event.SignJSON(s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key, unsigned)
}

func (s *Server) serverKeys(w http.ResponseWriter, r *http.Request) {
	body, err := s.OwnKeys()
	if err != nil {
		httputil.Logger(r.Context()).WithError(err).Error("signing our key response")
		httputil.WriteError(w, httputil.Unknown())
		return
	}
	writeRaw(w, body)
}

func writeRaw(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (s *Server) queryOne(w http.ResponseWriter, r *http.Request) {
	serverName := mux.Vars(r)["serverName"]
	var minValid int64
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			httputil.WriteError(w, httputil.InvalidParam("minimum_valid_until_ts must be an integer"))
			return
		}
		minValid = n
	}
	keys, err := s.notarise(r.Context(), serverName, nil, minValid)
	if err != nil {
		httputil.Logger(r.Context()).WithError(err).Error("notary query")
		httputil.WriteError(w, httputil.Unknown())
		return
	}
	writeKeys(w, keys)
}

type queryRequest struct {
	ServerKeys map[string]map[string]struct {
		MinimumValidUntilTS int64 `json:"minimum_valid_until_ts"`
	} `json:"server_keys"`
}

func (s *Server) queryMany(w http.ResponseWriter, r *http.Request) {
	var req queryRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.ServerKeys == nil {
		httputil.WriteError(w, httputil.BadJSON("server_keys is required"))
		return
	}
	if len(req.ServerKeys) > maxQueryServers {
		httputil.WriteError(w, httputil.BadJSON(fmt.Sprintf("at most %d servers per query", maxQueryServers)))
		return
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  []json.RawMessage
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for serverName, criteria := range req.ServerKeys {
		var keyIDs []string
		var minValid int64
		for kid, c := range criteria {
			keyIDs = append(keyIDs, kid)
			minValid = max(minValid, c.MinimumValidUntilTS)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			keys, err := s.notarise(r.Context(), serverName, keyIDs, minValid)
			mu.Lock()
			defer mu.Unlock()
			all = append(all, keys...)
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		httputil.Logger(r.Context()).WithField("errors", fmt.Sprint(errs)).Error("notary query")
		httputil.WriteError(w, httputil.Unknown())
		return
	}
	writeKeys(w, all)
}

func writeKeys(w http.ResponseWriter, keys []json.RawMessage) {
	if keys == nil {
		keys = []json.RawMessage{}
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"server_keys": keys})
}

// notarise returns serverName's key responses with this server's signature
// added. An invalid server name or an unreachable server with nothing
// cached gives an empty list, as the spec asks; only local failures are
// errors.
func (s *Server) notarise(ctx context.Context, serverName string, keyIDs []string, minValid int64) ([]json.RawMessage, error) {
	if _, err := id.ParseServerName(serverName); err != nil {
		return nil, nil
	}
	if serverName == s.cfg.ServerName {
		own, err := s.OwnKeys()
		if err != nil {
			return nil, err
		}
		return []json.RawMessage{own}, nil
	}
	responses, err := s.cfg.Keys.Responses(ctx, serverName, keyIDs, minValid)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(responses))
	for _, resp := range responses {
		signed, err := event.SignJSON(s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key, resp)
		if err != nil {
			return nil, err
		}
		out = append(out, signed)
	}
	return out, nil
}
