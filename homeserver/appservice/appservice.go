// Package appservice connects application services (bridges) to the
// homeserver, as the spec's Application Service API describes: services
// are registered by files named in the configuration; they act as the
// users of their namespaces with their as_token; the homeserver pushes
// them, in order and at least once, the events of the rooms they are
// interested in, asks them about users and aliases of their namespaces
// that do not exist yet, and proxies third-party lookups to them.
package appservice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage"
)

// Errors the client API maps to Matrix errors. Their messages are fit to
// show to the service's developers.
var (
	// ErrExclusive: the user or alias is outside the service's namespaces,
	// or reserved by another service (M_EXCLUSIVE).
	ErrExclusive = errors.New("exclusive")
	// ErrForbidden: the service may not act as this user (M_FORBIDDEN).
	ErrForbidden = errors.New("forbidden")
	// ErrUnknownDevice: device_id names no device of the user
	// (400 M_UNKNOWN_DEVICE).
	ErrUnknownDevice = errors.New("unknown device")
	// ErrMissingParam: a required value is absent (400 M_MISSING_PARAM).
	ErrMissingParam = errors.New("missing parameter")
	// ErrNotFound: no such protocol, network or room (404 M_NOT_FOUND).
	ErrNotFound = errors.New("not found")
)

// Defaults of the Config timings.
const (
	defaultTxnTimeout   = 60 * time.Second
	defaultQueryTimeout = 10 * time.Second
	defaultPingTimeout  = 10 * time.Second
	defaultMinBackoff   = time.Second
	defaultMaxBackoff   = 5 * time.Minute
)

// Config wires the service.
type Config struct {
	ServerName    string
	DB            *storage.DB
	Users         *users.Service
	Rooms         *rooms.Engine
	Registrations []*Registration
	Log           logrus.FieldLogger
	// HTTPClient talks to the services; nil means a plain client (the
	// timeouts below bound each request).
	HTTPClient *http.Client
	// TxnTimeout bounds one transaction push, QueryTimeout a user or alias
	// query or a third-party lookup, PingTimeout a ping. Zero means the
	// defaults (60 s, 10 s, 10 s).
	TxnTimeout, QueryTimeout, PingTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// transaction while a service is unreachable (default 1 s to 5 min,
	// doubling).
	MinBackoff, MaxBackoff time.Duration
}

// Service is the homeserver's side of every configured application service.
type Service struct {
	cfg     Config
	log     logrus.FieldLogger
	db      *storage.DB
	regs    []*Registration
	byToken map[[32]byte]*Registration
	byID    map[string]*Registration
	client  *http.Client

	// known caches the users an application service acted as, so that
	// identity assertion does not read the accounts table on every request.
	known sync.Map // user ID -> knownUser

	push *pushState
}

type knownUser struct {
	isAdmin bool
	until   time.Time
}

// knownUserTTL bounds how long a cached account is trusted: a deactivated
// ghost stops working within this time.
const knownUserTTL = 5 * time.Minute

// New checks the registrations against each other, creates each service's
// sender user if it does not exist and prepares the event queues. Nothing
// is pushed until Start.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.TxnTimeout <= 0 {
		cfg.TxnTimeout = defaultTxnTimeout
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = defaultQueryTimeout
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = defaultPingTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(defaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		cfg.Log = l
	}
	s := &Service{
		cfg: cfg, log: cfg.Log, db: cfg.DB, regs: cfg.Registrations,
		byToken: map[[32]byte]*Registration{}, byID: map[string]*Registration{},
		client: cfg.HTTPClient,
	}
	if s.client == nil {
		// No overall timeout here: each call sets its own deadline.
		s.client = &http.Client{}
	}
	for _, r := range s.regs {
		if r.serverName == "" {
			r.serverName = cfg.ServerName
		}
		if _, dup := s.byID[r.ID]; dup {
			return nil, fmt.Errorf("appservice: two services have the id %q", r.ID)
		}
		k := tokenKey(r.ASToken)
		if _, dup := s.byToken[k]; dup {
			return nil, fmt.Errorf("appservice: two services have the same as_token (%q)", r.ID)
		}
		s.byID[r.ID], s.byToken[k] = r, r
	}
	for _, r := range s.regs {
		if err := s.ensureSender(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := s.initPush(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ensureSender creates the service's own user, which it acts as when it
// names no other.
func (s *Service) ensureSender(ctx context.Context, r *Registration) error {
	if s.cfg.Users == nil {
		return nil
	}
	_, err := s.db.GetAccount(ctx, r.SenderLocalpart)
	if err == nil {
		return nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("appservice %q: %w", r.ID, err)
	}
	_, err = s.cfg.Users.CreateAccount(ctx, users.NewAccount{Username: r.SenderLocalpart})
	if err != nil && !errors.Is(err, users.ErrUserInUse) {
		return fmt.Errorf("appservice %q: creating its sender %s: %w", r.ID, r.SenderUserID, err)
	}
	s.log.WithField("appservice", r.ID).WithField("user_id", r.SenderUserID).Info("created the application service's sender user")
	return nil
}

// Registrations lists the configured services.
func (s *Service) Registrations() []*Registration {
	if s == nil {
		return nil
	}
	return s.regs
}

// ByToken returns the service whose as_token this is, or nil.
func (s *Service) ByToken(token string) *Registration {
	if s == nil || len(s.regs) == 0 {
		return nil
	}
	return s.byToken[tokenKey(token)]
}

// ByID returns the service with this id, or nil.
func (s *Service) ByID(id string) *Registration {
	if s == nil {
		return nil
	}
	return s.byID[id]
}

// VirtualDeviceID is the device ID of a service's requests made without
// device_id: a placeholder no client would choose, that scopes the
// transaction IDs of /send and /sendToDevice to the service.
func VirtualDeviceID(serviceID string) string { return "!appservice:" + serviceID }

// Authenticate resolves a request made with r's as_token: the service acts
// as userID (its sender when empty) and, with deviceID, as that device of
// the user. It returns ErrExclusive for a user outside the service's
// namespaces, ErrForbidden for a user that does not exist, and
// ErrUnknownDevice for a device the user does not have.
func (s *Service) Authenticate(ctx context.Context, r *Registration, userID, deviceID string) (*users.Device, error) {
	if userID == "" {
		userID = r.SenderUserID
	}
	if !r.IsUser(userID) {
		if !r.isLocal(userID) {
			return nil, fmt.Errorf("%w: %s is not a user of this server", ErrForbidden, userID)
		}
		return nil, fmt.Errorf("%w: %s is not in the namespaces of application service %q", ErrExclusive, userID, r.ID)
	}
	localpart := strings.TrimSuffix(strings.TrimPrefix(userID, "@"), ":"+s.cfg.ServerName)
	isAdmin, err := s.accountExists(ctx, userID, localpart)
	if err != nil {
		return nil, err
	}
	dev := &users.Device{UserID: userID, Localpart: localpart, IsAdmin: isAdmin, AppServiceID: r.ID}
	if deviceID == "" {
		dev.DeviceID, dev.Virtual = VirtualDeviceID(r.ID), true
		return dev, nil
	}
	if _, err := s.db.GetDevice(ctx, localpart, deviceID); errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s has no device %s", ErrUnknownDevice, userID, deviceID)
	} else if err != nil {
		return nil, err
	}
	dev.DeviceID = deviceID
	return dev, nil
}

// accountExists checks that a user the service acts as has an active
// account, remembering the answer for a while. It returns whether the
// user is a server admin.
func (s *Service) accountExists(ctx context.Context, userID, localpart string) (bool, error) {
	now := time.Now()
	if v, ok := s.known.Load(userID); ok && now.Before(v.(knownUser).until) {
		return v.(knownUser).isAdmin, nil
	}
	a, err := s.db.GetAccount(ctx, localpart)
	if errors.Is(err, storage.ErrNotFound) || err == nil && a.Deactivated {
		return false, fmt.Errorf("%w: the application service has not registered %s", ErrForbidden, userID)
	}
	if err != nil {
		return false, err
	}
	s.known.Store(userID, knownUser{isAdmin: a.IsAdmin, until: now.Add(knownUserTTL)})
	return a.IsAdmin, nil
}

// exists reports whether a local user has an active account.
func (s *Service) exists(ctx context.Context, userID string) bool {
	localpart := strings.TrimSuffix(strings.TrimPrefix(userID, "@"), ":"+s.cfg.ServerName)
	a, err := s.db.GetAccount(ctx, localpart)
	return err == nil && !a.Deactivated
}

// RateLimitExempt reports whether dev's requests skip the rate limits: a
// service's sender always does, its other users unless the registration
// says rate_limited: true.
func (s *Service) RateLimitExempt(dev *users.Device) bool {
	if s == nil || dev == nil || dev.AppServiceID == "" {
		return false
	}
	r := s.byID[dev.AppServiceID]
	return r != nil && (dev.UserID == r.SenderUserID || !r.RateLimited)
}

// ExclusiveOwner returns the service that claims userID in an exclusive
// namespace, or nil: nobody else may register that user.
func (s *Service) ExclusiveOwner(userID string) *Registration {
	if s == nil {
		return nil
	}
	for _, r := range s.regs {
		if r.ClaimsUserExclusively(userID) {
			return r
		}
	}
	return nil
}

// RegisterUser creates a user in r's namespaces (/register with
// m.login.application_service): no password, no user-interactive
// authentication. device nil registers without logging in.
func (s *Service) RegisterUser(ctx context.Context, r *Registration, username string, device *users.DeviceParams) (*users.Session, error) {
	if username == "" {
		return nil, fmt.Errorf("%w: username is required", ErrMissingParam)
	}
	localpart := strings.ToLower(username)
	if strings.HasPrefix(localpart, "@") {
		localpart = strings.TrimSuffix(strings.TrimPrefix(localpart, "@"), ":"+s.cfg.ServerName)
	}
	userID := "@" + localpart + ":" + s.cfg.ServerName
	if !r.IsUser(userID) {
		return nil, fmt.Errorf("%w: %s is not in the user namespaces of application service %q", ErrExclusive, userID, r.ID)
	}
	if owner := s.ExclusiveOwner(userID); owner != nil && owner != r {
		return nil, fmt.Errorf("%w: %s is reserved by application service %q", ErrExclusive, userID, owner.ID)
	}
	if _, err := s.cfg.Users.CheckUsername(ctx, localpart); err != nil {
		return nil, err
	}
	sess, err := s.cfg.Users.CreateAccount(ctx, users.NewAccount{Username: localpart, Device: device})
	if err != nil {
		return nil, err
	}
	s.log.WithField("appservice", r.ID).WithField("user_id", sess.UserID).Debug("application service registered a user")
	return sess, nil
}

// LoginUser logs a user of r's namespaces in without a password (/login
// with m.login.application_service).
func (s *Service) LoginUser(ctx context.Context, r *Registration, localpart string, device users.DeviceParams) (*users.Session, error) {
	userID := "@" + localpart + ":" + s.cfg.ServerName
	if !r.IsUser(userID) {
		return nil, fmt.Errorf("%w: %s is not in the user namespaces of application service %q", ErrExclusive, userID, r.ID)
	}
	if !s.exists(ctx, userID) {
		return nil, fmt.Errorf("%w: %s is not registered", ErrForbidden, userID)
	}
	return s.cfg.Users.Login(ctx, localpart, device)
}

// RoomHooks are the hooks the room engine calls for user and alias
// queries and exclusive aliases.
func (s *Service) RoomHooks() rooms.NamespaceHooks {
	return rooms.NamespaceHooks{
		QueryUser:          func(ctx context.Context, userID string) { s.QueryUser(ctx, userID) },
		QueryAlias:         s.QueryAlias,
		CheckAliasCreation: s.checkAliasCreation,
	}
}

// checkAliasCreation refuses an alias in a service's exclusive namespace
// to anyone but that service's users.
func (s *Service) checkAliasCreation(_ context.Context, alias, creator string) error {
	for _, r := range s.regs {
		if _, ex := r.MatchesAlias(alias); ex && !r.IsUser(creator) {
			return fmt.Errorf("%w: the alias %s is reserved by application service %q", rooms.ErrExclusive, alias, r.ID)
		}
	}
	return nil
}
