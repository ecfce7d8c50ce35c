package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// What the federation API serves to other servers about our rooms.

// MakeJoinTemplate answers make_join: an unsigned join event for userID
// built on the room's current head, provided the join would be allowed
// and the room's version is one the joining server supports.
func (e *Engine) MakeJoinTemplate(ctx context.Context, roomID, userID, membership string, supported []string) (event.RoomVersion, json.RawMessage, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return "", nil, err
	}
	if supported != nil && !contains(supported, string(r.version)) {
		return r.version, nil, wrapf(ErrIncompatibleVersion, "room version %s is not supported by the joining server", r.version)
	}
	r.mu.RLock()
	h := head{view: stateView{base: r.state, overlay: map[storage.StateKey]*event.Event{}}, depth: r.depth, extremities: r.extremities}
	content := map[string]any{"membership": membership}
	if membership == "join" {
		if via := r.authorisingUser(userID); via != "" {
			content["join_authorised_via_users_server"] = via
		}
	}
	p := Proto{Type: "m.room.member", StateKey: &userID, Sender: userID, Content: mustJSON(content)}
	ev, err := r.build(p, &h)
	if err == nil {
		err = authrules.Allowed(ev, h.view)
	}
	r.mu.RUnlock()
	if err != nil {
		return "", nil, wrapf(ErrForbidden, "%v", err)
	}
	// The template is the built event without what the joining server
	// fills in itself: hashes, signatures, and for v3+ no event_id.
	var obj map[string]json.RawMessage
	_ = json.Unmarshal(ev.JSON(), &obj)
	for _, k := range []string{"hashes", "signatures", "event_id", "unsigned"} {
		delete(obj, k)
	}
	return r.version, mustJSON(obj), nil
}

// ErrIncompatibleVersion: the remote server does not support the room version.
var ErrIncompatibleVersion = errors.New("incompatible room version")

// authorisingUser picks a local user able to authorise a restricted join:
// one joined with the power to invite. Empty when the room is not
// restricted or no such user exists.
func (r *room) authorisingUser(joiner string) string {
	jr := r.state[storage.StateKey{Type: "m.room.join_rules"}]
	if jr == nil || !r.info.RestrictedJoins {
		return ""
	}
	var c joinRulesContent
	_ = json.Unmarshal(jr.Content(), &c)
	if c.JoinRule != "restricted" && c.JoinRule != "knock_restricted" {
		return ""
	}
	if m := r.state[storage.StateKey{Type: "m.room.member", StateKey: joiner}]; m != nil {
		if ms, _ := m.Membership(); ms == "join" || ms == "invite" {
			return "" // no authorisation needed
		}
	}
	// Authorising is vouching that the joiner meets the allow conditions:
	// the auth rules cannot check them, so the resident server must.
	if !r.e.meetsAllow(c.Allow, joiner) {
		return ""
	}
	pl, err := authrules.NewPowerLevels(r.state[storage.StateKey{Type: "m.room.create"}], r.state[storage.StateKey{Type: "m.room.power_levels"}])
	if err != nil {
		return ""
	}
	var users []string
	for k, ev := range r.state {
		if k.Type == "m.room.member" && serverOf(k.StateKey) == r.e.cfg.ServerName {
			if m, _ := ev.Membership(); m == "join" && pl.UserLevel(k.StateKey) >= pl.InviteLevel() {
				users = append(users, k.StateKey)
			}
		}
	}
	sort.Strings(users)
	if len(users) == 0 {
		return ""
	}
	return users[0]
}

// joinRulesContent is what restricted joins read of m.room.join_rules.
type joinRulesContent struct {
	JoinRule string      `json:"join_rule"`
	Allow    []allowRule `json:"allow"`
}

// allowRule is an entry of a restricted room's allow list.
type allowRule struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
}

// meetsAllow reports whether a user is joined to one of the rooms a
// restricted room's allow list names, as far as this server knows.
func (e *Engine) meetsAllow(allow []allowRule, userID string) bool {
	for _, a := range allow {
		if a.Type != "m.room_membership" {
			continue
		}
		if m, err := e.Membership(context.Background(), a.RoomID, userID); err == nil && m == "join" {
			return true
		}
	}
	return false
}

// MayAuthoriseJoin reports whether this server may vouch for userID's
// restricted join of roomID: one of its users can authorise it and the
// user meets the room's allow conditions.
func (e *Engine) MayAuthoriseJoin(ctx context.Context, roomID, userID string) bool {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.authorisingUser(userID) != ""
}

// HandleSendJoin accepts a remote server's signed join (or leave, or
// knock) event and returns the state before it and the auth chain of that
// state and the event, as send_join answers.
func (e *Engine) HandleSendJoin(ctx context.Context, origin string, ev *event.Event, membership string) (state, authChain []json.RawMessage, signed *event.Event, err error) {
	if ev.Type() != "m.room.member" || ev.StateKey() == nil || *ev.StateKey() != ev.Sender() || serverOf(ev.Sender()) != origin {
		return nil, nil, nil, wrapf(ErrBadRequest, "not a %s event of a user of %s", membership, origin)
	}
	if m, err := ev.Membership(); err != nil || m != membership {
		return nil, nil, nil, wrapf(ErrBadRequest, "membership must be %s", membership)
	}
	// A restricted join names one of our users as authoriser: we add our
	// signature, as the resident server.
	if via, ok := authrules.AuthorisingServer(ev); ok && via == e.cfg.ServerName {
		if !e.MayAuthoriseJoin(ctx, ev.RoomID(), ev.Sender()) {
			return nil, nil, nil, wrapf(ErrForbidden, "this server will not authorise that join")
		}
		key := e.cfg.SigningKey
		if ev, err = ev.Sign(e.cfg.ServerName, key.KeyID, key.Key); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := e.Ingest(ctx, origin, ev); err != nil {
		return nil, nil, nil, err
	}
	e.passOn(ctx, ev, origin)
	row, err := e.db.GetEvent(ctx, ev.EventID())
	if err != nil {
		return nil, nil, nil, wrapf(ErrForbidden, "the event was not accepted")
	}
	st, err := e.db.LoadSnapshot(ctx, row.StateBefore)
	if err != nil {
		return nil, nil, nil, err
	}
	ids := make([]string, 0, len(st))
	for _, id := range st {
		ids = append(ids, id)
	}
	state, err = e.eventsJSON(ctx, ids)
	if err != nil {
		return nil, nil, nil, err
	}
	chain, err := e.AuthChain(ctx, append(ids, ev.EventID()))
	if err != nil {
		return nil, nil, nil, err
	}
	authChain, err = e.eventsJSON(ctx, chain)
	return state, authChain, ev, err
}

// passOn sends a membership event that origin handed us through
// send_join or send_leave to the room's other servers: the joining server
// knows only us, and the spec makes the resident server pass it on.
func (e *Engine) passOn(ctx context.Context, ev *event.Event, origin string) {
	if e.fed == nil {
		return
	}
	r, err := e.room(ctx, ev.RoomID())
	if err != nil {
		return
	}
	r.mu.RLock()
	servers := r.remoteServersLocked()
	r.mu.RUnlock()
	dests := servers[:0]
	for _, s := range servers {
		if s != origin {
			dests = append(dests, s)
		}
	}
	if len(dests) > 0 {
		e.fed.Send(dests, []*event.Event{ev})
	}
}

// eventsJSON loads the JSON of events held in the timeline or as outliers,
// in the order of ids, a few hundred per query (a join of a large room
// asks for tens of thousands).
func (e *Engine) eventsJSON(ctx context.Context, ids []string) ([]json.RawMessage, error) {
	rows, err := e.db.GetEventsOrdered(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(rows))
	for i, row := range rows {
		out[i] = json.RawMessage(row.JSON)
	}
	return out, nil
}

// AuthChain returns the IDs of the auth chain of the events: every event
// reachable through auth_events, not including the events themselves
// unless another event of the chain cites them. It walks the chain a
// level at a time, loading each level with one query per few hundred
// events.
func (e *Engine) AuthChain(ctx context.Context, ids []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	level := append([]string{}, ids...)
	for len(level) > 0 {
		rows, err := e.db.GetEvents(ctx, level)
		if err != nil {
			return nil, err
		}
		// Sorted, so that the answer does not depend on the database's order.
		sort.Slice(rows, func(i, j int) bool { return rows[i].EventID < rows[j].EventID })
		var next []string
		for _, row := range rows {
			var ev struct {
				AuthEvents json.RawMessage `json:"auth_events"`
			}
			_ = json.Unmarshal([]byte(row.JSON), &ev)
			for _, a := range authIDs(ev.AuthEvents) {
				if !seen[a] {
					seen[a] = true
					out = append(out, a)
					next = append(next, a)
				}
			}
		}
		level = next
	}
	return out, nil
}

// authIDs reads auth_events in either format.
func authIDs(raw json.RawMessage) []string {
	var ids []string
	if json.Unmarshal(raw, &ids) == nil {
		return ids
	}
	var pairs [][]json.RawMessage
	if json.Unmarshal(raw, &pairs) == nil {
		for _, p := range pairs {
			var id string
			if len(p) > 0 && json.Unmarshal(p[0], &id) == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// serverMaySee reports whether a remote server may read an event, given
// the state before it: the history visibility rules applied to the
// server's users.
func (e *Engine) serverMaySee(ctx context.Context, server string, row *storage.EventRow) (bool, error) {
	if row.Type == "m.room.member" && row.StateKey != nil && serverOf(*row.StateKey) == server {
		// Membership events of the server's own users (an invite it
		// countersigned, a kick): it may see them, and their auth chain.
		return true, nil
	}
	st, err := e.db.LoadSnapshot(ctx, row.StateBefore)
	if err != nil {
		return false, err
	}
	visibility := "shared"
	if id, ok := st[storage.StateKey{Type: "m.room.history_visibility"}]; ok {
		if v := e.contentString(ctx, id, "history_visibility"); isKnownVisibility(v) {
			visibility = v
		}
	}
	if visibility == "world_readable" {
		return true, nil
	}
	suffix := ":" + server
	for k, id := range st {
		if k.Type != "m.room.member" || !strings.HasSuffix(k.StateKey, suffix) {
			continue
		}
		m := e.contentString(ctx, id, "membership")
		if m == "join" || (m == "invite" && visibility == "invited") {
			return true, nil
		}
	}
	if visibility == "shared" {
		// Shared history is readable by servers whose users are in the room now.
		ms, err := e.db.RoomMembers(ctx, row.RoomID, "join")
		if err != nil {
			return false, err
		}
		for _, m := range ms {
			if strings.HasSuffix(m.UserID, suffix) {
				return true, nil
			}
		}
	}
	return false, nil
}

// EventForServer returns an event's JSON if the server may see it.
func (e *Engine) EventForServer(ctx context.Context, server, eventID string) (json.RawMessage, error) {
	row, err := e.db.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		// Outliers (auth events) are served to anyone in the room.
		roomID, js, k, err := e.db.AnyEventJSON(ctx, eventID)
		if err != nil {
			return nil, err
		}
		if k == storage.Outlier && e.serverInRoom(ctx, server, roomID) {
			return json.RawMessage(js), nil
		}
		return nil, wrapf(ErrNotFound, "event not found")
	}
	if err != nil {
		return nil, err
	}
	ok, err := e.serverMaySee(ctx, server, row)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, wrapf(ErrNotFound, "event not found")
	}
	return e.jsonForServer(row)
}

// jsonForServer serves the redacted form of redacted events.
func (e *Engine) jsonForServer(row *storage.EventRow) (json.RawMessage, error) {
	if row.RedactedBy == "" {
		return json.RawMessage(row.JSON), nil
	}
	ev, err := e.parseRow(row)
	if err != nil {
		return nil, err
	}
	red, err := ev.Redacted()
	if err != nil {
		return nil, err
	}
	return red.JSON(), nil
}

// serverInRoom reports whether the server has a user joined to the room.
func (e *Engine) serverInRoom(ctx context.Context, server, roomID string) bool {
	ms, err := e.db.RoomMembers(ctx, roomID, "join")
	if err != nil {
		return false
	}
	for _, m := range ms {
		if serverOf(m.UserID) == server {
			return true
		}
	}
	return false
}

// StateIDsForServer answers /state_ids: the state before an event and its
// auth chain, for a server in the room.
func (e *Engine) StateIDsForServer(ctx context.Context, server, roomID, eventID string) (state, authChain []string, err error) {
	row, err := e.db.GetEvent(ctx, eventID)
	if err != nil || row.RoomID != roomID {
		return nil, nil, wrapf(ErrNotFound, "event not found")
	}
	if ok, err := e.serverMaySee(ctx, server, row); err != nil || !ok {
		return nil, nil, errors.Join(err, wrapf(ErrForbidden, "the server may not see this event"))
	}
	st, err := e.db.LoadSnapshot(ctx, row.StateBefore)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range st {
		state = append(state, id)
	}
	sort.Strings(state)
	authChain, err = e.AuthChain(ctx, state)
	return state, authChain, err
}

// EventsJSON exposes eventsJSON to the federation API.
func (e *Engine) EventsJSON(ctx context.Context, ids []string) ([]json.RawMessage, error) {
	return e.eventsJSON(ctx, ids)
}

// BackfillForServer answers /backfill: up to limit events of the room
// before (and including) the given ones, newest first, that the server may see.
func (e *Engine) BackfillForServer(ctx context.Context, server, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	// Positions may be negative: history we backfilled ourselves.
	var top int64 = minPos
	for _, id := range from {
		row, err := e.db.GetEvent(ctx, id)
		if err == nil && row.RoomID == roomID && row.StreamPos > top {
			top = row.StreamPos
		}
	}
	if top == minPos {
		return []json.RawMessage{}, nil
	}
	rows, err := e.db.RoomEvents(ctx, roomID, minPos, top, min(max(limit, 1), 100), true)
	if err != nil {
		return nil, err
	}
	return e.visibleToServer(ctx, server, rows)
}

// MissingEventsForServer answers /get_missing_events: events reachable
// backwards from latest through prev_events, stopping at earliest, at most
// limit of them, oldest first.
func (e *Engine) MissingEventsForServer(ctx context.Context, server, roomID string, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	limit = min(max(limit, 1), 100)
	stop := map[string]bool{}
	for _, id := range earliest {
		stop[id] = true
	}
	seen := map[string]bool{}
	queue := []string{}
	for _, id := range latest {
		row, err := e.db.GetEvent(ctx, id)
		if err == nil && row.RoomID == roomID {
			queue = append(queue, prevEventIDs(row)...)
		}
	}
	var rows []*storage.EventRow
	for len(queue) > 0 && len(rows) < limit {
		id := queue[0]
		queue = queue[1:]
		if seen[id] || stop[id] {
			continue
		}
		seen[id] = true
		row, err := e.db.GetEvent(ctx, id)
		if err != nil || row.RoomID != roomID || row.Depth < minDepth {
			continue
		}
		rows = append(rows, row)
		queue = append(queue, prevEventIDs(row)...)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].StreamPos < rows[j].StreamPos })
	return e.visibleToServer(ctx, server, rows)
}

// visibleToServer is the events of rows that server may see (history
// visibility), in the form sent over federation.
func (e *Engine) visibleToServer(ctx context.Context, server string, rows []*storage.EventRow) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	for _, row := range rows {
		if ok, err := e.serverMaySee(ctx, server, row); err != nil {
			return nil, err
		} else if ok {
			js, err := e.jsonForServer(row)
			if err != nil {
				return nil, err
			}
			out = append(out, js)
		}
	}
	return out, nil
}

// prevEventIDs are a stored event's prev_events.
func prevEventIDs(row *storage.EventRow) []string {
	var pe struct {
		PrevEvents json.RawMessage `json:"prev_events"`
	}
	_ = json.Unmarshal([]byte(row.JSON), &pe)
	return authIDs(pe.PrevEvents)
}
