package homeserver

import (
	"context"
	"encoding/json"

	"github.com/parley-chat/parley/clientapi"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/stream"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/matrix/event"
)

// buildRooms assembles the room engine and the sync service and connects
// them to the account service's hooks.
func (s *Server) buildRooms(ctx context.Context) (clientapi.RoomServices, error) {
	last, err := s.DB.MaxStreamPos(ctx)
	if err != nil {
		return clientapi.RoomServices{}, err
	}
	positions := stream.New(last)
	s.Notifier = sync.NewNotifier(positions)
	s.Rooms = rooms.New(rooms.Config{
		DB:                  s.DB,
		ServerName:          s.cfg.ServerName,
		SigningKey:          s.SigningKey,
		Positions:           positions,
		Notifier:            s.Notifier,
		Profiles:            s.profileLookup,
		DefaultRoomVersion:  event.RoomVersion(s.cfg.DefaultRoomVersion),
		EncryptPrivateRooms: s.cfg.Encryption.EncryptPrivateRooms,
		Log:                 s.log.WithField("component", "rooms"),
	})
	s.Sync = sync.New(s.Rooms, positions, s.Notifier, accountDataStream{s.Users})
	s.buildE2EE()
	s.buildEphemeral()

	s.Users.SetHooks(users.Hooks{
		NotifyAccountData: s.onAccountData,
		OnProfileChange:   s.updateMemberEvents,
		OnDeactivate:      s.onDeactivate,
		OnDevicesDeleted:  s.onDevicesDeleted,
	})
	return clientapi.RoomServices{Rooms: s.Rooms, Sync: s.Sync}, nil
}

func (s *Server) profileLookup(ctx context.Context, userID string) (string, string) {
	p, err := s.Users.Profile(ctx, userID)
	if err != nil {
		return "", ""
	}
	return p.DisplayName, p.AvatarURL
}

// updateMemberEvents re-sends the user's join event in every room they are
// joined to, carrying the new profile, as clients expect.
func (s *Server) updateMemberEvents(ctx context.Context, userID, displayName, avatarURL string) {
	ms, err := s.DB.UserMemberships(ctx, userID, "join")
	if err != nil {
		s.log.WithError(err).Error("profile change: listing rooms")
		return
	}
	for _, m := range ms {
		if err := s.Rooms.UpdateProfile(ctx, m.RoomID, userID, displayName, avatarURL); err != nil {
			s.log.WithError(err).WithField("room_id", m.RoomID).Warn("profile change: updating member event")
		}
	}
}

// leaveAllRooms makes a deactivated user leave (or decline) every room.
func (s *Server) leaveAllRooms(ctx context.Context, userID string) {
	ms, err := s.DB.UserMemberships(ctx, userID, "join", "invite", "knock")
	if err != nil {
		s.log.WithError(err).Error("deactivation: listing rooms")
		return
	}
	for _, m := range ms {
		if _, err := s.Rooms.ChangeMembership(ctx, m.RoomID, userID, userID, "leave", "", false); err != nil {
			s.log.WithError(err).WithField("room_id", m.RoomID).Warn("deactivation: leaving room")
		}
	}
}

// accountDataStream adapts the account service to the sync service.
type accountDataStream struct{ users *users.Service }

func (a accountDataStream) CurrentAccountDataPos(ctx context.Context) (int64, error) {
	return a.users.CurrentAccountDataPos(ctx)
}

func (a accountDataStream) AccountDataSince(ctx context.Context, userID string, from, to int64) ([]json.RawMessage, map[string][]json.RawMessage, error) {
	global, perRoom, err := a.users.AccountDataSince(ctx, userID, from, to)
	if err != nil {
		return nil, nil, err
	}
	enc := func(evs []users.AccountDataEvent) []json.RawMessage {
		out := make([]json.RawMessage, 0, len(evs))
		for _, ev := range evs {
			if b, err := json.Marshal(ev); err == nil {
				out = append(out, b)
			}
		}
		return out
	}
	rooms := make(map[string][]json.RawMessage, len(perRoom))
	for id, evs := range perRoom {
		rooms[id] = enc(evs)
	}
	return enc(global), rooms, nil
}
