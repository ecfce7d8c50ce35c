package users

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Session is what a login or registration hands the client.
type Session struct {
	UserID      string
	DeviceID    string
	AccessToken string
}

// DeviceParams describe the device a login or registration creates (or
// reuses).
type DeviceParams struct {
	// DeviceID is the client's device ID; empty means generate one.
	DeviceID string
	// DisplayName names a newly created device.
	DisplayName string
	// IP is the client's address, recorded as the device's last seen.
	IP string
}

// NewAccount describes an account to create.
type NewAccount struct {
	// Username is the requested localpart; it is lowercased. Empty means
	// generate one.
	Username string
	// Password may be empty for an account that cannot log in with one.
	Password string
	Admin    bool
	// DisplayName defaults to the localpart, as users expect to see a name.
	DisplayName string
	// Device is the first device to log in; nil registers without logging
	// in (inhibit_login).
	Device *DeviceParams
	// tokenSession is the UIA session that reserved a use of a
	// registration token for this account (RegisterInteractive).
	tokenSession string
}

// CheckUsername validates a requested username (lowercased, as the spec
// lets the server map it) and checks that it is free. It returns the
// localpart, or ErrInvalidUsername or ErrUserInUse.
func (s *Service) CheckUsername(ctx context.Context, username string) (string, error) {
	localpart, err := s.validUsername(username)
	if err != nil {
		return "", err
	}
	_, err = s.db.GetAccount(ctx, localpart)
	switch {
	case err == nil:
		return "", ErrUserInUse
	case errors.Is(err, storage.ErrNotFound):
		return localpart, nil
	default:
		return "", err
	}
}

func (s *Service) validUsername(username string) (string, error) {
	localpart := strings.ToLower(username)
	if err := id.ValidateLocalpartForRegistration(localpart); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidUsername, err)
	}
	if _, err := id.ParseUserID(s.UserID(localpart)); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidUsername, err)
	}
	return localpart, nil
}

// generatedLocalpartLength gives 36^12 (about 2^62) names: collisions are
// rare enough that a few retries always find a free one.
const generatedLocalpartLength = 12

// CreateAccount registers a new account and, unless a.Device is nil, logs
// its first device in, in one transaction. The Session has only UserID set
// when no device logged in.
func (s *Service) CreateAccount(ctx context.Context, a NewAccount) (*Session, error) {
	if a.Device != nil {
		if err := checkDeviceParams(*a.Device); err != nil {
			return nil, err
		}
	}
	hash, err := hashPassword(a.Password)
	if err != nil {
		return nil, err
	}
	generate := a.Username == ""
	for attempt := 0; ; attempt++ {
		localpart := a.Username
		if generate {
			localpart = randomFrom("abcdefghijklmnopqrstuvwxyz0123456789", generatedLocalpartLength)
		}
		if localpart, err = s.validUsername(localpart); err != nil {
			return nil, err
		}
		account := storage.Account{Localpart: localpart, PasswordHash: hash, IsAdmin: a.Admin, DisplayName: a.DisplayName}
		if account.DisplayName == "" {
			account.DisplayName = localpart
		}
		sess := &Session{UserID: s.UserID(localpart)}
		var dev *storage.NewDevice
		if a.Device != nil {
			var token string
			dev, token = s.newDevice(localpart, *a.Device)
			sess.DeviceID, sess.AccessToken = dev.DeviceID, token
		}
		err = s.db.CreateAccountWithToken(ctx, account, dev, a.tokenSession)
		if errors.Is(err, storage.ErrUserExists) {
			if generate && attempt < 5 {
				continue
			}
			return nil, ErrUserInUse
		}
		if err != nil {
			return nil, err
		}
		return sess, nil
	}
}

// Register creates an account with a password and no device, for the
// register-user command. The localpart must follow the grammar for new
// user IDs, and the whole user ID must fit in 255 bytes.
func (s *Service) Register(ctx context.Context, localpart, password string, admin bool) (id.UserID, error) {
	if err := id.ValidateLocalpartForRegistration(localpart); err != nil {
		return id.UserID{}, fmt.Errorf("%w: %v", ErrInvalidUsername, err)
	}
	sess, err := s.CreateAccount(ctx, NewAccount{Username: localpart, Password: password, Admin: admin})
	if err != nil {
		return id.UserID{}, err
	}
	return id.ParseUserID(sess.UserID)
}

// dummyHash is compared against when a login names an unknown user, so
// that the answer takes as long as for a known one and does not tell
// which user IDs exist.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("parley timing equaliser"), int(bcryptCost.Load()))
	return h
})

// CheckLogin checks a local user's password. It returns ErrForbidden for an
// unknown user or a wrong password, and ErrUserDeactivated for the right
// password of a deactivated account.
func (s *Service) CheckLogin(ctx context.Context, localpart, password string) error {
	a, err := s.db.GetAccount(ctx, localpart)
	if errors.Is(err, storage.ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return fmt.Errorf("%w: invalid username or password", ErrForbidden)
	}
	if err != nil {
		return err
	}
	if a.PasswordHash == "" {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return fmt.Errorf("%w: invalid username or password", ErrForbidden)
	}
	if bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(password)) != nil {
		return fmt.Errorf("%w: invalid username or password", ErrForbidden)
	}
	if a.Deactivated {
		return ErrUserDeactivated
	}
	return nil
}

// CheckPassword reports whether password is the account's password; it is
// false for deactivated and unknown accounts.
func (s *Service) CheckPassword(ctx context.Context, localpart, password string) (bool, error) {
	err := s.CheckLogin(ctx, localpart, password)
	if errors.Is(err, ErrForbidden) || errors.Is(err, ErrUserDeactivated) {
		return false, nil
	}
	return err == nil, err
}

// Identifier is a user identifier object of the login and user-interactive
// authentication APIs.
type Identifier struct {
	Type string `json:"type"`
	// User is the localpart or user ID of m.id.user.
	User string `json:"user"`
	// Medium and Address identify a third party ID (m.id.thirdparty).
	Medium  string `json:"medium"`
	Address string `json:"address"`
	// Country and Phone identify a phone number (m.id.phone).
	Country string `json:"country"`
	Phone   string `json:"phone"`
}

// ResolveIdentifier finds the local user an identifier names. The legacy
// top-level fields of /login (user, medium and address) are used when
// ident is nil. User IDs and localparts are matched without regard to
// case, since no local user ID has upper case letters.
//
// It returns ErrBadJSON when no identifier is given, ErrUnknownLoginType
// for an unknown identifier type and ErrForbidden for a user of another
// server or a third-party ID (this server binds none to accounts).
func (s *Service) ResolveIdentifier(ident *Identifier, legacyUser, legacyMedium, legacyAddress string) (string, error) {
	if ident == nil {
		switch {
		case legacyUser != "":
			ident = &Identifier{Type: "m.id.user", User: legacyUser}
		case legacyMedium != "" || legacyAddress != "":
			ident = &Identifier{Type: "m.id.thirdparty", Medium: legacyMedium, Address: legacyAddress}
		default:
			return "", fmt.Errorf("%w: missing identifier", ErrBadJSON)
		}
	}
	switch ident.Type {
	case "m.id.user":
		user := ident.User
		if user == "" {
			return "", fmt.Errorf("%w: identifier.user is required", ErrBadJSON)
		}
		if strings.HasPrefix(user, "@") {
			uid, err := id.ParseUserID(user)
			if err != nil {
				return "", fmt.Errorf("%w: invalid username or password", ErrForbidden)
			}
			if string(uid.Server) != s.serverName {
				return "", fmt.Errorf("%w: %s is not a user of this server", ErrForbidden, user)
			}
			user = uid.Localpart
		}
		return strings.ToLower(user), nil
	case "m.id.thirdparty", "m.id.phone":
		return "", fmt.Errorf("%w: no account is bound to this third-party identifier", ErrForbidden)
	case "":
		return "", fmt.Errorf("%w: identifier.type is required", ErrBadJSON)
	default:
		return "", fmt.Errorf("%w: unknown identifier type %q", ErrUnknownLoginType, ident.Type)
	}
}

// ChangePassword sets the password of dev's user. With logoutDevices every
// other device of the user is logged out; dev's own stays, as the spec
// asks.
func (s *Service) ChangePassword(ctx context.Context, dev *Device, newPassword string, logoutDevices bool) error {
	if newPassword == "" {
		return fmt.Errorf("%w: the new password must not be empty", ErrInvalidParam)
	}
	hash, err := hashPassword(newPassword)
	if err != nil {
		return err
	}
	deleted, err := s.db.ChangePassword(ctx, dev.Localpart, hash, logoutDevices, dev.DeviceID)
	if err != nil {
		return storageErr(err, "account")
	}
	s.devicesDeleted(ctx, dev.Localpart, deleted)
	return nil
}

// Deactivate deactivates dev's user: it can no longer log in, its devices
// and tokens are deleted and its profile cleared; with erase its account
// data goes too. The user ID is never given out again.
func (s *Service) Deactivate(ctx context.Context, dev *Device, erase bool) error {
	deleted, err := s.db.DeactivateAccount(ctx, dev.Localpart, erase)
	if err != nil {
		return storageErr(err, "account")
	}
	s.tokens.invalidateUser(dev.Localpart)
	s.devicesDeleted(ctx, dev.Localpart, deleted)
	if h := s.hook().OnDeactivate; h != nil {
		h(ctx, dev.UserID)
	}
	return nil
}
