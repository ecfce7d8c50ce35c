// Package e2ee is the server side of end-to-end encryption: device identity
// keys, one-time and fallback keys, cross-signing keys and signatures,
// device list tracking, to-device messages and server-side key backups.
// The server stores public keys and ciphertext only; it checks signatures
// where the spec lets it, so that a client cannot publish keys in another
// device's name.
//
// Other servers are reached through two interfaces the federation layer
// implements, RemoteKeys and RemoteToDevice; without them, remote users'
// keys are reported as failures and to-device messages for them dropped.
// The service adds two extensions to /sync (RegisterSync): device lists
// with one-time key counts, and to-device messages.
package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Errors a client can cause (test with errors.Is). Their messages are fit
// to show to users.
var (
	// ErrBadJSON is a request of the wrong shape (400 M_BAD_JSON).
	ErrBadJSON = errors.New("bad request")
	// ErrInvalidParam is a value that is not acceptable, such as keys for
	// another device or a bad self-signature (400 M_INVALID_PARAM).
	ErrInvalidParam = errors.New("invalid parameter")
	// ErrMissingParam is a required value that is absent (400 M_MISSING_PARAM).
	ErrMissingParam = errors.New("missing parameter")
	// ErrInvalidSignature is a cross-signing key whose signature does not
	// verify (400 M_INVALID_SIGNATURE).
	ErrInvalidSignature = errors.New("invalid signature")
	// ErrForbidden is a refused action (403 M_FORBIDDEN).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound is an unknown backup version or key (404 M_NOT_FOUND).
	ErrNotFound = errors.New("not found")
	// ErrAuthRequired means that the cross-signing upload replaces keys and
	// so needs user-interactive authentication first.
	ErrAuthRequired = errors.New("user-interactive authentication required")
)

// WrongVersionError is a write to a key backup version that is not the
// current one (403 M_WRONG_ROOM_KEYS_VERSION with current_version).
type WrongVersionError struct {
	// Current is the current version, "" when there is none.
	Current string
}

func (e *WrongVersionError) Error() string {
	if e.Current == "" {
		return "there is no current backup version"
	}
	return fmt.Sprintf("wrong backup version: the current version is %s", e.Current)
}

// RemoteKeys reaches the end-to-end keys of other servers' users over
// federation. The federation layer implements it.
type RemoteKeys interface {
	// QueryKeys asks server for its users' keys (POST
	// /_matrix/federation/v1/user/keys/query). deviceKeys maps user IDs to
	// device IDs; an empty list asks for all the user's devices.
	QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (*RemoteQueryResult, error)
	// ClaimKeys claims one-time keys from server (POST
	// /_matrix/federation/v1/user/keys/claim): user ID → device ID →
	// algorithm. The answer maps user ID → device ID → "algorithm:key_id"
	// → key.
	ClaimKeys(ctx context.Context, server string, oneTimeKeys map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error)
	// UserDevices fetches a remote user's whole device list (GET
	// /_matrix/federation/v1/user/devices/{userId}), to resynchronise a
	// cached list after a gap in the user's m.device_list_update EDUs.
	UserDevices(ctx context.Context, userID string) (*DeviceList, error)
}

// RemoteQueryResult is a remote server's answer to a key query.
type RemoteQueryResult struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys,omitempty"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys,omitempty"`
}

// DeviceList is a user's whole device list, as /user/devices/{userId}
// carries it over federation.
type DeviceList struct {
	UserID string `json:"user_id"`
	// StreamID is the device-list stream position of the user's latest
	// change, which the user's next m.device_list_update refers to.
	StreamID       int64            `json:"stream_id"`
	Devices        []DeviceListItem `json:"devices"`
	MasterKey      json.RawMessage  `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage  `json:"self_signing_key,omitempty"`
}

// DeviceListItem is one device of a DeviceList.
type DeviceListItem struct {
	DeviceID          string          `json:"device_id"`
	DeviceDisplayName string          `json:"device_display_name,omitempty"`
	Keys              json.RawMessage `json:"keys,omitempty"`
}

// RemoteToDevice sends to-device messages to other servers' users: the
// federation layer implements it with the m.direct_to_device EDU.
type RemoteToDevice interface {
	// SendToDevice queues messages from sender for users of server: user
	// ID → device ID (or "*") → content. messageID is unique per call, for
	// the receiving server's deduplication.
	SendToDevice(ctx context.Context, server, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error
}

// Waker wakes the waiting /sync requests of users (sync.Notifier).
type Waker interface {
	Wake(userIDs ...string)
}

// Config is what the service needs.
type Config struct {
	DB         *storage.DB
	ServerName string
	// Notifier wakes /sync requests when keys or messages arrive.
	Notifier Waker
	Log      logrus.FieldLogger
	// RemoteKeys and RemoteToDevice reach other servers; nil until the
	// federation layer provides them (see SetRemote).
	RemoteKeys     RemoteKeys
	RemoteToDevice RemoteToDevice
}

// Service is the end-to-end encryption service of one server.
type Service struct {
	// toDeviceObserver is told of every to-device message stored for a
	// local device (application services receive them this way).
	toDeviceObserver atomic.Pointer[func(storage.ToDeviceMessage)]

	db         *storage.DB
	serverName string
	notifier   Waker
	log        logrus.FieldLogger
	remote     atomic.Pointer[remotes]
	remoteMu   sync.Mutex // serialises the writers of remote

	// bg runs work that outlives requests (resynchronising remote
	// device lists, dropping lists nobody follows) until Stop.
	bg bgRunner
	// resyncing holds the remote users whose device lists are being
	// fetched; true asks for one more fetch after the current one.
	resyncMu  sync.Mutex
	resyncing map[string]bool
	// resyncSlots bounds the fetches running at once.
	resyncSlots chan struct{}
	// userLocks order each local user's device list updates: stream IDs
	// are taken and the EDUs queued under the same lock.
	userLocks [32]sync.Mutex

	// Indexes of the sync extensions' positions in sync tokens, set by
	// RegisterSync; -1 before.
	deviceListIdx int
	toDeviceIdx   int
}

type remotes struct {
	keys     RemoteKeys
	toDevice RemoteToDevice
	lists    RemoteDeviceLists
}

// New returns the service.
func New(cfg Config) *Service {
	s := &Service{db: cfg.DB, serverName: cfg.ServerName, notifier: cfg.Notifier, log: cfg.Log,
		deviceListIdx: -1, toDeviceIdx: -1,
		resyncing: map[string]bool{}, resyncSlots: make(chan struct{}, maxConcurrentResyncs)}
	if s.log == nil {
		s.log = logrus.StandardLogger()
	}
	s.bg.init()
	s.remote.Store(&remotes{})
	s.SetRemote(cfg.RemoteKeys, cfg.RemoteToDevice)
	return s
}

// SetRemote installs the federation implementations (either may be nil),
// for a federation layer built after this service. It is safe to call
// while requests are served.
func (s *Service) SetRemote(keys RemoteKeys, toDevice RemoteToDevice) {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	r := *s.remote.Load()
	r.keys, r.toDevice = keys, toDevice
	s.remote.Store(&r)
}

// SetRemoteDeviceLists installs the sender of local users' device list
// changes to other servers (nil stops sending). It is safe to call while
// requests are served.
func (s *Service) SetRemoteDeviceLists(lists RemoteDeviceLists) {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	r := *s.remote.Load()
	r.lists = lists
	s.remote.Store(&r)
}

// Stop ends the background work (resynchronisations of remote device
// lists) and waits for it. Call it before closing the database.
func (s *Service) Stop() { s.bg.stop() }

func (s *Service) remoteKeys() RemoteKeys               { return s.remote.Load().keys }
func (s *Service) remoteToDevice() RemoteToDevice       { return s.remote.Load().toDevice }
func (s *Service) remoteDeviceLists() RemoteDeviceLists { return s.remote.Load().lists }

// localpart returns the localpart of a user ID of this server, or false
// for a remote or malformed one.
func (s *Service) localpart(userID string) (string, bool) {
	uid, err := id.ParseUserID(userID)
	if err != nil || string(uid.Server) != s.serverName {
		return "", false
	}
	return uid.Localpart, true
}

// serverOf returns the server name of a user ID, or false when malformed.
func serverOf(userID string) (string, bool) {
	uid, err := id.ParseUserID(userID)
	if err != nil {
		return "", false
	}
	return string(uid.Server), true
}

// deviceListChanged wakes the /sync requests of everyone a device list
// change of users concerns: the users themselves and whoever shares a room
// with them. The change is committed; a failure here only delays clients
// until their next sync, so it is logged, not returned.
func (s *Service) deviceListChanged(ctx context.Context, userIDs ...string) {
	if s.notifier == nil {
		return
	}
	users, err := s.db.UsersSharingRooms(ctx, userIDs...)
	if err != nil {
		s.log.WithError(err).Warn("e2ee: listing users to wake for a device list change")
		users = userIDs
	}
	s.notifier.Wake(users...)
}

// sortedKeys returns a map's keys in order, for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
