package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// ResolveRoom turns a room ID or a local alias into a room ID.
func (e *Engine) ResolveRoom(ctx context.Context, roomIDOrAlias string) (string, error) {
	if len(roomIDOrAlias) > 0 && roomIDOrAlias[0] == '#' {
		roomID, _, err := e.db.ResolveAlias(ctx, roomIDOrAlias)
		if errors.Is(err, storage.ErrNotFound) {
			return "", wrapf(ErrNotFound, "unknown room alias %s", roomIDOrAlias)
		}
		return roomID, err
	}
	if _, err := id.ParseRoomID(roomIDOrAlias); err != nil {
		return "", wrapf(ErrBadRequest, "invalid room ID %q", roomIDOrAlias)
	}
	return roomIDOrAlias, nil
}

// Join makes a local user join a room the server knows.
func (e *Engine) Join(ctx context.Context, roomIDOrAlias, userID, reason string) (string, error) {
	roomID, err := e.ResolveRoom(ctx, roomIDOrAlias)
	if err != nil {
		return "", err
	}
	if _, err := e.room(ctx, roomID); err != nil {
		return "", err
	}
	name, avatar := e.cfg.Profiles(ctx, userID)
	_, err = e.setMembership(ctx, roomID, userID, userID, "join", reason, memberContent("join", name, avatar, reason, false))
	return roomID, err
}

// ChangeMembership is invite, leave, kick, ban, unban or knock: sender
// sets target's membership.
func (e *Engine) ChangeMembership(ctx context.Context, roomID, sender, target, membership, reason string, isDirect bool) (*event.Event, error) {
	if _, err := id.ParseUserID(target); err != nil {
		return nil, wrapf(ErrBadRequest, "invalid user ID %q", target)
	}
	content := memberContent(membership, "", "", reason, isDirect)
	if membership == "invite" {
		// The invitee's profile lets their client show who they are.
		name, avatar := e.cfg.Profiles(ctx, target)
		content = memberContent(membership, name, avatar, reason, isDirect)
	}
	return e.setMembership(ctx, roomID, sender, target, membership, reason, content)
}

func (e *Engine) setMembership(ctx context.Context, roomID, sender, target, membership, reason string, content json.RawMessage) (*event.Event, error) {
	return e.Send(ctx, roomID, Proto{Type: "m.room.member", StateKey: &target, Sender: sender, Content: content})
}

// Membership is the user's current membership of a room ("" if none).
func (e *Engine) Membership(ctx context.Context, roomID, userID string) (string, error) {
	m, err := e.db.GetMembership(ctx, roomID, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return m.Membership, nil
}

// Forget hides a room the user is no longer in.
func (e *Engine) Forget(ctx context.Context, roomID, userID string) error {
	m, err := e.Membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m == "join" || m == "invite" || m == "knock" {
		return wrapf(ErrBadRequest, "you must leave the room before forgetting it")
	}
	if m == "" {
		return wrapf(ErrNotFound, "you were never in this room")
	}
	return e.db.ForgetRoom(ctx, roomID, userID)
}

// UpdateProfile re-sends a joined user's member event with a new display
// name and avatar URL.
func (e *Engine) UpdateProfile(ctx context.Context, roomID, userID, displayName, avatarURL string) error {
	_, err := e.setMembership(ctx, roomID, userID, userID, "join", "", memberContent("join", displayName, avatarURL, "", false))
	return err
}
