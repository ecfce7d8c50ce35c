package directory

import (
	"context"
	"errors"
)

// RemoteDirectory fetches another server's public room directory (over
// federation).
type RemoteDirectory func(ctx context.Context, server string, req PublicRoomsRequest) (*PublicRoomsPage, error)

// ErrNoRemoteDirectory: another server's directory was asked for and no
// way to fetch it is installed.
var ErrNoRemoteDirectory = errors.New("listing the room directory of another server is not available")

// ErrRemoteDirectory wraps a failure of the other server.
var ErrRemoteDirectory = errors.New("the other server's room directory could not be fetched")

// SetRemote installs how other servers' directories are fetched.
func (s *Service) SetRemote(f RemoteDirectory) { s.remote.Store(&f) }

// PublicRoomsOf lists server's directory: ours for "" or our name,
// another server's through the installed RemoteDirectory.
func (s *Service) PublicRoomsOf(ctx context.Context, server string, req PublicRoomsRequest) (*PublicRoomsPage, error) {
	if server == "" || server == s.cfg.ServerName {
		return s.PublicRooms(ctx, req)
	}
	f := s.remote.Load()
	if f == nil {
		return nil, ErrNoRemoteDirectory
	}
	page, err := (*f)(ctx, server, req)
	if err != nil {
		return nil, errors.Join(ErrRemoteDirectory, err)
	}
	return page, nil
}
