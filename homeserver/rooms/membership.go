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
		if errors.Is(err, storage.ErrNotFound) && e.queryAlias(ctx, roomIDOrAlias) {
			// An application service has just created it.
			roomID, _, err = e.db.ResolveAlias(ctx, roomIDOrAlias)
		}
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

// Join makes a local user join a room: directly when this server is in
// it, otherwise over federation through via, the room's and the alias's
// servers, and the inviter's.
func (e *Engine) Join(ctx context.Context, roomIDOrAlias, userID, reason string, via []string) (string, error) {
	roomID, servers, err := e.resolveForJoin(ctx, roomIDOrAlias)
	if err != nil {
		return "", err
	}
	if r, err := e.room(ctx, roomID); errors.Is(err, ErrNotFound) || (err == nil && e.leftRemoteRoom(r)) {
		candidates := append(append([]string{}, via...), servers...)
		if inv, err := e.db.GetRemoteInvite(ctx, roomID, userID); err == nil {
			candidates = append([]string{serverOf(inv.Sender)}, candidates...)
		}
		if rid, err := id.ParseRoomID(roomID); err == nil && rid.Server != "" {
			candidates = append(candidates, string(rid.Server))
		}
		if err := e.JoinRemote(ctx, roomID, userID, dedupe(candidates)); err != nil {
			return "", err
		}
		_ = e.db.WithTx(ctx, func(tx *storage.Tx) error { return storage.DeleteRemoteInvite(ctx, tx, roomID, userID) })
		return roomID, nil
	} else if err != nil {
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
	if membership == "leave" && sender == target {
		if _, err := e.room(ctx, roomID); errors.Is(err, ErrNotFound) {
			// Declining an invite to a room we are not in.
			return nil, e.rejectRemoteInvite(ctx, roomID, target)
		}
	}
	content := memberContent(membership, "", "", reason, isDirect)
	if membership == "invite" {
		// A bridge may have to create the user it represents first.
		e.queryUser(ctx, target)
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

// resolveForJoin resolves a room ID or alias, with the servers that may
// know the room: a remote alias is asked of its server.
func (e *Engine) resolveForJoin(ctx context.Context, roomIDOrAlias string) (string, []string, error) {
	if len(roomIDOrAlias) > 0 && roomIDOrAlias[0] == '#' {
		alias, err := id.ParseRoomAlias(roomIDOrAlias)
		if err != nil {
			return "", nil, wrapf(ErrBadRequest, "invalid room alias %q", roomIDOrAlias)
		}
		if string(alias.Server) != e.cfg.ServerName && e.fed != nil {
			roomID, servers, err := e.fed.QueryAlias(ctx, string(alias.Server), roomIDOrAlias)
			if err != nil {
				return "", nil, wrapf(ErrNotFound, "room alias %s: %v", roomIDOrAlias, err)
			}
			return roomID, append(servers, string(alias.Server)), nil
		}
	}
	roomID, err := e.ResolveRoom(ctx, roomIDOrAlias)
	return roomID, nil, err
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range list {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Knock knocks on a room: directly when this server is in it, otherwise
// over federation through via and the room's and alias's servers.
func (e *Engine) Knock(ctx context.Context, roomIDOrAlias, userID, reason string, via []string) (string, error) {
	roomID, servers, err := e.resolveForJoin(ctx, roomIDOrAlias)
	if err != nil {
		return "", err
	}
	if _, err := e.room(ctx, roomID); errors.Is(err, ErrNotFound) {
		candidates := append(append([]string{}, via...), servers...)
		if rid, err := id.ParseRoomID(roomID); err == nil && rid.Server != "" {
			candidates = append(candidates, string(rid.Server))
		}
		return roomID, e.KnockRemote(ctx, roomID, userID, reason, dedupe(candidates))
	} else if err != nil {
		return "", err
	}
	_, err = e.ChangeMembership(ctx, roomID, userID, userID, "knock", reason, false)
	return roomID, err
}
