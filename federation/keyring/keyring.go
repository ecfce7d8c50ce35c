// Package keyring knows the signing keys of remote servers: it fetches
// their key responses (directly, then through trusted notary servers),
// verifies them, caches them in memory and in the database, and answers
// "which public key did server S publish as key K, and was it valid at time
// T" for event and request signature checks.
package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Errors from lookups; test with errors.Is.
var (
	// ErrUnknownKey: the server has not published the key (as far as could
	// be found out).
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrKeyNotValid: the key is known but was not valid at the time asked
	// about (past its valid_until_ts or expired_ts), or is an old key where
	// a current one is required.
	ErrKeyNotValid = errors.New("signing key not valid at that time")
)

// MaxKeyValidity caps how far ahead a fetched key is trusted: the spec
// requires using the lesser of valid_until_ts and 7 days after fetching, so
// that a stolen key published with a far-future validity cannot be used
// forever.
const MaxKeyValidity = 7 * 24 * time.Hour

// Client sends federation requests (fedclient.Client implements it).
type Client interface {
	Do(ctx context.Context, destination, method, path string, body, out any) error
}

// Store persists keys (storage.DB implements it).
type Store interface {
	ServerKeys(ctx context.Context, serverName string) ([]storage.ServerKey, error)
	StoreServerKeys(ctx context.Context, keys []storage.ServerKey) error
}

// OwnKey is one of this server's own keys, answered without fetching.
type OwnKey struct {
	KeyID  string
	Public ed25519.PublicKey
	// ExpiredTS is when an old key stopped being used; 0 for the current
	// key.
	ExpiredTS int64
}

// Config configures a Keyring.
type Config struct {
	// ServerName and OwnKeys describe this server, whose keys are never
	// fetched.
	ServerName string
	OwnKeys    []OwnKey
	Client     Client
	Store      Store
	// Notaries are the trusted key servers asked when a server cannot be
	// reached directly or does not serve the key wanted.
	Notaries []string
	// MinRefetchInterval is the least time between two fetches of one
	// server's keys, so that requests naming made-up key IDs cannot make
	// this server hammer another. 0 means 30 seconds.
	MinRefetchInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log logrus.FieldLogger
}

// entry is one key of one server.
type entry struct {
	key          ed25519.PublicKey
	validUntilTS int64 // as published in the response
	expiredTS    int64 // 0 for a current verify key
	fetchedTS    int64
	response     []byte
}

// effectiveValidUntil applies the 7-day cap to valid_until_ts.
func (e *entry) effectiveValidUntil() int64 {
	return min(e.validUntilTS, e.fetchedTS+MaxKeyValidity.Milliseconds())
}

// validAt reports whether the key may verify a signature made at atTS
// (0: the room version does not tie keys to time).
func (e *entry) validAt(atTS int64) bool {
	switch {
	case atTS == 0:
		return true
	case e.expiredTS > 0:
		return atTS < e.expiredTS
	default:
		return atTS <= e.effectiveValidUntil()
	}
}

type server struct {
	keys      map[string]*entry
	loaded    bool      // read from the store
	lastFetch time.Time // last fetch attempt, for MinRefetchInterval
	// fetching serialises fetches of this server; a channel rather than a
	// mutex so that waiting respects the caller's context. Direct-only
	// fetches (of a notary's own keys, or for the notary endpoint) take
	// fetchingDirect instead: they acquire nothing else, so a fetch through
	// notary N waiting for N's keys can never wait in a circle with a fetch
	// of N through another notary.
	fetching, fetchingDirect chan struct{}
}

// Keyring is the cache of remote servers' keys. It is safe for concurrent
// use.
type Keyring struct {
	cfg Config
	own map[string]OwnKey

	mu      sync.Mutex
	servers map[string]*server
}

// New builds a keyring.
func New(cfg Config) *Keyring {
	if cfg.MinRefetchInterval == 0 {
		cfg.MinRefetchInterval = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	k := &Keyring{cfg: cfg, own: map[string]OwnKey{}, servers: map[string]*server{}}
	for _, o := range cfg.OwnKeys {
		k.own[o.KeyID] = o
	}
	return k
}

func (k *Keyring) now() int64 { return k.cfg.Now().UnixMilli() }

// server returns the state of serverName, creating it.
func (k *Keyring) server(serverName string) *server {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.servers[serverName]
	if !ok {
		s = &server{keys: map[string]*entry{}, fetching: make(chan struct{}, 1), fetchingDirect: make(chan struct{}, 1)}
		k.servers[serverName] = s
	}
	return s
}

// lookup is Lookup for a remote server, from memory.
func (k *Keyring) lookup(serverName, keyID string, atTS int64, current bool) (ed25519.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.servers[serverName]
	if s == nil || s.keys[keyID] == nil {
		return nil, fmt.Errorf("%w: %s of %s", ErrUnknownKey, keyID, serverName)
	}
	e := s.keys[keyID]
	if current && e.expiredTS > 0 {
		return nil, fmt.Errorf("%w: %s of %s expired at %d", ErrKeyNotValid, keyID, serverName, e.expiredTS)
	}
	if !e.validAt(atTS) {
		return nil, fmt.Errorf("%w: %s of %s at %d", ErrKeyNotValid, keyID, serverName, atTS)
	}
	return e.key, nil
}

func (k *Keyring) lookupOwn(keyID string, atTS int64, current bool) (ed25519.PublicKey, error) {
	o, ok := k.own[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %s of %s (this server)", ErrUnknownKey, keyID, k.cfg.ServerName)
	}
	if o.ExpiredTS > 0 && (current || atTS >= o.ExpiredTS) {
		return nil, fmt.Errorf("%w: %s of %s (this server) expired at %d", ErrKeyNotValid, keyID, k.cfg.ServerName, o.ExpiredTS)
	}
	return o.Public, nil
}

// Lookup returns the key serverName published as keyID if it was valid at
// atTS (0 for room versions that ignore key validity). It only reads
// memory, never the network or the database, so it is an event.KeyLookup;
// call Fetch first for the keys a batch of events needs.
func (k *Keyring) Lookup(serverName, keyID string, atTS int64) (ed25519.PublicKey, error) {
	if serverName == k.cfg.ServerName {
		return k.lookupOwn(keyID, atTS, false)
	}
	return k.lookup(serverName, keyID, atTS, false)
}

var _ event.KeyLookup = (*Keyring)(nil).Lookup

// KeyRequest names a key needed to verify a signature made at AtTS.
type KeyRequest struct {
	ServerName string
	KeyID      string
	AtTS       int64
}

// Fetch makes sure every requested key that can be found is in memory,
// reading the database and fetching from the network as needed, so that
// Lookup answers for them. Servers are fetched concurrently. The error joins
// the reasons keys could not be found; keys that were found are usable
// whatever the error.
func (k *Keyring) Fetch(ctx context.Context, reqs []KeyRequest) error {
	byServer := map[string][]need{}
	for _, r := range reqs {
		if r.ServerName == k.cfg.ServerName {
			continue
		}
		byServer[r.ServerName] = append(byServer[r.ServerName], need{keyID: r.KeyID, atTS: r.AtTS})
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for name, needs := range byServer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := k.ensure(ctx, name, needs, true); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RequestKey returns the key serverName currently signs requests with
// under keyID: one of its verify keys (not an old key), valid now. It
// fetches the server's keys when they are unknown or out of date. It is the
// xmatrix.KeySource of inbound request authentication.
func (k *Keyring) RequestKey(ctx context.Context, serverName, keyID string) (ed25519.PublicKey, error) {
	now := k.now()
	if serverName == k.cfg.ServerName {
		return k.lookupOwn(keyID, now, true)
	}
	if err := k.ensure(ctx, serverName, []need{{keyID: keyID, atTS: now, current: true}}, true); err != nil {
		return nil, err
	}
	return k.lookup(serverName, keyID, now, true)
}

type need struct {
	keyID   string
	atTS    int64
	current bool
}

// satisfied reports whether memory answers every need.
func (k *Keyring) satisfied(serverName string, needs []need) bool {
	for _, n := range needs {
		if _, err := k.lookup(serverName, n.keyID, n.atTS, n.current); err != nil {
			return false
		}
	}
	return true
}

// load reads serverName's keys from the store once per process.
func (k *Keyring) load(ctx context.Context, serverName string, s *server) error {
	k.mu.Lock()
	loaded := s.loaded
	k.mu.Unlock()
	if loaded {
		return nil
	}
	rows, err := k.cfg.Store.ServerKeys(ctx, serverName)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range rows {
		if len(r.PublicKey) != ed25519.PublicKeySize {
			continue
		}
		e := &entry{key: r.PublicKey, validUntilTS: r.ValidUntilTS, expiredTS: r.ExpiredTS, fetchedTS: r.FetchedTS, response: r.Response}
		if cur := s.keys[r.KeyID]; cur == nil || e.validUntilTS > cur.validUntilTS {
			s.keys[r.KeyID] = e
		}
	}
	s.loaded = true
	return nil
}

// ensure gets the keys needs asks for into memory: from the store, else
// by fetching directly and then (if allowed) through the notaries.
func (k *Keyring) ensure(ctx context.Context, serverName string, needs []need, viaNotaries bool) error {
	if _, err := id.ParseServerName(serverName); err != nil {
		return err
	}
	s := k.server(serverName)
	if err := k.load(ctx, serverName, s); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if k.satisfied(serverName, needs) {
		return nil
	}
	lock := s.fetching
	if !viaNotaries {
		lock = s.fetchingDirect
	}
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-lock }()
	// Another caller may have fetched while this one waited.
	if k.satisfied(serverName, needs) {
		return nil
	}
	k.mu.Lock()
	recent := k.cfg.Now().Sub(s.lastFetch) < k.cfg.MinRefetchInterval
	if !recent {
		s.lastFetch = k.cfg.Now()
	}
	k.mu.Unlock()
	if recent {
		return k.unsatisfied(serverName, needs)
	}

	var errs []error
	if err := k.fetchDirect(ctx, serverName); err != nil {
		errs = append(errs, fmt.Errorf("directly: %w", err))
	} else if k.satisfied(serverName, needs) {
		return nil
	}
	if viaNotaries {
		for _, notary := range k.cfg.Notaries {
			if notary == serverName || notary == k.cfg.ServerName {
				continue
			}
			if err := k.fetchFromNotary(ctx, notary, serverName, needs); err != nil {
				errs = append(errs, fmt.Errorf("via %s: %w", notary, err))
				continue
			}
			if k.satisfied(serverName, needs) {
				return nil
			}
		}
	}
	if len(errs) == 0 {
		// Fetched fine, but the key was not among those published (or
		// not valid at the time asked).
		return k.unsatisfied(serverName, needs)
	}
	return fmt.Errorf("%w: %w", k.unsatisfied(serverName, needs), errors.Join(errs...))
}

// unsatisfied returns why memory does not answer the first need it cannot
// (ErrUnknownKey or ErrKeyNotValid).
func (k *Keyring) unsatisfied(serverName string, needs []need) error {
	for _, n := range needs {
		if _, err := k.lookup(serverName, n.keyID, n.atTS, n.current); err != nil {
			return err
		}
	}
	return nil
}

// fetchDirect asks serverName for its own keys.
func (k *Keyring) fetchDirect(ctx context.Context, serverName string) error {
	var raw json.RawMessage
	if err := k.cfg.Client.Do(ctx, serverName, "GET", "/_matrix/key/v2/server", nil, &raw); err != nil {
		return err
	}
	resp, err := verifyResponse(raw, serverName)
	if err != nil {
		return err
	}
	return k.store(ctx, resp)
}

// fetchFromNotary asks notary for serverName's keys and keeps the
// responses signed both by serverName and by the notary.
func (k *Keyring) fetchFromNotary(ctx context.Context, notary, serverName string, needs []need) error {
	criteria := map[string]map[string]int64{}
	for _, n := range needs {
		// The spec requires minimum_valid_until_ts so that the notary
		// refreshes a key it holds only until an earlier time.
		ts := max(n.atTS, k.now())
		criteria[n.keyID] = map[string]int64{"minimum_valid_until_ts": max(ts, criteria[n.keyID]["minimum_valid_until_ts"])}
	}
	body := map[string]any{"server_keys": map[string]any{serverName: criteria}}
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := k.cfg.Client.Do(ctx, notary, "POST", "/_matrix/key/v2/query", body, &out); err != nil {
		return err
	}
	var errs []error
	found := 0
	for _, raw := range out.ServerKeys {
		var head struct {
			ServerName string `json:"server_name"`
		}
		if json.Unmarshal(raw, &head) != nil || head.ServerName != serverName {
			continue // a notary may add other servers' keys; ignore them
		}
		if err := k.verifyNotarySignature(ctx, notary, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := verifyResponse(raw, serverName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := k.store(ctx, resp); err != nil {
			return err
		}
		found++
	}
	if found == 0 {
		if len(errs) == 0 {
			return errors.New("the notary has no keys for the server")
		}
		return errors.Join(errs...)
	}
	return nil
}

// verifyNotarySignature checks that notary signed raw with one of its
// current keys, fetched directly from the notary (never through another
// notary, which would only move the trust question).
func (k *Keyring) verifyNotarySignature(ctx context.Context, notary string, raw []byte) error {
	var sigs struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &sigs); err != nil {
		return fmt.Errorf("notary response: %w", err)
	}
	var errs []error
	for keyID := range sigs.Signatures[notary] {
		if !strings.HasPrefix(keyID, "ed25519:") {
			continue
		}
		now := k.now()
		if err := k.ensure(ctx, notary, []need{{keyID: keyID, atTS: now, current: true}}, false); err != nil {
			errs = append(errs, err)
			continue
		}
		pub, err := k.lookup(notary, keyID, now, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := event.VerifyJSON(notary, keyID, pub, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: response not signed by notary %s", event.ErrBadSignature, notary)
	}
	return errors.Join(errs...)
}

// keyResponse is a verified key response.
type keyResponse struct {
	serverName   string
	validUntilTS int64
	keys         map[string]*entry // without fetchedTS and response
	canonical    []byte            // with only the server's own signatures
}

type rawKeys struct {
	ServerName string `json:"server_name"`
	VerifyKeys map[string]struct {
		Key string `json:"key"`
	} `json:"verify_keys"`
	OldVerifyKeys map[string]struct {
		Key       string `json:"key"`
		ExpiredTS int64  `json:"expired_ts"`
	} `json:"old_verify_keys"`
	ValidUntilTS int64                        `json:"valid_until_ts"`
	Signatures   map[string]map[string]string `json:"signatures"`
}

func decodeKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not a base64 ed25519 public key")
	}
	return b, nil
}

// verifyResponse checks a /_matrix/key/v2/server response: it is about
// serverName, has valid_until_ts, and is signed by serverName with at least
// one of its verify keys, every such signature verifying. Keys of other
// algorithms than ed25519 are ignored.
func verifyResponse(raw []byte, serverName string) (*keyResponse, error) {
	var r rawKeys
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("key response: %w", err)
	}
	if r.ServerName != serverName {
		return nil, fmt.Errorf("key response is for %q, not %s", r.ServerName, serverName)
	}
	if r.ValidUntilTS <= 0 {
		return nil, errors.New("key response has no valid_until_ts")
	}
	out := &keyResponse{serverName: serverName, validUntilTS: r.ValidUntilTS, keys: map[string]*entry{}}
	for keyID, v := range r.VerifyKeys {
		if kid, err := id.ParseKeyID(keyID); err != nil || kid.Algorithm != "ed25519" {
			continue
		}
		pub, err := decodeKey(v.Key)
		if err != nil {
			return nil, fmt.Errorf("verify key %s: %w", keyID, err)
		}
		out.keys[keyID] = &entry{key: pub, validUntilTS: r.ValidUntilTS}
	}
	for keyID, v := range r.OldVerifyKeys {
		if kid, err := id.ParseKeyID(keyID); err != nil || kid.Algorithm != "ed25519" {
			continue
		}
		if _, dup := out.keys[keyID]; dup {
			return nil, fmt.Errorf("key %s is both a verify key and an old one", keyID)
		}
		pub, err := decodeKey(v.Key)
		if err != nil {
			return nil, fmt.Errorf("old verify key %s: %w", keyID, err)
		}
		if v.ExpiredTS <= 0 {
			return nil, fmt.Errorf("old verify key %s has no expired_ts", keyID)
		}
		out.keys[keyID] = &entry{key: pub, validUntilTS: r.ValidUntilTS, expiredTS: v.ExpiredTS}
	}
	signed := false
	for keyID := range r.Signatures[serverName] {
		if !strings.HasPrefix(keyID, "ed25519:") {
			continue
		}
		e := out.keys[keyID]
		if e == nil || e.expiredTS > 0 {
			return nil, fmt.Errorf("%w: key response signed with %s, which is not among its verify keys", event.ErrBadSignature, keyID)
		}
		if err := event.VerifyJSON(serverName, keyID, e.key, raw); err != nil {
			return nil, err
		}
		signed = true
	}
	if !signed {
		return nil, fmt.Errorf("%w: key response of %s is not self-signed", event.ErrBadSignature, serverName)
	}
	canon, err := onlyOwnSignatures(raw, serverName)
	if err != nil {
		return nil, err
	}
	out.canonical = canon
	return out, nil
}

// onlyOwnSignatures returns the canonical response with other servers'
// (notaries') signatures removed: what is stored and served again is the
// server's own statement.
func onlyOwnSignatures(raw []byte, serverName string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	var sigs map[string]json.RawMessage
	if err := json.Unmarshal(obj["signatures"], &sigs); err != nil {
		return nil, err
	}
	own, err := json.Marshal(map[string]json.RawMessage{serverName: sigs[serverName]})
	if err != nil {
		return nil, err
	}
	obj["signatures"] = own
	return canonicaljson.Marshal(obj)
}

// store merges a verified response into memory and the database. A key
// already known from a response valid for longer is kept: a replayed older
// response must not undo what a newer one said.
func (k *Keyring) store(ctx context.Context, resp *keyResponse) error {
	now := k.now()
	s := k.server(resp.serverName)
	var rows []storage.ServerKey
	k.mu.Lock()
	for keyID, e := range resp.keys {
		if cur := s.keys[keyID]; cur != nil && cur.validUntilTS > e.validUntilTS {
			continue
		}
		e.fetchedTS, e.response = now, resp.canonical
		s.keys[keyID] = e
		rows = append(rows, storage.ServerKey{
			ServerName: resp.serverName, KeyID: keyID, PublicKey: e.key,
			ValidUntilTS: e.validUntilTS, ExpiredTS: e.expiredTS, FetchedTS: now, Response: resp.canonical,
		})
	}
	k.mu.Unlock()
	if err := k.cfg.Store.StoreServerKeys(ctx, rows); err != nil {
		// Memory already holds the keys; losing the database copy only
		// costs a refetch after restart.
		k.cfg.Log.WithError(err).WithField("server", resp.serverName).Warn("keyring: cannot store server keys")
	}
	return nil
}

// Responses returns serverName's self-signed key responses, for this
// server's notary endpoint: the cached ones, refreshed by a direct fetch
// when none is valid until minValidUntilTS, when one of keyIDs is missing,
// or when the newest is past half its lifetime (as the spec recommends to
// notaries). If the server cannot be reached, the cached responses are
// returned all the same, so that old events stay verifiable; the result is
// empty when nothing is known.
func (k *Keyring) Responses(ctx context.Context, serverName string, keyIDs []string, minValidUntilTS int64) ([][]byte, error) {
	if _, err := id.ParseServerName(serverName); err != nil {
		return nil, err
	}
	s := k.server(serverName)
	if err := k.load(ctx, serverName, s); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if k.needsRefresh(s, keyIDs, minValidUntilTS) {
		if err := k.refreshDirect(ctx, serverName, s); err != nil {
			k.cfg.Log.WithError(err).WithField("server", serverName).Debug("notary: serving cached keys")
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	seen := map[string]bool{}
	var out [][]byte
	for _, e := range s.keys {
		if !seen[string(e.response)] {
			seen[string(e.response)] = true
			out = append(out, e.response)
		}
	}
	return out, nil
}

func (k *Keyring) needsRefresh(s *server, keyIDs []string, minValidUntilTS int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	minValidUntilTS = max(minValidUntilTS, now)
	for _, kid := range keyIDs {
		if s.keys[kid] == nil {
			return true
		}
	}
	var newest *entry
	for _, e := range s.keys {
		if newest == nil || e.fetchedTS > newest.fetchedTS {
			newest = e
		}
	}
	if newest == nil || newest.validUntilTS < minValidUntilTS {
		return true
	}
	half := newest.fetchedTS + (newest.validUntilTS-newest.fetchedTS)/2
	return now > half
}

// refreshDirect fetches serverName's keys directly, within the refetch
// limit.
func (k *Keyring) refreshDirect(ctx context.Context, serverName string, s *server) error {
	select {
	case s.fetchingDirect <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.fetchingDirect }()
	k.mu.Lock()
	recent := k.cfg.Now().Sub(s.lastFetch) < k.cfg.MinRefetchInterval
	if !recent {
		s.lastFetch = k.cfg.Now()
	}
	k.mu.Unlock()
	if recent {
		return nil
	}
	return k.fetchDirect(ctx, serverName)
}
