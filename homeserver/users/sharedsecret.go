package users

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"time"
)

// registrationNonceTTL is how long a shared-secret registration nonce can
// be used: long enough for a script to sign and send its request.
const registrationNonceTTL = 2 * time.Minute

// NewRegistrationNonce returns a fresh single-use nonce for the
// shared-secret registration API.
func (s *Service) NewRegistrationNonce(ctx context.Context) (string, error) {
	nonce := randomString(24)
	now := s.now()
	if err := s.db.CreateRegistrationNonce(ctx, nonce, now.Add(registrationNonceTTL).UnixMilli(), now.UnixMilli()); err != nil {
		return "", err
	}
	return nonce, nil
}

// SharedSecretRequest is a shared-secret registration (the admin API
// Synapse defined, which tools such as register_new_matrix_user use).
type SharedSecretRequest struct {
	Nonce       string
	Username    string
	Password    string
	Admin       bool
	UserType    string
	DisplayName string
	// MAC is the hex HMAC-SHA1, keyed with the shared secret, of
	// nonce NUL username NUL password NUL ("admin" or "notadmin"), followed
	// by NUL user_type when a user type is given.
	MAC string
	// Device logs the new account in; nil registers without a device.
	Device *DeviceParams
}

// RegistrationMAC computes the MAC a SharedSecretRequest must carry.
func RegistrationMAC(secret, nonce, username, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	m.Write([]byte(nonce + "\x00" + username + "\x00" + password + "\x00" + role))
	if userType != "" {
		m.Write([]byte("\x00" + userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// SharedSecretRegister creates an account for a request signed with the
// shared secret. The nonce is used up first, whether the MAC is right or
// not, so that each nonce allows one guess. It returns ErrForbidden for an
// unknown, used or expired nonce or a wrong MAC.
func (s *Service) SharedSecretRegister(ctx context.Context, secret string, req SharedSecretRequest) (*Session, error) {
	ok, err := s.db.ConsumeRegistrationNonce(ctx, req.Nonce, s.now().UnixMilli())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: unrecognised nonce", ErrForbidden)
	}
	want := RegistrationMAC(secret, req.Nonce, req.Username, req.Password, req.Admin, req.UserType)
	got, err := hex.DecodeString(req.MAC)
	wantBytes, _ := hex.DecodeString(want)
	if err != nil || !hmac.Equal(got, wantBytes) {
		return nil, fmt.Errorf("%w: HMAC incorrect", ErrForbidden)
	}
	if req.Device != nil {
		if err := checkDeviceParams(*req.Device); err != nil {
			return nil, err
		}
	}
	return s.CreateAccount(ctx, NewAccount{
		Username: req.Username, Password: req.Password, Admin: req.Admin,
		DisplayName: req.DisplayName, Device: req.Device,
	})
}
