package homeserver

import (
	"context"
	"encoding/json"

	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/presence"
	"github.com/parley-chat/parley/storage"
)

// connectAppServiceEphemeral hands typing, receipts, presence and the
// to-device messages of their users to the application services that
// asked for ephemeral events, in the form /sync shows them (with room_id
// for room data, as the spec asks).
func (s *Server) connectAppServiceEphemeral() {
	if s.AppServices == nil {
		return
	}
	push := func(e appservice.Ephemeral) {
		if err := s.AppServices.PushEphemeral(context.Background(), e); err != nil {
			s.log.WithError(err).Warn("queueing ephemeral data for application services")
		}
	}
	s.Typing.SetObserver(func(roomID string, userIDs []string) {
		ev, _ := json.Marshal(map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": userIDs}})
		push(appservice.Ephemeral{RoomID: roomID, Event: ev})
	})
	s.Receipts.SetObserver(func(r storage.Receipt) {
		data := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			data["thread_id"] = r.ThreadID
		}
		ev, _ := json.Marshal(map[string]any{"type": "m.receipt", "room_id": r.RoomID, "content": map[string]any{
			r.EventID: map[string]any{r.Type: map[string]any{r.UserID: data}}}})
		push(appservice.Ephemeral{RoomID: r.RoomID, UserID: r.UserID, Private: r.Type == "m.read.private", Event: ev})
	})
	s.E2EE.SetToDeviceObserver(func(m storage.ToDeviceMessage) {
		if err := s.AppServices.PushToDevice(context.Background(), m); err != nil {
			s.log.WithError(err).Warn("queueing a to-device message for application services")
		}
	})
	s.Presence.SetObserver(func(userID string, st presence.Status) {
		ev, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": userID, "content": st})
		push(appservice.Ephemeral{UserID: userID, Event: ev})
	})
}
