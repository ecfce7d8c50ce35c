package homeserver

import (
	"context"
	"time"

	"github.com/parley-chat/parley/homeserver/ignored"
	"github.com/parley-chat/parley/homeserver/push"
	"github.com/parley-chat/parley/homeserver/receipts"
)

// buildPush assembles the push service: it listens to every room's new
// events, adds its /sync extension (unread counts and m.push_rules) and
// hears of read receipts. New calls it right after buildRooms, so that the
// extension takes the same token position at every start. Run starts and
// stops its workers.
func (s *Server) buildPush() {
	s.Push = push.New(push.Config{
		DB:                   s.DB,
		ServerName:           s.cfg.ServerName,
		Rooms:                s.Rooms,
		Rules:                s.Users,
		Notifier:             s.Notifier,
		Log:                  s.log.WithField("component", "push"),
		AllowPrivateGateways: s.cfg.Push.AllowPrivateAddresses,
		Retention:            s.cfg.Push.NotificationRetention,
		Ignored: func(ctx context.Context, userID string) (map[string]bool, error) {
			return ignored.Users(ctx, s.DB, s.cfg.ServerName, userID)
		},
	})
	s.Push.RegisterSync(s.Sync, s.DB)
	s.Rooms.AddListener(s.Push.OnEvent)
	if s.Receipts != nil {
		s.Receipts.SetHooks(receipts.Hooks{OnReceipt: s.pushReceipt})
	}
}

// pushReceipt is the receipts hook: a local user's receipt moved, so the
// notifications up to it are read. It runs on the request's goroutine, so
// that the user's next /sync already shows the lower counts.
func (s *Server) pushReceipt(roomID, userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Push.ReceiptMoved(ctx, s.Receipts, roomID, userID); err != nil {
		s.log.WithError(err).WithField("room_id", roomID).Warn("push: marking notifications read")
	}
}

// onAccountData is the users service's account data hook: it wakes the
// user's /sync requests and makes the push service read the user's ignore
// list (and rules) again.
func (s *Server) onAccountData(userID string) {
	s.Notifier.Wake(userID)
	if s.Push != nil {
		s.Push.Invalidate(userID)
	}
}

// onDevicesDeleted is the users service's hook for deleted devices: their
// end-to-end keys go, and so do the pushers they set.
func (s *Server) onDevicesDeleted(ctx context.Context, userID string, deviceIDs []string) {
	s.E2EE.DevicesDeleted(ctx, userID, deviceIDs)
	if s.Push != nil {
		s.Push.DevicesDeleted(ctx, userID, deviceIDs)
	}
}
