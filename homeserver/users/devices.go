package users

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/parley-chat/parley/storage"
)

// Device is an authenticated caller: the user and device an access token
// belongs to. Handlers receive it from the auth middleware and must treat
// it as read-only.
type Device struct {
	// UserID is the full user ID, "@alice:example.org".
	UserID string
	// Localpart is UserID's localpart.
	Localpart string
	DeviceID  string
	// IsAdmin is true for server admins.
	IsAdmin bool
	// AppServiceID is the application service acting as UserID when the
	// request authenticated with a service's as_token; "" otherwise.
	AppServiceID string
	// Virtual is true when no real device stands behind the request (an
	// application service acting without device_id): DeviceID is then a
	// per-service placeholder that only scopes transaction IDs.
	Virtual bool
}

// DeviceInfo is one of a user's devices as the device list shows it.
type DeviceInfo struct {
	DeviceID    string
	DisplayName string // "" when not set
	LastSeenIP  string // "" when unknown
	LastSeenTS  int64  // 0 when unknown
}

// maxDeviceNameLength bounds device display names, which other users see
// in device lists.
const maxDeviceNameLength = 100

// tokenPrefix starts every access token, so that secret scanners can
// recognise a leaked one.
const tokenPrefix = "pat_"

// newDevice generates the device ID (unless the client chose one) and a
// fresh access token for a login; the token itself goes only to the client.
func (s *Service) newDevice(localpart string, p DeviceParams) (*storage.NewDevice, string) {
	deviceID := p.DeviceID
	if deviceID == "" {
		deviceID = randomFrom("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
	}
	token := tokenPrefix + randomString(32) // 256 bits
	hash := sha256.Sum256([]byte(token))
	return &storage.NewDevice{
		Localpart: localpart, DeviceID: deviceID, DisplayName: p.DisplayName,
		TokenHash: hash[:], TS: s.now().UnixMilli(), IP: p.IP,
	}, token
}

// checkDeviceParams refuses device IDs and names clients could abuse.
func checkDeviceParams(p DeviceParams) error {
	if len(p.DeviceID) > 255 {
		return fmt.Errorf("%w: device_id is longer than 255 bytes", ErrInvalidParam)
	}
	if utf8.RuneCountInString(p.DisplayName) > maxDeviceNameLength {
		return fmt.Errorf("%w: the device name is longer than %d characters", ErrInvalidParam, maxDeviceNameLength)
	}
	return nil
}

// Login gives a local user (whose credentials the caller has checked) an
// access token for a new device, or for the existing device p.DeviceID,
// whose earlier tokens are then revoked.
func (s *Service) Login(ctx context.Context, localpart string, p DeviceParams) (*Session, error) {
	if err := checkDeviceParams(p); err != nil {
		return nil, err
	}
	d, token := s.newDevice(localpart, p)
	if _, err := s.db.LoginDevice(ctx, *d); err != nil {
		return nil, err
	}
	// The device's earlier tokens were revoked.
	s.tokens.invalidateDevices(localpart, []string{d.DeviceID})
	return &Session{UserID: s.UserID(localpart), DeviceID: d.DeviceID, AccessToken: token}, nil
}

// Authenticate returns the device an access token belongs to, or
// ErrUnknownToken. ip is recorded as the device's last-seen address (at
// most every few minutes, to keep writes off the hot path).
func (s *Service) Authenticate(ctx context.Context, token, ip string) (*Device, error) {
	hash := sha256.Sum256([]byte(token))
	now := s.now()
	if dev, touch, ok := s.tokens.get(hash, now); ok {
		if touch {
			if err := s.db.TouchDevice(ctx, dev.Localpart, dev.DeviceID, now.UnixMilli(), ip); err != nil {
				return nil, err
			}
		}
		return &dev, nil
	}
	gen := s.tokens.generation()
	o, err := s.db.TokenOwner(ctx, hash[:])
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrUnknownToken
	}
	if err != nil {
		return nil, err
	}
	dev := Device{UserID: s.UserID(o.Localpart), Localpart: o.Localpart, DeviceID: o.DeviceID, IsAdmin: o.IsAdmin}
	if now.UnixMilli()-o.LastSeenTS >= touchEvery.Milliseconds() {
		if err := s.db.TouchDevice(ctx, o.Localpart, o.DeviceID, now.UnixMilli(), ip); err != nil {
			return nil, err
		}
	}
	s.tokens.put(hash, dev, now, gen)
	return &dev, nil
}

// Logout deletes dev, which revokes its access token.
func (s *Service) Logout(ctx context.Context, dev *Device) error {
	return s.DeleteDevices(ctx, dev, []string{dev.DeviceID})
}

// LogoutAll deletes every device of dev's user, dev included.
func (s *Service) LogoutAll(ctx context.Context, dev *Device) error {
	deleted, err := s.db.DeleteDevicesExcept(ctx, dev.Localpart, "")
	if err != nil {
		return err
	}
	s.tokens.invalidateUser(dev.Localpart)
	s.devicesDeleted(ctx, dev.Localpart, deleted)
	return nil
}

// DeleteDevices deletes devices of dev's user with their access tokens.
// IDs the user has no device for are ignored.
func (s *Service) DeleteDevices(ctx context.Context, dev *Device, deviceIDs []string) error {
	deleted, err := s.db.DeleteDevices(ctx, dev.Localpart, deviceIDs)
	if err != nil {
		return err
	}
	s.devicesDeleted(ctx, dev.Localpart, deleted)
	return nil
}

// devicesDeleted drops cached tokens of deleted devices and runs the hook.
func (s *Service) devicesDeleted(ctx context.Context, localpart string, deviceIDs []string) {
	if len(deviceIDs) == 0 {
		return
	}
	s.tokens.invalidateDevices(localpart, deviceIDs)
	if h := s.hook().OnDevicesDeleted; h != nil {
		h(ctx, s.UserID(localpart), deviceIDs)
	}
}

// Devices lists the devices of dev's user.
func (s *Service) Devices(ctx context.Context, dev *Device) ([]DeviceInfo, error) {
	ds, err := s.db.Devices(ctx, dev.Localpart)
	if err != nil {
		return nil, err
	}
	out := make([]DeviceInfo, len(ds))
	for i, d := range ds {
		out[i] = deviceInfo(d)
	}
	return out, nil
}

// GetDevice returns one device of dev's user, or ErrNotFound.
func (s *Service) GetDevice(ctx context.Context, dev *Device, deviceID string) (*DeviceInfo, error) {
	d, err := s.db.GetDevice(ctx, dev.Localpart, deviceID)
	if err != nil {
		return nil, storageErr(err, "device")
	}
	info := deviceInfo(*d)
	return &info, nil
}

func deviceInfo(d storage.Device) DeviceInfo {
	return DeviceInfo{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

// RenameDevice sets the display name of one of dev's user's devices ("" to
// remove it), or returns ErrNotFound.
func (s *Service) RenameDevice(ctx context.Context, dev *Device, deviceID, name string) error {
	if err := checkDeviceParams(DeviceParams{DisplayName: name}); err != nil {
		return err
	}
	return storageErr(s.db.SetDeviceDisplayName(ctx, dev.Localpart, deviceID, name), "device")
}
