package rooms

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/parley-chat/parley/matrix/event"
)

// Federation is what the room engine needs from the federation layer: to
// reach other servers for joins and for the events and state that remote
// events refer to, and to send our events out. Events it returns have
// passed the format, hash and signature checks (an event whose content hash
// does not match is returned redacted).
type Federation interface {
	// MakeJoin asks server for a join event template for userID.
	MakeJoin(ctx context.Context, server, roomID, userID string) (version event.RoomVersion, template json.RawMessage, err error)
	// SendJoin sends our signed join event and returns the room's state
	// and auth chain at it.
	SendJoin(ctx context.Context, server string, version event.RoomVersion, join *event.Event) (*SendJoinResponse, error)
	// MakeLeave and SendLeave do the same for leaving a remote room we
	// are not joined to (rejecting an invite).
	MakeLeave(ctx context.Context, server, roomID, userID string) (version event.RoomVersion, template json.RawMessage, err error)
	SendLeave(ctx context.Context, server string, version event.RoomVersion, leave *event.Event) error
	// MakeKnock and SendKnock knock on a room we are not in; SendKnock
	// returns the room's stripped state.
	MakeKnock(ctx context.Context, server, roomID, userID string) (version event.RoomVersion, template json.RawMessage, err error)
	SendKnock(ctx context.Context, server string, version event.RoomVersion, knock *event.Event) ([]json.RawMessage, error)
	// Invite asks the invitee's server to countersign an invite event.
	Invite(ctx context.Context, server string, version event.RoomVersion, invite *event.Event, strippedState []json.RawMessage) (*event.Event, error)
	// FetchEvent fetches one event from server.
	FetchEvent(ctx context.Context, server string, version event.RoomVersion, eventID string) (*event.Event, error)
	// StateIDs fetches the IDs of the state before eventID and of its auth chain.
	StateIDs(ctx context.Context, server, roomID, eventID string) (state, authChain []string, err error)
	// MissingEvents fetches up to limit events that lead from the earliest
	// events to the latest ones.
	MissingEvents(ctx context.Context, server string, version event.RoomVersion, roomID string, earliest, latest []string, limit int) ([]*event.Event, error)
	// Backfill fetches up to limit events before the given ones.
	Backfill(ctx context.Context, server string, version event.RoomVersion, roomID string, from []string, limit int) ([]*event.Event, error)
	// QueryAlias asks server which room an alias of its names.
	QueryAlias(ctx context.Context, server, alias string) (roomID string, servers []string, err error)
	// Send queues events for delivery to the destinations.
	Send(destinations []string, events []*event.Event)
}

// SendJoinResponse is the room at a join, as the resident server sent it.
type SendJoinResponse struct {
	State     []*event.Event
	AuthChain []*event.Event
	// Event is the join as the resident server countersigned it (restricted
	// joins); nil when it returned none.
	Event *event.Event
	// Origin is the resident server that answered.
	Origin string
}

// SetFederation wires the federation layer; without it the engine serves
// local rooms only.
func (e *Engine) SetFederation(f Federation) { e.fed = f }

// serverOf is the server part of a user ID.
func serverOf(userID string) string {
	if i := strings.IndexByte(userID, ':'); i >= 0 {
		return userID[i+1:]
	}
	return ""
}

// remoteServersLocked lists the servers, other than ours, with users
// joined to the room: where its events must go. The caller holds r.mu and
// may change the list it gets.
func (r *room) remoteServersLocked() []string {
	return slices.Clone(r.interestLocked().remote)
}

// sendOut hands local events to the federation sender for every other
// server in the room (and the servers of remote users they invite).
func (r *room) sendOut(evs []*event.Event) {
	if r.e.fed == nil || len(evs) == 0 {
		return
	}
	r.mu.RLock()
	dests := r.remoteServersLocked()
	r.mu.RUnlock()
	for _, ev := range evs {
		if ev.Type() == "m.room.member" && ev.StateKey() != nil {
			if s := serverOf(*ev.StateKey()); s != r.e.cfg.ServerName && !contains(dests, s) {
				dests = append(dests, s)
			}
		}
	}
	if len(dests) > 0 {
		r.e.fed.Send(dests, evs)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
