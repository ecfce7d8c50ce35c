package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// HandleInvite accepts an invite of a local user from a remote server
// (federation invite v2): it checks the event, countersigns it, and
// records the invite with the stripped state the inviting server sent, so
// that the user's /sync shows it.
func (e *Engine) HandleInvite(ctx context.Context, origin string, version event.RoomVersion, ev *event.Event, inviteState []json.RawMessage) (*event.Event, error) {
	if ev.Type() != "m.room.member" || ev.StateKey() == nil {
		return nil, wrapf(ErrBadRequest, "not a membership event")
	}
	if m, err := ev.Membership(); err != nil || m != "invite" {
		return nil, wrapf(ErrBadRequest, "not an invite")
	}
	target := *ev.StateKey()
	if serverOf(target) != e.cfg.ServerName {
		return nil, wrapf(ErrBadRequest, "the invitee %s is not a user of this server", target)
	}
	if serverOf(ev.Sender()) != origin {
		return nil, wrapf(ErrForbidden, "the inviter is not a user of %s", origin)
	}
	if _, err := id.ParseUserID(target); err != nil {
		return nil, wrapf(ErrBadRequest, "invalid invitee")
	}
	key := e.cfg.SigningKey
	signed, err := ev.Sign(e.cfg.ServerName, key.KeyID, key.Key)
	if err != nil {
		return nil, err
	}
	if inviteState == nil {
		inviteState = []json.RawMessage{}
	}
	// A room we are in takes the invite through the normal path.
	if _, err := e.db.GetRoom(ctx, ev.RoomID()); err == nil {
		if err := e.Ingest(ctx, origin, signed); err != nil {
			return nil, err
		}
		return signed, nil
	}
	pos := e.cfg.Positions.Allocate(1)
	err = e.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := storage.InsertOutlier(ctx, tx, signed.EventID(), ev.RoomID(), string(signed.JSON()), false); err != nil {
			return err
		}
		if err := storage.PutRemoteInvite(ctx, tx, storage.RemoteInvite{RoomID: ev.RoomID(), UserID: target, EventID: signed.EventID(),
			RoomVersion: string(version), Sender: ev.Sender(), InviteState: string(mustJSON(inviteState))}); err != nil {
			return err
		}
		return storage.SetMembership(ctx, tx, storage.Membership{RoomID: ev.RoomID(), UserID: target, Membership: "invite", EventID: signed.EventID(), StreamPos: pos})
	})
	e.cfg.Positions.Done(pos)
	if err != nil {
		return nil, err
	}
	if e.cfg.Notifier != nil {
		e.cfg.Notifier.OnNewEvents(pos, []string{target})
	}
	return signed, nil
}

// RemoteInviteState returns the stripped state of a remote invite.
func (e *Engine) RemoteInviteState(ctx context.Context, roomID, userID string) ([]json.RawMessage, bool) {
	inv, err := e.db.GetRemoteInvite(ctx, roomID, userID)
	if err != nil {
		return nil, false
	}
	var st []json.RawMessage
	_ = json.Unmarshal([]byte(inv.InviteState), &st)
	if _, js, _, err := e.db.AnyEventJSON(ctx, inv.EventID); err == nil && js != "" {
		// The invite event itself, stripped, so the client knows who invited.
		var ev struct {
			Content  json.RawMessage `json:"content"`
			Sender   string          `json:"sender"`
			StateKey string          `json:"state_key"`
			Type     string          `json:"type"`
		}
		if json.Unmarshal([]byte(js), &ev) == nil {
			st = append(st, mustJSON(ev))
		}
	}
	return st, true
}

// rejectRemoteInvite declines an invite to a room we are not in, through
// the inviting server (make_leave / send_leave), and records the leave.
func (e *Engine) rejectRemoteInvite(ctx context.Context, roomID, userID string) error {
	inv, err := e.db.GetRemoteInvite(ctx, roomID, userID)
	if err != nil {
		return wrapf(ErrNotFound, "unknown room %s", roomID)
	}
	if e.fed != nil {
		if err := e.leaveVia(ctx, serverOf(inv.Sender), roomID, userID); err != nil {
			// The invite is declined locally whatever the remote server says.
			e.cfg.Log.WithError(err).WithField("room_id", roomID).Info("could not send the invite rejection")
		}
	}
	pos := e.cfg.Positions.Allocate(1)
	err = e.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := storage.DeleteRemoteInvite(ctx, tx, roomID, userID); err != nil {
			return err
		}
		return storage.SetMembership(ctx, tx, storage.Membership{RoomID: roomID, UserID: userID, Membership: "leave", EventID: "", StreamPos: pos})
	})
	e.cfg.Positions.Done(pos)
	if err == nil && e.cfg.Notifier != nil {
		e.cfg.Notifier.OnNewEvents(pos, []string{userID})
	}
	return err
}

func (e *Engine) leaveVia(ctx context.Context, server, roomID, userID string) error {
	version, tmpl, err := e.fed.MakeLeave(ctx, server, roomID, userID)
	if err != nil {
		return err
	}
	info, err := version.Info()
	if err != nil {
		return err
	}
	proto, err := e.protoFromTemplate(tmpl, info, userID, "leave", nil)
	if err != nil {
		return err
	}
	key := e.cfg.SigningKey
	leave, err := proto.Build(version, e.cfg.ServerName, key.KeyID, key.Key)
	if err != nil {
		return err
	}
	return e.fed.SendLeave(ctx, server, version, leave)
}

// StrippedState is the room's state as shown to invitees and knockers:
// the create, join rules, name, avatar, alias, encryption and topic events
// reduced to type, state key, sender and content.
func (e *Engine) StrippedState(ctx context.Context, roomID string) []json.RawMessage {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return []json.RawMessage{}
	}
	return r.strippedState()
}

func (r *room) strippedState() []json.RawMessage {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []json.RawMessage{}
	for _, t := range []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"} {
		if s := r.state[storage.StateKey{Type: t}]; s != nil {
			out = append(out, mustJSON(map[string]any{"type": t, "state_key": "", "sender": s.Sender(), "content": s.Content()}))
		}
	}
	return out
}

// inviteRemote has the invitee's server countersign an invite of a remote
// user before it is persisted.
func (r *room) inviteRemote(ctx context.Context, ev *event.Event) (*event.Event, error) {
	target := *ev.StateKey()
	server := serverOf(target)
	signed, err := r.e.fed.Invite(ctx, server, r.version, ev, r.strippedState())
	if err != nil {
		return nil, wrapf(ErrForbidden, "the invitee's server refused the invite: %v", err)
	}
	if signed.EventID() != ev.EventID() {
		return nil, fmt.Errorf("rooms: %s returned a different invite event", server)
	}
	return signed, nil
}

// KnockRemote knocks on a room this server is not in, through the first of
// servers that answers (make_knock, sign, send_knock), and keeps the
// stripped state it returns for the user's /sync, like a remote invite.
func (e *Engine) KnockRemote(ctx context.Context, roomID, userID, reason string, servers []string) error {
	if e.fed == nil {
		return wrapf(ErrNotFound, "unknown room %s, and federation is off", roomID)
	}
	var errs []error
	for _, server := range servers {
		if server == e.cfg.ServerName {
			continue
		}
		version, tmpl, err := e.fed.MakeKnock(ctx, server, roomID, userID)
		if err == nil {
			var info event.RoomVersionInfo
			if info, err = version.Info(); err == nil {
				extra := map[string]any{}
				if reason != "" {
					extra["reason"] = reason
				}
				var proto event.ProtoEvent
				if proto, err = e.protoFromTemplate(tmpl, info, userID, "knock", extra); err == nil {
					key := e.cfg.SigningKey
					var knock *event.Event
					if knock, err = proto.Build(version, e.cfg.ServerName, key.KeyID, key.Key); err == nil {
						var state []json.RawMessage
						if state, err = e.fed.SendKnock(ctx, server, version, knock); err == nil {
							return e.storeRemoteMembership(ctx, version, knock, server, state)
						}
					}
				}
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
	}
	if len(errs) == 0 {
		return wrapf(ErrNotFound, "no server to knock on %s through", roomID)
	}
	return errors.Join(append([]error{ErrForbidden}, errs...)...)
}

// storeRemoteMembership records a local user's membership event in a room
// we are not in (a knock), with the room's stripped state, for /sync.
func (e *Engine) storeRemoteMembership(ctx context.Context, version event.RoomVersion, ev *event.Event, via string, stripped []json.RawMessage) error {
	user := *ev.StateKey()
	membership, _ := ev.Membership()
	if stripped == nil {
		stripped = []json.RawMessage{}
	}
	pos := e.cfg.Positions.Allocate(1)
	err := e.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := storage.InsertOutlier(ctx, tx, ev.EventID(), ev.RoomID(), string(ev.JSON()), false); err != nil {
			return err
		}
		// The stripped state is kept where remote invites keep theirs;
		// Sender names the resident server we went through (as a user ID
		// of it), so that a later join or retraction goes through it too.
		if err := storage.PutRemoteInvite(ctx, tx, storage.RemoteInvite{RoomID: ev.RoomID(), UserID: user, EventID: ev.EventID(),
			RoomVersion: string(version), Sender: "@:" + via, InviteState: string(mustJSON(stripped))}); err != nil {
			return err
		}
		return storage.SetMembership(ctx, tx, storage.Membership{RoomID: ev.RoomID(), UserID: user, Membership: membership, EventID: ev.EventID(), StreamPos: pos})
	})
	e.cfg.Positions.Done(pos)
	if err != nil {
		return err
	}
	if e.cfg.Notifier != nil {
		e.cfg.Notifier.OnNewEvents(pos, []string{user})
	}
	return nil
}
