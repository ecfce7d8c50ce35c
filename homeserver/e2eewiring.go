package homeserver

import (
	"context"

	"github.com/parley-chat/parley/homeserver/e2ee"
)

// buildE2EE assembles the end-to-end encryption service and adds its two
// /sync extensions (device lists, to-device messages). buildRooms calls it
// right after creating the sync service, so that the extensions take the
// same token positions at every start. The federation layer installs
// e2ee.RemoteKeys and e2ee.RemoteToDevice later with SetRemote; until
// then remote users' keys are reported as failures.
func (s *Server) buildE2EE() {
	s.E2EE = e2ee.New(e2ee.Config{
		DB:         s.DB,
		ServerName: s.cfg.ServerName,
		Notifier:   s.Notifier,
		Log:        s.log.WithField("component", "e2ee"),
	})
	s.E2EE.RegisterSync(s.Sync)
}

// onDeactivate is the users service's deactivation hook: the user's keys,
// messages and backups go first (telling the users who share a room with
// them), then the user leaves their rooms.
func (s *Server) onDeactivate(ctx context.Context, userID string) {
	s.E2EE.UserDeactivated(ctx, userID)
	s.leaveAllRooms(ctx, userID)
}
