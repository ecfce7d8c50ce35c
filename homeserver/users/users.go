// Package users manages local accounts: registration, passwords, devices and
// their access tokens, user-interactive authentication, profiles, account
// data and filters.
//
// Methods take the authenticated *Device where the caller acts as a user,
// and user IDs where they look someone up. Errors a client can cause are
// the sentinel errors below (test with errors.Is); anything else is an
// internal error.
package users

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Errors a client can cause. Their messages are fit to show to users.
var (
	// ErrUserInUse is returned when the requested user ID is taken.
	ErrUserInUse = errors.New("user ID already taken")
	// ErrInvalidUsername is returned for a localpart new registrations may not use.
	ErrInvalidUsername = errors.New("invalid username")
	// ErrForbidden is a failed authentication or a forbidden action.
	ErrForbidden = errors.New("forbidden")
	// ErrUserDeactivated is returned on login to a deactivated account
	// with the right password.
	ErrUserDeactivated = errors.New("this account has been deactivated")
	// ErrUnknownToken is returned for an access token that is not (or no
	// longer) valid.
	ErrUnknownToken = errors.New("unknown access token")
	// ErrNotFound is returned when the thing looked up does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidParam is a value out of range or of the wrong form.
	ErrInvalidParam = errors.New("invalid parameter")
	// ErrBadJSON is a request of the wrong shape.
	ErrBadJSON = errors.New("bad request")
	// ErrUnknownLoginType is an identifier type this server does not know.
	ErrUnknownLoginType = errors.New("unknown identifier or login type")
	// ErrServerManaged is account data the server manages itself
	// (m.fully_read, m.push_rules), which clients may read but not set.
	ErrServerManaged = errors.New("account data type managed by the server")
)

// MaxPasswordBytes is bcrypt's limit. Longer passwords are refused rather
// than silently truncated, which would make the rest of them meaningless.
const MaxPasswordBytes = 72

// bcryptCost is bcrypt's default: about 50 ms per hash on this class of
// machine, enough to slow offline guessing without making login sluggish.
var bcryptCost atomic.Int64

func init() { bcryptCost.Store(int64(bcrypt.DefaultCost)) }

// UseMinimumBcryptCostForTests lowers the bcrypt cost of every Service in
// the process to bcrypt's minimum, so that test suites registering hundreds
// of users stay fast. Production code must never call it: the cost is what
// makes stolen password hashes expensive to crack.
func UseMinimumBcryptCostForTests() { bcryptCost.Store(int64(bcrypt.MinCost)) }

// Hooks let the services above this one react to account changes. They run
// synchronously after the change is committed, in the request's context,
// and must handle (log) their own errors: the change has happened whatever
// they do. Install them with SetHooks.
type Hooks struct {
	// OnProfileChange is called after a user's display name or avatar URL
	// changed, with the new values ("" when unset), to update the user's
	// member events in the rooms they are in.
	OnProfileChange func(ctx context.Context, userID, displayName, avatarURL string)
	// OnDeactivate is called after an account was deactivated, to make the
	// user leave their rooms.
	OnDeactivate func(ctx context.Context, userID string)
	// OnDevicesDeleted is called after devices were deleted (log out,
	// device deletion, password change, deactivation), to delete their
	// end-to-end keys and tell the users who track them.
	OnDevicesDeleted func(ctx context.Context, userID string, deviceIDs []string)
	// NotifyAccountData is called after a user's account data changed, to
	// wake the user's waiting /sync requests.
	NotifyAccountData func(userID string)
}

// Service is the account service of one server.
type Service struct {
	db         *storage.DB
	serverName string
	tokens     *tokenCache
	now        func() time.Time
	hooks      atomic.Pointer[Hooks]
	// remoteProfiles fetches remote users' profiles (SetRemoteProfiles).
	remoteProfiles atomic.Pointer[RemoteProfileFunc]
}

// New returns the account service for serverName backed by db.
func New(db *storage.DB, serverName string) *Service {
	s := &Service{db: db, serverName: serverName, tokens: newTokenCache(), now: time.Now}
	s.hooks.Store(&Hooks{})
	return s
}

// SetHooks installs the hooks the service calls after changes, replacing
// any installed before. It is safe to call while requests are served.
func (s *Service) SetHooks(h Hooks) { s.hooks.Store(&h) }

func (s *Service) hook() *Hooks { return s.hooks.Load() }

// ServerName is the name of the server whose accounts this service manages.
func (s *Service) ServerName() string { return s.serverName }

// UserID returns the full user ID of a local localpart.
func (s *Service) UserID(localpart string) string { return "@" + localpart + ":" + s.serverName }

// localpart returns the localpart of a user ID of this server, or false for
// a malformed or remote user ID.
func (s *Service) localpart(userID string) (string, bool) {
	uid, err := id.ParseUserID(userID)
	if err != nil || string(uid.Server) != s.serverName {
		return "", false
	}
	return uid.Localpart, true
}

// IsLocal reports whether userID is a well-formed user ID of this server.
func (s *Service) IsLocal(userID string) bool {
	_, ok := s.localpart(userID)
	return ok
}

// hashPassword hashes a password for storage; "" stays "" (no password).
func hashPassword(password string) (string, error) {
	if password == "" {
		return "", nil
	}
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("%w: passwords may be at most %d bytes long", ErrInvalidParam, MaxPasswordBytes)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), int(bcryptCost.Load()))
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

// randomString returns n bytes of randomness as unpadded URL-safe base64.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomFrom returns n characters drawn uniformly from alphabet (at most
// 256 characters long).
func randomFrom(alphabet string, n int) string {
	var sb strings.Builder
	b := make([]byte, 1)
	// Rejection sampling keeps the distribution uniform.
	limit := 256 - 256%len(alphabet)
	for sb.Len() < n {
		_, _ = rand.Read(b)
		if int(b[0]) < limit {
			sb.WriteByte(alphabet[int(b[0])%len(alphabet)])
		}
	}
	return sb.String()
}

// storageErr maps storage.ErrNotFound to ErrNotFound.
func storageErr(err error, what string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return err
}
