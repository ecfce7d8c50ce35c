package users

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley/storage"
)

// Profile is a user's public profile; empty fields are not set.
type Profile struct {
	DisplayName string
	AvatarURL   string
}

// Limits on profile fields, well under the spec's 64 KiB per profile:
// display names appear in every member event of the user's rooms.
const (
	maxDisplayNameLength = 256 // characters
	maxAvatarURLLength   = 1000
)

// RemoteProfileFunc fetches a remote user's profile from their server.
type RemoteProfileFunc func(ctx context.Context, userID string) (*Profile, error)

// SetRemoteProfiles installs how profiles of users of other servers are
// fetched (over federation); without it they are ErrNotFound.
func (s *Service) SetRemoteProfiles(f RemoteProfileFunc) { s.remoteProfiles.Store(&f) }

// Profile returns a user's profile: a local user's from the database, a
// remote user's from their server. It returns ErrNotFound for unknown and
// deactivated users.
func (s *Service) Profile(ctx context.Context, userID string) (*Profile, error) {
	localpart, ok := s.localpart(userID)
	if !ok {
		if f := s.remoteProfiles.Load(); f != nil {
			return (*f)(ctx, userID)
		}
		return nil, fmt.Errorf("%w: no profile for %s", ErrNotFound, userID)
	}
	p, err := s.db.GetProfile(ctx, localpart)
	if err != nil {
		return nil, storageErr(err, "profile")
	}
	if p.Deactivated {
		return nil, fmt.Errorf("%w: profile", ErrNotFound)
	}
	return &Profile{DisplayName: p.DisplayName, AvatarURL: p.AvatarURL}, nil
}

// SetDisplayName sets dev's user's display name; "" removes it.
func (s *Service) SetDisplayName(ctx context.Context, dev *Device, name string) error {
	if utf8.RuneCountInString(name) > maxDisplayNameLength {
		return fmt.Errorf("%w: display names are at most %d characters", ErrInvalidParam, maxDisplayNameLength)
	}
	return s.profileChanged(ctx, dev, func() (*storage.Profile, error) { return s.db.SetDisplayName(ctx, dev.Localpart, name) })
}

// SetAvatarURL sets dev's user's avatar, an mxc:// URI; "" removes it.
func (s *Service) SetAvatarURL(ctx context.Context, dev *Device, url string) error {
	if url != "" && !validMXC(url) {
		return fmt.Errorf("%w: avatar_url must be an mxc://server/media_id URI", ErrInvalidParam)
	}
	if len(url) > maxAvatarURLLength {
		return fmt.Errorf("%w: avatar_url is longer than %d bytes", ErrInvalidParam, maxAvatarURLLength)
	}
	return s.profileChanged(ctx, dev, func() (*storage.Profile, error) { return s.db.SetAvatarURL(ctx, dev.Localpart, url) })
}

func (s *Service) profileChanged(ctx context.Context, dev *Device, store func() (*storage.Profile, error)) error {
	p, err := store()
	if err != nil {
		return storageErr(err, "profile")
	}
	if h := s.hook().OnProfileChange; h != nil {
		h(ctx, dev.UserID, p.DisplayName, p.AvatarURL)
	}
	return nil
}

// validMXC checks the shape of an mxc://server/media_id URI.
func validMXC(u string) bool {
	rest, ok := strings.CutPrefix(u, "mxc://")
	if !ok {
		return false
	}
	server, media, ok := strings.Cut(rest, "/")
	return ok && server != "" && media != "" && !strings.ContainsAny(media, "/?#")
}

// LocalProfile is Profile for local users only: what this server answers
// for its own users (other servers must not use it to look up third ones).
func (s *Service) LocalProfile(ctx context.Context, userID string) (*Profile, error) {
	if _, ok := s.localpart(userID); !ok {
		return nil, fmt.Errorf("%w: %s is not a user of this server", ErrNotFound, userID)
	}
	return s.Profile(ctx, userID)
}
