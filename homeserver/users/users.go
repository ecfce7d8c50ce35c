// Package users manages local accounts: registration, passwords, and (as the
// client API grows) devices, access tokens, profiles and account data.
package users

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// ErrUserInUse is returned when the requested user ID is taken.
var ErrUserInUse = errors.New("user ID already taken")

// ErrInvalidUsername is returned for a localpart new registrations may not use.
var ErrInvalidUsername = errors.New("invalid username")

// bcryptCost is bcrypt's default: about 50 ms per hash on this class of
// machine, enough to slow offline guessing without making login sluggish.
const bcryptCost = bcrypt.DefaultCost

// Service is the account service of one server.
type Service struct {
	db         *storage.DB
	serverName string
}

// New returns the account service for serverName backed by db.
func New(db *storage.DB, serverName string) *Service {
	return &Service{db: db, serverName: serverName}
}

// Register creates an account with a password. The localpart must follow
// the grammar for new user IDs, and the whole user ID must fit in 255 bytes.
func (s *Service) Register(ctx context.Context, localpart, password string, admin bool) (id.UserID, error) {
	if err := id.ValidateLocalpartForRegistration(localpart); err != nil {
		return id.UserID{}, fmt.Errorf("%w: %v", ErrInvalidUsername, err)
	}
	uid, err := id.ParseUserID("@" + localpart + ":" + s.serverName)
	if err != nil {
		return id.UserID{}, fmt.Errorf("%w: %v", ErrInvalidUsername, err)
	}
	hash := ""
	if password != "" {
		// bcrypt reads at most 72 bytes; longer passwords are refused
		// rather than silently truncated.
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
		if err != nil {
			return id.UserID{}, fmt.Errorf("hashing password: %w", err)
		}
		hash = string(h)
	}
	err = s.db.CreateAccount(ctx, storage.Account{Localpart: localpart, PasswordHash: hash, IsAdmin: admin})
	if errors.Is(err, storage.ErrUserExists) {
		return id.UserID{}, ErrUserInUse
	}
	return uid, err
}

// CheckPassword reports whether password is the account's password.
func (s *Service) CheckPassword(ctx context.Context, localpart, password string) (bool, error) {
	a, err := s.db.GetAccount(ctx, localpart)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if a.Deactivated || a.PasswordHash == "" {
		return false, nil
	}
	return bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(password)) == nil, nil
}
