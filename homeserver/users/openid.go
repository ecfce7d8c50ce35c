package users

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/storage"
)

// OpenIDTokenLifetime is how long an OpenID token proves who its user is.
const OpenIDTokenLifetime = time.Hour

// RequestOpenIDToken issues a token the user can hand to a third party,
// which asks this server over federation who it belongs to. Only its hash
// is stored.
func (s *Service) RequestOpenIDToken(ctx context.Context, dev *Device) (string, time.Duration, error) {
	token := randomString(32)
	now := s.now()
	if err := s.db.PutOpenIDToken(ctx, openIDHash(token), dev.UserID, now.Add(OpenIDTokenLifetime).UnixMilli(), now.UnixMilli()); err != nil {
		return "", 0, err
	}
	return token, OpenIDTokenLifetime, nil
}

// OpenIDUser is the user an unexpired OpenID token was issued to.
func (s *Service) OpenIDUser(ctx context.Context, token string) (string, error) {
	userID, err := s.db.OpenIDUser(ctx, openIDHash(token), s.now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return "", fmt.Errorf("%w: unknown or expired OpenID token", ErrNotFound)
	}
	return userID, err
}

func openIDHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
