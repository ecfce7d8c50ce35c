package homeserver

import (
	"context"
	"encoding/json"

	"github.com/parley-chat/parley/federation"
)

// Server ACLs (m.room.server_acl) for what other servers send: room
// requests are filtered by federation.UseRoomACL, PDUs by the room engine,
// and the room EDUs here.

// typingACL drops typing notifications for rooms whose ACL denies the origin.
func (s *Server) typingACL(h federation.EDUHandler) federation.EDUHandler {
	return func(ctx context.Context, origin string, content json.RawMessage) {
		var c struct {
			RoomID string `json:"room_id"`
		}
		if json.Unmarshal(content, &c) != nil || !s.Rooms.ServerAllowed(ctx, c.RoomID, origin) {
			return
		}
		h(ctx, origin, content)
	}
}

// receiptACL keeps, of a receipt EDU (a map of room IDs), the rooms whose
// ACL lets the origin in.
func (s *Server) receiptACL(h federation.EDUHandler) federation.EDUHandler {
	return func(ctx context.Context, origin string, content json.RawMessage) {
		var byRoom map[string]json.RawMessage
		if json.Unmarshal(content, &byRoom) != nil {
			return
		}
		for roomID := range byRoom {
			if !s.Rooms.ServerAllowed(ctx, roomID, origin) {
				delete(byRoom, roomID)
			}
		}
		if len(byRoom) == 0 {
			return
		}
		filtered, err := json.Marshal(byRoom)
		if err != nil {
			return
		}
		h(ctx, origin, filtered)
	}
}
