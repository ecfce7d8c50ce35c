package homeserver

import (
	"context"

	"github.com/parley-chat/parley/homeserver/e2ee"
	"github.com/parley-chat/parley/matrix/event"
)

// buildE2EE assembles the end-to-end encryption service and adds its two
// /sync extensions (device lists, to-device messages). buildRooms calls it
// right after creating the sync service, so that the extensions take the
// same token positions at every start. The federation layer is connected
// later by federateE2EE; until then remote users' keys are reported as
// failures.
func (s *Server) buildE2EE() {
	s.E2EE = e2ee.New(e2ee.Config{
		DB:         s.DB,
		ServerName: s.cfg.ServerName,
		Notifier:   s.Notifier,
		Log:        s.log.WithField("component", "e2ee"),
	})
	s.E2EE.RegisterSync(s.Sync)
	s.Rooms.AddListener(s.onRoomEventE2EE)
}

// federateE2EE connects end-to-end encryption to other servers both ways:
// the federation endpoints and EDU handlers, and the client the service
// uses for remote keys, to-device messages and device list updates. Call
// it once the federation sender exists.
func (s *Server) federateE2EE() {
	c := s.Federation.E2EE(s.E2EE, s.FederationSender)
	s.E2EE.SetRemote(c, c)
	s.E2EE.SetRemoteDeviceLists(c)
}

// onRoomEventE2EE is the room listener of end-to-end encryption: when
// someone leaves a room, cached device lists of remote users who no longer
// share a room with a local user are dropped (their servers stop sending
// us updates). MemberLeft returns at once, as listeners must.
func (s *Server) onRoomEventE2EE(ev *event.Event, _ int64) {
	if ev.Type() != "m.room.member" || ev.StateKey() == nil {
		return
	}
	if m, _ := ev.Membership(); m == "leave" || m == "ban" {
		s.E2EE.MemberLeft(ev.RoomID(), *ev.StateKey())
	}
}

// onDeactivate is the users service's deactivation hook: the user's keys,
// messages and backups go first (telling the users who share a room with
// them), then the user leaves their rooms.
func (s *Server) onDeactivate(ctx context.Context, userID string) {
	s.E2EE.UserDeactivated(ctx, userID)
	s.leaveAllRooms(ctx, userID)
}
