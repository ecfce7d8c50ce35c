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
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// RoomServices are the services behind the room and sync endpoints.
type RoomServices struct {
	Rooms *rooms.Engine
	Sync  *sync.Service
}

// roomError maps the room engine's errors to Matrix errors.
func roomError(err error) *httputil.Error {
	msg := err.Error()
	switch {
	case errors.Is(err, rooms.ErrNotFound):
		return httputil.NotFound(msg)
	case errors.Is(err, rooms.ErrForbidden):
		return httputil.Forbidden(msg)
	case errors.Is(err, rooms.ErrExclusive):
		return httputil.NewError(http.StatusBadRequest, "M_EXCLUSIVE", "%s", msg)
	case errors.Is(err, rooms.ErrRoomInUse):
		return httputil.NewError(http.StatusBadRequest, "M_ROOM_IN_USE", "%s", msg)
	case errors.Is(err, rooms.ErrUnsupportedRoomVersion):
		return httputil.NewError(http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION", "%s", msg)
	case errors.Is(err, rooms.ErrTooLarge):
		return httputil.TooLarge(msg)
	case errors.Is(err, rooms.ErrDuplicateAnnotation):
		return httputil.NewError(http.StatusBadRequest, "M_DUPLICATE_ANNOTATION", "%s", msg)
	case errors.Is(err, rooms.ErrInvalidRelation):
		return httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "%s", msg)
	case errors.Is(err, rooms.ErrBadRequest):
		return httputil.InvalidParam(msg)
	case errors.Is(err, sync.ErrBadToken):
		return httputil.InvalidParam(msg)
	}
	return nil
}

// writeRoomError answers with the Matrix error for err, logging unexpected ones.
func writeRoomError(w http.ResponseWriter, r *http.Request, err error) {
	if e := roomError(err); e != nil {
		httputil.WriteError(w, e)
		return
	}
	httputil.Logger(r.Context()).WithError(err).Error("room request failed")
	httputil.WriteError(w, httputil.Unknown())
}

// registerRoomRoutes adds the room, message and sync endpoints.
func (a *API) registerRoomRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	route("/createRoom", a.authed(a.createRoom), http.MethodPost)
	route("/join/{roomIdOrAlias}", a.authed(a.joinRoom), http.MethodPost)
	route("/rooms/{roomId}/join", a.authed(a.joinRoom), http.MethodPost)
	route("/knock/{roomIdOrAlias}", a.authed(a.knockRoom), http.MethodPost)
	route("/rooms/{roomId}/invite", a.authed(a.membershipChange("invite")), http.MethodPost)
	route("/rooms/{roomId}/kick", a.authed(a.membershipChange("leave")), http.MethodPost)
	route("/rooms/{roomId}/ban", a.authed(a.membershipChange("ban")), http.MethodPost)
	route("/rooms/{roomId}/unban", a.authed(a.membershipChange("leave")), http.MethodPost)
	route("/rooms/{roomId}/leave", a.authed(a.leaveRoom), http.MethodPost)
	route("/rooms/{roomId}/forget", a.authed(a.forgetRoom), http.MethodPost)
	route("/joined_rooms", a.authed(a.joinedRooms), http.MethodGet)
	route("/rooms/{roomId}/send/{eventType}/{txnId}", a.authed(a.sendMessage), http.MethodPut)
	// An empty state key appears as a trailing slash or as nothing at all.
	route("/rooms/{roomId}/state/{eventType}", a.authed(a.putState), http.MethodPut)
	route("/rooms/{roomId}/state/{eventType}/", a.authed(a.putState), http.MethodPut)
	route("/rooms/{roomId}/state/{eventType}/{stateKey}", a.authed(a.putState), http.MethodPut)
	route("/rooms/{roomId}/state", a.authed(a.getAllState), http.MethodGet)
	route("/rooms/{roomId}/state/{eventType}", a.authed(a.getState), http.MethodGet)
	route("/rooms/{roomId}/state/{eventType}/", a.authed(a.getState), http.MethodGet)
	route("/rooms/{roomId}/state/{eventType}/{stateKey}", a.authed(a.getState), http.MethodGet)
	route("/rooms/{roomId}/redact/{eventId}/{txnId}", a.authed(a.redact), http.MethodPut)
	route("/rooms/{roomId}/event/{eventId}", a.authed(a.getEvent), http.MethodGet)
	route("/rooms/{roomId}/members", a.authed(a.members), http.MethodGet)
	route("/rooms/{roomId}/joined_members", a.authed(a.joinedMembers), http.MethodGet)
	route("/rooms/{roomId}/messages", a.authed(a.messages), http.MethodGet)
	route("/rooms/{roomId}/context/{eventId}", a.authed(a.eventContext), http.MethodGet)
	route("/rooms/{roomId}/timestamp_to_event", a.authed(a.timestampToEvent), http.MethodGet)
	route("/directory/room/{roomAlias}", a.authed(a.putAlias), http.MethodPut)
	route("/directory/room/{roomAlias}", a.getAlias, http.MethodGet)
	route("/directory/room/{roomAlias}", a.authed(a.deleteAlias), http.MethodDelete)
	route("/rooms/{roomId}/aliases", a.authed(a.roomAliases), http.MethodGet)
	route("/sync", a.authed(a.sync), http.MethodGet)
	route("/user/{userId}/openid/request_token", a.authed(a.requestOpenIDToken), http.MethodPost)
}

type createRoomRequest struct {
	Visibility                string                     `json:"visibility"`
	RoomAliasName             string                     `json:"room_alias_name"`
	Name                      *string                    `json:"name"`
	Topic                     *string                    `json:"topic"`
	Invite                    []string                   `json:"invite"`
	Invite3PID                []json.RawMessage          `json:"invite_3pid"`
	RoomVersion               string                     `json:"room_version"`
	CreationContent           map[string]json.RawMessage `json:"creation_content"`
	InitialState              []rooms.StateEvent         `json:"initial_state"`
	Preset                    string                     `json:"preset"`
	IsDirect                  bool                       `json:"is_direct"`
	PowerLevelContentOverride map[string]json.RawMessage `json:"power_level_content_override"`
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !a.rateLimit(w, a.cfg.RateLimits.RoomCreation, dev.UserID, dev) {
		return
	}
	var req createRoomRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Visibility != "" && req.Visibility != "public" && req.Visibility != "private" {
		httputil.WriteError(w, httputil.BadJSON("visibility must be public or private"))
		return
	}
	if len(req.Invite3PID) > 0 {
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNRECOGNIZED", "third-party invites are not supported"))
		return
	}
	roomID, err := a.rooms.Rooms.CreateRoom(r.Context(), rooms.CreateRequest{
		Creator: dev.UserID, Visibility: req.Visibility, Preset: req.Preset, Name: req.Name, Topic: req.Topic,
		RoomAliasName: req.RoomAliasName, Invite: req.Invite, IsDirect: req.IsDirect, InitialState: req.InitialState,
		CreationContent: req.CreationContent, PowerLevelContentOverride: req.PowerLevelContentOverride,
		RoomVersion: event.RoomVersion(req.RoomVersion),
	})
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"room_id": roomID})
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

// readOptionalJSON decodes a body that may be empty.
func readOptionalJSON(r *http.Request, v any) *httputil.Error {
	body, e := httputil.ReadBody(r)
	if e != nil {
		return e
	}
	if len(body) == 0 {
		return nil
	}
	return httputil.DecodeJSON(body, v)
}

func (a *API) joinRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req reasonRequest
	if e := readOptionalJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	target := mux.Vars(r)["roomIdOrAlias"]
	if target == "" {
		target = mux.Vars(r)["roomId"]
	}
	// via (and the older server_name) name servers to join through.
	via := append(r.URL.Query()["via"], r.URL.Query()["server_name"]...)
	roomID, err := a.rooms.Rooms.Join(r.Context(), target, dev.UserID, req.Reason, via)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"room_id": roomID})
}

func (a *API) knockRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req reasonRequest
	if e := readOptionalJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	via := append(r.URL.Query()["via"], r.URL.Query()["server_name"]...)
	roomID, err := a.rooms.Rooms.Knock(r.Context(), mux.Vars(r)["roomIdOrAlias"], dev.UserID, req.Reason, via)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"room_id": roomID})
}

func (a *API) membershipChange(membership string) func(http.ResponseWriter, *http.Request, *users.Device) {
	return func(w http.ResponseWriter, r *http.Request, dev *users.Device) {
		var req struct {
			UserID string `json:"user_id"`
			Reason string `json:"reason"`
		}
		if e := httputil.ReadJSON(r, &req); e != nil {
			httputil.WriteError(w, e)
			return
		}
		if req.UserID == "" {
			httputil.WriteError(w, httputil.BadJSON("user_id is required"))
			return
		}
		roomID := mux.Vars(r)["roomId"]
		if a.isUnban(r) {
			// Unban only lifts a ban; it must not turn into a kick.
			if m, err := a.rooms.Rooms.Membership(r.Context(), roomID, req.UserID); err == nil && m != "ban" {
				httputil.WriteError(w, httputil.Forbidden("the user is not banned"))
				return
			}
		}
		if _, err := a.rooms.Rooms.ChangeMembership(r.Context(), roomID, dev.UserID, req.UserID, membership, req.Reason, false); err != nil {
			writeRoomError(w, r, err)
			return
		}
		httputil.WriteJSON(w, http.StatusOK, struct{}{})
	}
}

func (a *API) isUnban(r *http.Request) bool {
	p := r.URL.Path
	return len(p) > 6 && p[len(p)-6:] == "/unban"
}

func (a *API) leaveRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req reasonRequest
	if e := readOptionalJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	roomID := mux.Vars(r)["roomId"]
	if _, err := a.rooms.Rooms.ChangeMembership(r.Context(), roomID, dev.UserID, dev.UserID, "leave", req.Reason, false); err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

func (a *API) forgetRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if err := a.rooms.Rooms.Forget(r.Context(), mux.Vars(r)["roomId"], dev.UserID); err != nil {
		if errors.Is(err, rooms.ErrBadRequest) {
			httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "%s", err.Error()))
			return
		}
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	ms, err := a.rooms.Rooms.DB().UserMemberships(r.Context(), dev.UserID, "join")
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.RoomID)
	}
	httputil.WriteJSON(w, http.StatusOK, map[string][]string{"joined_rooms": ids})
}

func (a *API) sendMessage(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !a.rateLimit(w, a.cfg.RateLimits.MessageSending, dev.UserID, dev) {
		return
	}
	vars := mux.Vars(r)
	content, e := readContent(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	p := rooms.Proto{Type: vars["eventType"], Sender: dev.UserID, Content: content,
		Txn: &rooms.Txn{UserID: dev.UserID, DeviceID: dev.DeviceID, TxnID: vars["txnId"]}}
	if p.Type == "m.room.redaction" {
		var c struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(content, &c)
		p.Redacts = c.Redacts
	}
	a.sendProto(w, r, vars["roomId"], p)
}

// readContent reads an event content body: a JSON object.
func readContent(r *http.Request) (json.RawMessage, *httputil.Error) {
	var content map[string]json.RawMessage
	body, e := httputil.ReadBody(r)
	if e != nil {
		return nil, e
	}
	if e := httputil.DecodeJSON(body, &content); e != nil {
		return nil, e
	}
	return body, nil
}

func (a *API) sendProto(w http.ResponseWriter, r *http.Request, roomID string, p rooms.Proto) {
	ev, err := a.rooms.Rooms.Send(r.Context(), roomID, p)
	if errors.Is(err, rooms.ErrNotFound) {
		// Do not reveal whether a room the user is not in exists.
		err = errors.Join(rooms.ErrForbidden, errors.New("you are not in this room"))
	}
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"event_id": ev.EventID()})
}

func (a *API) putState(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	content, e := readContent(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	stateKey := vars["stateKey"]
	a.sendProto(w, r, vars["roomId"], rooms.Proto{Type: vars["eventType"], StateKey: &stateKey, Sender: dev.UserID, Content: content})
}

func (a *API) redact(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	var req reasonRequest
	if e := readOptionalJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	ev, err := a.rooms.Rooms.Redact(r.Context(), vars["roomId"], dev.UserID, vars["eventId"], req.Reason,
		&rooms.Txn{UserID: dev.UserID, DeviceID: dev.DeviceID, TxnID: "redact:" + vars["txnId"]})
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"event_id": ev.EventID()})
}

func viewer(dev *users.Device) rooms.Viewer {
	return rooms.Viewer{UserID: dev.UserID, DeviceID: dev.DeviceID}
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	ev, err := a.rooms.Rooms.EventForUser(r.Context(), viewer(dev), vars["roomId"], vars["eventId"])
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, ev)
}

func (a *API) getAllState(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	st, err := a.rooms.Rooms.StateForUser(r.Context(), dev.UserID, mux.Vars(r)["roomId"])
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	evs, err := a.rooms.Rooms.StateEvents(r.Context(), st, viewer(dev))
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, evs)
}

// notFoundAsForbidden hides whether a room exists from users outside it.
func notFoundAsForbidden(err error) error {
	if errors.Is(err, rooms.ErrNotFound) {
		return errors.Join(rooms.ErrForbidden, errors.New("you are not in this room"))
	}
	return err
}

func (a *API) getState(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	st, err := a.rooms.Rooms.StateForUser(r.Context(), dev.UserID, vars["roomId"])
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	id, ok := st[storage.StateKey{Type: vars["eventType"], StateKey: vars["stateKey"]}]
	if !ok {
		httputil.WriteError(w, httputil.NotFound("no such state event"))
		return
	}
	evs, err := a.rooms.Rooms.StateEvents(r.Context(), storage.StateMap{{Type: vars["eventType"], StateKey: vars["stateKey"]}: id}, viewer(dev))
	if err != nil || len(evs) == 0 {
		writeRoomError(w, r, errors.Join(err, rooms.ErrNotFound))
		return
	}
	if r.URL.Query().Get("format") == "event" {
		httputil.WriteJSON(w, http.StatusOK, evs[0])
		return
	}
	httputil.WriteJSON(w, http.StatusOK, evs[0].Content)
}

func queryInt(r *http.Request, name string, def int) (int, *httputil.Error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, httputil.InvalidParam(name + " must be a non-negative integer")
	}
	return v, nil
}
