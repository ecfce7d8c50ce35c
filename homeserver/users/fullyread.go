package users

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/parley-chat/parley/storage"
)

// FullyReadType is the room account data type of the fully read marker.
const FullyReadType = "m.fully_read"

// SetFullyRead moves dev's user's fully read marker in a room to eventID.
// The marker is room account data that clients may read but only set
// through the read markers API, which checks that the event belongs to the
// room before calling this. Setting it where it already is changes nothing.
func (s *Service) SetFullyRead(ctx context.Context, dev *Device, roomID, eventID string) error {
	if err := checkAccountDataKey(roomID, FullyReadType); err != nil {
		return err
	}
	content, err := json.Marshal(map[string]string{"event_id": eventID})
	if err != nil {
		return err
	}
	pos, err := s.db.UpdateAccountData(ctx, dev.Localpart, roomID, FullyReadType, func(old []byte) ([]byte, error) {
		if bytes.Equal(old, content) {
			return nil, storage.ErrUnchanged
		}
		return content, nil
	})
	if err != nil {
		return err
	}
	if pos != 0 {
		s.notifyAccountData(dev.UserID)
	}
	return nil
}
