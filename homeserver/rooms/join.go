package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// JoinRemote joins a local user to a room this server is not in, through
// the first of servers that answers: make_join, sign, send_join, then the
// room's state and auth chain are checked and stored.
func (e *Engine) JoinRemote(ctx context.Context, roomID, userID string, servers []string) error {
	if e.fed == nil {
		return wrapf(ErrNotFound, "unknown room %s, and federation is off", roomID)
	}
	if r, err := e.room(ctx, roomID); err == nil {
		// A room we left: the servers still in it, as we last knew them.
		r.mu.RLock()
		servers = append(servers, r.remoteServersLocked()...)
		r.mu.RUnlock()
	}
	var errs []error
	for _, server := range dedupe(servers) {
		if server == e.cfg.ServerName {
			continue
		}
		err := e.joinVia(ctx, server, roomID, userID)
		if err == nil {
			return nil
		}
		e.cfg.Log.WithError(err).WithField("server", server).Info("remote join failed; trying the next server")
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
	}
	if len(errs) == 0 {
		return wrapf(ErrNotFound, "no server to join %s through", roomID)
	}
	return errors.Join(append([]error{ErrForbidden}, errs...)...)
}

// leftRemoteRoom reports whether this server knows the room but is no
// longer in it (no local user joined) while other servers are: a local
// join would build on a head that is stale by whatever happened since
// (an unban, say, that was never sent to us), so the join goes through a
// resident server, as a first join does.
func (e *Engine) leftRemoteRoom(r *room) bool {
	if e.fed == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for k, ev := range r.state {
		if k.Type == "m.room.member" && serverOf(k.StateKey) == e.cfg.ServerName {
			if m, _ := ev.Membership(); m == "join" {
				return false
			}
		}
	}
	return len(r.remoteServersLocked()) > 0
}

// template is what make_join and make_leave answer.
type template struct {
	Type       string          `json:"type"`
	StateKey   *string         `json:"state_key"`
	Sender     string          `json:"sender"`
	RoomID     string          `json:"room_id"`
	Content    json.RawMessage `json:"content"`
	PrevEvents json.RawMessage `json:"prev_events"`
	AuthEvents json.RawMessage `json:"auth_events"`
	Depth      int64           `json:"depth"`
}

// protoFromTemplate turns a resident server's template into an event we
// sign, keeping its references and adding our own content.
func (e *Engine) protoFromTemplate(raw json.RawMessage, info event.RoomVersionInfo, userID, membership string, extra map[string]any) (event.ProtoEvent, error) {
	var t template
	if err := json.Unmarshal(raw, &t); err != nil {
		return event.ProtoEvent{}, fmt.Errorf("bad template: %w", err)
	}
	if t.Type != "m.room.member" || t.StateKey == nil || *t.StateKey != userID || t.Sender != userID {
		return event.ProtoEvent{}, fmt.Errorf("template is not a membership event for %s", userID)
	}
	content := map[string]any{}
	_ = json.Unmarshal(t.Content, &content)
	content["membership"] = membership
	for k, v := range extra {
		content[k] = v
	}
	p := event.ProtoEvent{Type: t.Type, StateKey: t.StateKey, Sender: userID, RoomID: t.RoomID,
		Content: mustJSON(content), Depth: t.Depth, OriginServerTS: e.now().UnixMilli()}
	var err error
	if p.PrevEvents, p.ReferenceHashes, err = eventRefs(t.PrevEvents, info, p.ReferenceHashes); err != nil {
		return event.ProtoEvent{}, err
	}
	if p.AuthEvents, p.ReferenceHashes, err = eventRefs(t.AuthEvents, info, p.ReferenceHashes); err != nil {
		return event.ProtoEvent{}, err
	}
	return p, nil
}

// eventRefs reads prev_events or auth_events of a template: IDs, or in
// room versions 1 and 2 [ID, {"sha256": hash}] pairs.
func eventRefs(raw json.RawMessage, info event.RoomVersionInfo, hashes map[string]string) ([]string, map[string]string, error) {
	if info.EventIDFormat != event.EventIDFormatV1 {
		var ids []string
		err := json.Unmarshal(raw, &ids)
		return ids, hashes, err
	}
	var pairs [][]json.RawMessage
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, nil, err
	}
	if hashes == nil {
		hashes = map[string]string{}
	}
	var ids []string
	for _, p := range pairs {
		if len(p) != 2 {
			return nil, nil, errors.New("bad event reference")
		}
		var id string
		var h struct {
			SHA256 string `json:"sha256"`
		}
		if json.Unmarshal(p[0], &id) != nil || json.Unmarshal(p[1], &h) != nil {
			return nil, nil, errors.New("bad event reference")
		}
		ids = append(ids, id)
		hashes[id] = h.SHA256
	}
	return ids, hashes, nil
}

func (e *Engine) joinVia(ctx context.Context, server, roomID, userID string) error {
	version, tmpl, err := e.fed.MakeJoin(ctx, server, roomID, userID)
	if err != nil {
		return err
	}
	info, err := version.Info()
	if err != nil {
		return wrapf(ErrUnsupportedRoomVersion, "%v", err)
	}
	name, avatar := e.cfg.Profiles(ctx, userID)
	extra := map[string]any{}
	if name != "" {
		extra["displayname"] = name
	}
	if avatar != "" {
		extra["avatar_url"] = avatar
	}
	proto, err := e.protoFromTemplate(tmpl, info, userID, "join", extra)
	if err != nil {
		return err
	}
	if proto.RoomID != roomID {
		return fmt.Errorf("template for the wrong room %s", proto.RoomID)
	}
	key := e.cfg.SigningKey
	join, err := proto.Build(version, e.cfg.ServerName, key.KeyID, key.Key)
	if err != nil {
		return err
	}
	resp, err := e.fed.SendJoin(ctx, server, version, join)
	if err != nil {
		return err
	}
	if resp.Event != nil {
		if resp.Event.EventID() != join.EventID() {
			return errors.New("send_join returned a different event")
		}
		join = resp.Event // countersigned for a restricted join
	}
	return e.storeJoinedRoom(ctx, version, info, join, resp)
}

// storeJoinedRoom checks the state and auth chain a resident server sent
// with our join and stores the room: the auth chain and state as
// outliers, the state as the snapshot before our join, and the join as the
// room's first timeline event.
func (e *Engine) storeJoinedRoom(ctx context.Context, version event.RoomVersion, info event.RoomVersionInfo, join *event.Event, resp *SendJoinResponse) error {
	roomID := join.RoomID()
	byID := map[string]*event.Event{}
	for _, ev := range append(append([]*event.Event{}, resp.AuthChain...), resp.State...) {
		if ev.RoomID() != roomID {
			return fmt.Errorf("send_join: event %s is from another room", ev.EventID())
		}
		byID[ev.EventID()] = ev
	}
	// Check every event against its own auth events, oldest first; an
	// event that fails, or whose auth events are missing, is dropped, and
	// so is state that depends on it.
	all := make([]*event.Event, 0, len(byID))
	for _, ev := range byID {
		all = append(all, ev)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Depth() != all[j].Depth() {
			return all[i].Depth() < all[j].Depth()
		}
		return all[i].EventID() < all[j].EventID()
	})
	var create *event.Event
	for _, ev := range all {
		if ev.Type() == "m.room.create" && ev.StateKeyEquals("") {
			create = ev
		}
	}
	if create == nil {
		return errors.New("send_join: no create event in the state")
	}
	valid := map[string]bool{}
	for _, ev := range all {
		var authEvs []*event.Event
		ok := true
		for _, id := range ev.AuthEventIDs() {
			if !valid[id] {
				ok = false
				break
			}
			authEvs = append(authEvs, byID[id])
		}
		if !ok || authrules.CheckAuthEvents(ev, authEvs) != nil {
			continue
		}
		auth := authEvs
		if info.CreateEventIsRoomID && ev != create {
			auth = append(auth, create)
		}
		if authrules.Allowed(ev, authrules.NewStateMap(auth...)) == nil {
			valid[ev.EventID()] = true
		}
	}
	state := storage.StateMap{}
	stateEvs := map[storage.StateKey]*event.Event{}
	for _, ev := range resp.State {
		if !valid[ev.EventID()] || ev.StateKey() == nil {
			continue
		}
		k := storage.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}
		state[k] = ev.EventID()
		stateEvs[k] = ev
	}
	if err := authrules.Allowed(join, stateView{base: stateEvs}); err != nil {
		return fmt.Errorf("send_join: our join is not allowed by the state sent: %w", err)
	}

	// A room we were in before (and left) is rejoined: the state the
	// resident server sent replaces ours, which may be stale.
	_, err := e.db.GetRoom(ctx, roomID)
	rejoin := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	var known map[storage.StateKey]*event.Event
	if rejoin {
		// Loaded (rooms stay loaded), so that the head is replaced below
		// on this very room: remote events its sequencer is checking on
		// the old head are then not committed over the new one, but
		// checked again.
		loaded, err := e.room(ctx, roomID)
		if err != nil {
			return err
		}
		loaded.headMu.Lock()
		defer loaded.headMu.Unlock()
		known = loaded.stateCopy()
	}
	r := newRoom(e, roomID, version, info)
	pos := e.cfg.Positions.Allocate(1)
	defer e.cfg.Positions.Done(pos)
	var before, after int64
	err = e.db.WithTx(ctx, func(tx *storage.Tx) error {
		if !rejoin {
			if err := storage.InsertRoom(ctx, tx, storage.Room{RoomID: roomID, Version: string(version), CreatedTS: create.OriginServerTS()}); err != nil {
				return err
			}
		}
		for id, ev := range byID {
			if !valid[id] {
				continue
			}
			if err := storage.InsertOutlier(ctx, tx, id, roomID, string(ev.JSON()), false); err != nil {
				return err
			}
		}
		var err error
		if before, err = e.db.InsertSnapshot(ctx, tx, roomID, 0, state); err != nil {
			return err
		}
		if after, err = e.db.InsertSnapshot(ctx, tx, roomID, before, storage.StateMap{{Type: "m.room.member", StateKey: *join.StateKey()}: join.EventID()}); err != nil {
			return err
		}
		if err := e.db.InsertEvents(ctx, tx, []*storage.EventRow{{EventID: join.EventID(), RoomID: roomID, Type: join.Type(),
			StateKey: join.StateKey(), Sender: join.Sender(), Depth: join.Depth(), OriginServerTS: join.OriginServerTS(),
			StreamPos: pos, StateBefore: before, JSON: string(join.JSON())}}); err != nil {
			return err
		}
		for k, ev := range stateEvs {
			if k.Type != "m.room.member" || k.StateKey == *join.StateKey() {
				continue
			}
			if old := known[k]; old != nil && old.EventID() == ev.EventID() {
				continue // unchanged while we were away: no news for /sync
			}
			m, _ := ev.Membership()
			if err := storage.SetMembership(ctx, tx, storage.Membership{RoomID: roomID, UserID: k.StateKey, Membership: m, EventID: ev.EventID(), StreamPos: pos}); err != nil {
				return err
			}
		}
		if err := storage.SetMembership(ctx, tx, storage.Membership{RoomID: roomID, UserID: *join.StateKey(), Membership: "join", EventID: join.EventID(), StreamPos: pos}); err != nil {
			return err
		}
		return storage.SetRoomHead(ctx, tx, roomID, after, join.Depth(), []string{join.EventID()})
	})
	if err != nil {
		return err
	}
	for k, ev := range stateEvs {
		r.state[k] = ev
	}
	r.state[storage.StateKey{Type: "m.room.member", StateKey: *join.StateKey()}] = join
	r.stateGen++
	r.snapshot, r.depth, r.extremities = after, join.Depth(), []*event.Event{join}
	e.mu.Lock()
	loaded, exists := e.rooms[roomID]
	if !exists {
		e.rooms[roomID] = r
		go r.run()
	}
	e.mu.Unlock()
	if exists {
		// Nothing of ours was joined, so nothing of ours was being sent
		// on the old head: moving it here is safe.
		loaded.mu.Lock()
		loaded.state, loaded.snapshot, loaded.depth, loaded.extremities = r.state, r.snapshot, r.depth, r.extremities
		loaded.stateGen++
		loaded.mu.Unlock()
		// The sequencer builds on its own copy of the head: it must
		// start again from the committed one.
		loaded.stale.Store(true)
	}
	e.emit(join, pos)
	r.notify([]built{{ev: join}}, pos)
	return nil
}
