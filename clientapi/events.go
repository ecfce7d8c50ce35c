package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// parseStreamToken reads a pagination token: a sync token ("s12_3") or
// a bare position, as /messages and /sync hand out. "" gives -1.
func parseStreamToken(s string) (int64, *httputil.Error) {
	if s == "" {
		return -1, nil
	}
	t, err := sync.ParseToken(s)
	if err != nil {
		return 0, httputil.InvalidParam("invalid pagination token")
	}
	return t.Events, nil
}

func streamToken(pos int64) string { return sync.Token{Events: pos}.String() }

// pageParams are the pagination parameters /messages and /relations share.
type pageParams struct {
	backwards bool
	from, to  int64 // -1 when not given
	limit     int
}

// parsePageParams reads dir, from, to and limit. defaultDir is the dir when
// none is given ("" makes dir required); defaultLimit the limit.
func parsePageParams(r *http.Request, defaultDir string, defaultLimit int) (pageParams, *httputil.Error) {
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir == "" {
		dir = defaultDir
	}
	if dir != "b" && dir != "f" {
		return pageParams{}, httputil.InvalidParam("dir must be b or f")
	}
	p := pageParams{backwards: dir == "b"}
	var e *httputil.Error
	if p.from, e = parseStreamToken(q.Get("from")); e != nil {
		return pageParams{}, e
	}
	if p.to, e = parseStreamToken(q.Get("to")); e != nil {
		return pageParams{}, e
	}
	if p.limit, e = queryInt(r, "limit", defaultLimit); e != nil {
		return pageParams{}, e
	}
	return p, nil
}

func (a *API) messages(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	params, e := parsePageParams(r, "", 10) // dir is required for /messages
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	f, e := a.roomEventFilter(q.Get("filter"))
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	f.match = a.hideIgnored(r, dev, f.match)
	roomID := mux.Vars(r)["roomId"]
	resp, err := a.rooms.Rooms.Messages(r.Context(), rooms.MessagesRequest{
		Viewer: viewer(dev), RoomID: roomID, From: params.from, To: params.to, Backwards: params.backwards, Limit: params.limit, Match: f.match,
	})
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	body := map[string]any{"chunk": nonNil(resp.Chunk), "start": streamToken(resp.Start)}
	if resp.End != -1 { // backfilled history has negative positions
		body["end"] = streamToken(resp.End)
	}
	if f.lazyLoadMembers && len(resp.Chunk) > 0 {
		state, err := a.membersOf(r, dev, roomID, resp.Chunk)
		if err != nil {
			writeRoomError(w, r, err)
			return
		}
		body["state"] = state
	}
	httputil.WriteJSON(w, http.StatusOK, body)
}

func nonNil(evs []*rooms.ClientEvent) []*rooms.ClientEvent {
	if evs == nil {
		return []*rooms.ClientEvent{}
	}
	return evs
}

// membersOf returns the current member events of the senders of evs, for
// lazy-loading clients.
func (a *API) membersOf(r *http.Request, dev *users.Device, roomID string, evs []*rooms.ClientEvent) ([]*rooms.ClientEvent, error) {
	st, err := a.rooms.Rooms.StateForUser(r.Context(), dev.UserID, roomID)
	if err != nil {
		return nil, err
	}
	want := storage.StateMap{}
	for _, ev := range evs {
		k := storage.StateKey{Type: "m.room.member", StateKey: ev.Sender}
		if id, ok := st[k]; ok {
			want[k] = id
		}
	}
	return a.rooms.Rooms.StateEvents(r.Context(), want, viewer(dev))
}

func (a *API) members(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	roomID := mux.Vars(r)["roomId"]
	st, err := a.rooms.Rooms.StateForUser(r.Context(), dev.UserID, roomID)
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	if at := q.Get("at"); at != "" {
		pos, e := parseStreamToken(at)
		if e != nil {
			httputil.WriteError(w, e)
			return
		}
		// The members as they were at that point, if the user could see
		// the room then.
		if st, err = a.rooms.Rooms.StateAtPosForUser(r.Context(), dev.UserID, roomID, pos); err != nil {
			writeRoomError(w, r, notFoundAsForbidden(err))
			return
		}
	}
	memberState := storage.StateMap{}
	for k, v := range st {
		if k.Type == "m.room.member" {
			memberState[k] = v
		}
	}
	evs, err := a.rooms.Rooms.StateEvents(r.Context(), memberState, viewer(dev))
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	chunk := []*rooms.ClientEvent{}
	for _, ev := range evs {
		var c struct {
			Membership string `json:"membership"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		if (want != "" && c.Membership != want) || (notWant != "" && c.Membership == notWant) {
			continue
		}
		chunk = append(chunk, ev)
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"chunk": chunk})
}

func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	roomID := mux.Vars(r)["roomId"]
	if m, err := a.rooms.Rooms.Membership(r.Context(), roomID, dev.UserID); err != nil || m != "join" {
		httputil.WriteError(w, httputil.Forbidden("you are not joined to this room"))
		return
	}
	st, err := a.rooms.Rooms.CurrentState(r.Context(), roomID)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	type member struct {
		DisplayName *string `json:"display_name"`
		AvatarURL   *string `json:"avatar_url"`
	}
	joined := map[string]member{}
	for k, ev := range st {
		if k.Type != "m.room.member" {
			continue
		}
		var c struct {
			Membership  string  `json:"membership"`
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		if json.Unmarshal(ev.Content(), &c) != nil || c.Membership != "join" {
			continue
		}
		joined[k.StateKey] = member{DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"joined": joined})
}

func (a *API) eventContext(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	limit, e := queryInt(r, "limit", 10)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	f, e := a.roomEventFilter(r.URL.Query().Get("filter"))
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	f.match = a.hideIgnored(r, dev, f.match)
	ctx := r.Context()
	ev, err := a.rooms.Rooms.EventForUser(ctx, viewer(dev), vars["roomId"], vars["eventId"])
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	pos := ev.Stored.StreamPos
	before, err := a.rooms.Rooms.Messages(ctx, rooms.MessagesRequest{Viewer: viewer(dev), RoomID: vars["roomId"],
		From: pos - 1, To: -1, Backwards: true, Limit: limit / 2, Match: f.match})
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	after, err := a.rooms.Rooms.Messages(ctx, rooms.MessagesRequest{Viewer: viewer(dev), RoomID: vars["roomId"],
		From: pos, To: -1, Backwards: false, Limit: limit - limit/2, Match: f.match})
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	if limit/2 == 0 {
		before.Chunk = nil
	}
	st, err := a.rooms.Rooms.StateAtEvent(ctx, ev.Stored)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	if f.lazyLoadMembers {
		all := append(append([]*rooms.ClientEvent{ev}, before.Chunk...), after.Chunk...)
		senders := map[string]bool{}
		for _, e := range all {
			senders[e.Sender] = true
		}
		for k := range st {
			if k.Type == "m.room.member" && !senders[k.StateKey] {
				delete(st, k)
			}
		}
	}
	stateEvs, err := a.rooms.Rooms.StateEvents(ctx, st, viewer(dev))
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	start, end := pos-1, pos
	if n := len(before.Chunk); n > 0 {
		start = before.Chunk[n-1].Stored.StreamPos - 1
	}
	if n := len(after.Chunk); n > 0 {
		end = after.Chunk[n-1].Stored.StreamPos
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"event": ev, "events_before": nonNil(before.Chunk), "events_after": nonNil(after.Chunk),
		"state": nonNil(stateEvs), "start": streamToken(start), "end": streamToken(end),
	})
}

func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		httputil.WriteError(w, httputil.InvalidParam("ts must be an integer"))
		return
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		httputil.WriteError(w, httputil.InvalidParam("dir must be f or b"))
		return
	}
	ev, err := a.rooms.Rooms.ClosestVisibleEvent(r.Context(), viewer(dev), mux.Vars(r)["roomId"], ts, dir == "f")
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"event_id": ev.EventID, "origin_server_ts": ev.OriginServerTS})
}

func (a *API) putAlias(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	alias := mux.Vars(r)["roomAlias"]
	var req struct {
		RoomID string `json:"room_id"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	parsed, err := id.ParseRoomAlias(alias)
	if err != nil {
		httputil.WriteError(w, httputil.InvalidParam("invalid room alias"))
		return
	}
	if string(parsed.Server) != a.cfg.ServerName {
		httputil.WriteError(w, httputil.InvalidParam("aliases of other servers cannot be created here"))
		return
	}
	if err := a.rooms.Rooms.CreateAlias(r.Context(), alias, req.RoomID, dev.UserID); err != nil {
		if errors.Is(err, rooms.ErrRoomInUse) {
			httputil.WriteError(w, httputil.NewError(http.StatusConflict, "M_UNKNOWN", "room alias already exists"))
			return
		}
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	alias := mux.Vars(r)["roomAlias"]
	if _, err := id.ParseRoomAlias(alias); err != nil {
		httputil.WriteError(w, httputil.InvalidParam("invalid room alias"))
		return
	}
	roomID, err := a.rooms.Rooms.ResolveRoom(r.Context(), alias)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": []string{a.cfg.ServerName}})
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if err := a.rooms.Rooms.DeleteAlias(r.Context(), mux.Vars(r)["roomAlias"], dev.UserID, dev.IsAdmin); err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

func (a *API) roomAliases(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	roomID := mux.Vars(r)["roomId"]
	if _, err := a.rooms.Rooms.StateForUser(r.Context(), dev.UserID, roomID); err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	aliases, err := a.rooms.Rooms.DB().RoomAliases(r.Context(), roomID)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	if aliases == nil {
		aliases = []string{}
	}
	httputil.WriteJSON(w, http.StatusOK, map[string][]string{"aliases": aliases})
}
