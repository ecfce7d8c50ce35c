package users

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/parley-chat/parley/storage"
)

// RegistrationToken is a token that lets its holder register while
// registration.requires_token is set. UsesAllowed and ExpiryTime (ms since
// the epoch) are nil when unlimited; Pending counts the registrations under
// way that reserved a use, Completed those that used one.
type RegistrationToken = storage.RegistrationToken

// RegistrationTokenUpdate changes a token: a field is written only when its
// Set flag is true, and nil there means unlimited.
type RegistrationTokenUpdate = storage.RegistrationTokenUpdate

// NewRegistrationToken describes a token to create.
type NewRegistrationToken struct {
	// Token is the token; empty means generate one of Length characters.
	Token string
	// Length is the length of a generated token: 1 to 64, 0 for 16.
	Length      int
	UsesAllowed *int64
	ExpiryTime  *int64
}

// MaxRegistrationTokenLength is the spec's limit on a token's length.
const MaxRegistrationTokenLength = 64

// registrationTokenAlphabet is the opaque identifier grammar tokens follow.
const registrationTokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

// ValidRegistrationToken reports whether token follows the grammar of
// registration tokens: 1 to 64 characters of [A-Za-z0-9._~-].
func ValidRegistrationToken(token string) bool {
	if token == "" || len(token) > MaxRegistrationTokenLength {
		return false
	}
	for i := range len(token) {
		if strings.IndexByte(registrationTokenAlphabet, token[i]) < 0 {
			return false
		}
	}
	return true
}

// RegistrationTokenValid reports whether token may be used to register
// now: it exists, has not expired and has a use left (GET
// /register/m.login.registration_token/validity).
func (s *Service) RegistrationTokenValid(ctx context.Context, token string) (bool, error) {
	if !ValidRegistrationToken(token) {
		return false, nil
	}
	return s.db.RegistrationTokenValid(ctx, token, s.now().UnixMilli())
}

// reserveRegistrationToken is the m.login.registration_token stage: it
// reserves a use of the token for the session, or fails the stage. The
// reservation lasts as long as the session; registering turns it into a
// completed use (RegisterInteractive).
func (s *Service) reserveRegistrationToken(ctx context.Context, token string, sess *storage.UIASession) (code, msg string, err error) {
	if token == "" {
		return "M_MISSING_PARAM", "auth.token is required", nil
	}
	if ValidRegistrationToken(token) {
		ok, err := s.db.ReserveRegistrationToken(ctx, token, sess.ID, s.now().UnixMilli(), sess.ExpiresTS)
		if err != nil || ok {
			return "", "", err
		}
	}
	// Synapse's code for an unknown, expired or used-up token.
	return "M_UNAUTHORIZED", "invalid registration token", nil
}

// RegisterInteractive is POST /register: it runs one step of the
// user-interactive authentication req and, once that is complete, creates
// the account. It returns the new session, or the challenge to answer with
// 401. When the completed flow had a registration token stage, the use the
// stage reserved becomes a completed use in the account's transaction, and
// is given back if the account cannot be created.
func (s *Service) RegisterInteractive(ctx context.Context, req UIARequest, a NewAccount) (*Session, *UIAChallenge, error) {
	sessID, completed, ch, err := s.userInteractiveAuth(ctx, req)
	if err != nil || ch != nil {
		return nil, ch, err
	}
	if !slices.Contains(completed, AuthTypeRegistrationToken) {
		sess, err := s.CreateAccount(ctx, a)
		return sess, nil, err
	}
	a.tokenSession = sessID
	sess, err := s.CreateAccount(ctx, a)
	if err == nil {
		return sess, nil, nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		// The reservation expired with the session, between the stage
		// and now.
		err = fmt.Errorf("%w: the registration token reservation expired; register again", ErrForbidden)
	}
	if rerr := s.db.ReleaseRegistrationTokenReservation(context.WithoutCancel(ctx), sessID); rerr != nil {
		return nil, nil, errors.Join(err, rerr)
	}
	return nil, nil, err
}

// CreateRegistrationToken creates a token; a generated one when t.Token is
// empty. Bad values are ErrInvalidParam, as is a token that exists.
func (s *Service) CreateRegistrationToken(ctx context.Context, t NewRegistrationToken) (*RegistrationToken, error) {
	if err := checkTokenLimits(t.UsesAllowed, t.ExpiryTime, s.now().UnixMilli()); err != nil {
		return nil, err
	}
	generate := t.Token == ""
	if generate {
		if t.Length == 0 {
			t.Length = 16
		}
		if t.Length < 1 || t.Length > MaxRegistrationTokenLength {
			return nil, fmt.Errorf("%w: length must be between 1 and %d", ErrInvalidParam, MaxRegistrationTokenLength)
		}
	} else if !ValidRegistrationToken(t.Token) {
		return nil, fmt.Errorf("%w: token must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'", ErrInvalidParam, MaxRegistrationTokenLength)
	}
	for attempt := 0; ; attempt++ {
		token := t.Token
		if generate {
			// Letters and digits only, as Synapse generates them: easy
			// to read out and to type.
			token = randomFrom(registrationTokenAlphabet[:62], t.Length)
		}
		err := s.db.CreateRegistrationToken(ctx, token, t.UsesAllowed, t.ExpiryTime)
		if errors.Is(err, storage.ErrRegistrationTokenExists) {
			// Short generated tokens may collide; try others.
			if generate && attempt < 5 {
				continue
			}
			return nil, fmt.Errorf("%w: the token %q already exists", ErrInvalidParam, token)
		}
		if err != nil {
			return nil, err
		}
		return s.GetRegistrationToken(ctx, token)
	}
}

// checkTokenLimits checks uses_allowed and expiry_time as given by an
// admin: not negative, and not already past.
func checkTokenLimits(usesAllowed, expiryTime *int64, now int64) error {
	if usesAllowed != nil && *usesAllowed < 0 {
		return fmt.Errorf("%w: uses_allowed must be a non-negative integer or null", ErrInvalidParam)
	}
	if expiryTime != nil && *expiryTime < now {
		return fmt.Errorf("%w: expiry_time must not be in the past", ErrInvalidParam)
	}
	return nil
}

// RegistrationTokens lists the tokens; only the valid ones (or only the
// invalid ones) when valid is not nil.
func (s *Service) RegistrationTokens(ctx context.Context, valid *bool) ([]RegistrationToken, error) {
	list, err := s.db.ListRegistrationTokens(ctx)
	if err != nil || valid == nil {
		return list, err
	}
	now := s.now().UnixMilli()
	return slices.DeleteFunc(list, func(t RegistrationToken) bool { return tokenValid(t, now) != *valid }), nil
}

// tokenValid is the storage's validity condition, for a token in hand.
func tokenValid(t RegistrationToken, now int64) bool {
	return (t.ExpiryTime == nil || *t.ExpiryTime > now) && (t.UsesAllowed == nil || t.Pending+t.Completed < *t.UsesAllowed)
}

// GetRegistrationToken returns a token, or ErrNotFound.
func (s *Service) GetRegistrationToken(ctx context.Context, token string) (*RegistrationToken, error) {
	t, err := s.db.GetRegistrationToken(ctx, token)
	return t, storageErr(err, "no such registration token")
}

// UpdateRegistrationToken changes a token's limits and returns it, or
// returns ErrNotFound.
func (s *Service) UpdateRegistrationToken(ctx context.Context, token string, u RegistrationTokenUpdate) (*RegistrationToken, error) {
	var uses, expiry *int64
	if u.SetUsesAllowed {
		uses = u.UsesAllowed
	}
	if u.SetExpiryTime {
		expiry = u.ExpiryTime
	}
	if err := checkTokenLimits(uses, expiry, s.now().UnixMilli()); err != nil {
		return nil, err
	}
	t, err := s.db.UpdateRegistrationToken(ctx, token, u)
	return t, storageErr(err, "no such registration token")
}

// DeleteRegistrationToken deletes a token, or returns ErrNotFound.
func (s *Service) DeleteRegistrationToken(ctx context.Context, token string) error {
	return storageErr(s.db.DeleteRegistrationToken(ctx, token), "no such registration token")
}
