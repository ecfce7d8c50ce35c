package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/e2ee"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// registerRoomKeysRoutes adds the server-side key backup endpoints.
func (a *API) registerRoomKeysRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	route("/room_keys/version", a.authed(a.createBackup), http.MethodPost)
	route("/room_keys/version", a.authed(a.getBackup), http.MethodGet)
	route("/room_keys/version/{version}", a.authed(a.getBackup), http.MethodGet)
	route("/room_keys/version/{version}", a.authed(a.updateBackup), http.MethodPut)
	route("/room_keys/version/{version}", a.authed(a.deleteBackup), http.MethodDelete)
	for _, path := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		route(path, a.authed(a.putRoomKeys), http.MethodPut)
		route(path, a.authed(a.getRoomKeys), http.MethodGet)
		route(path, a.authed(a.deleteRoomKeys), http.MethodDelete)
	}
}

// createBackup is POST /room_keys/version.
func (a *API) createBackup(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.AuthData == nil {
		httputil.WriteError(w, missingParam("auth_data is required"))
		return
	}
	v, err := a.cfg.E2EE.CreateBackup(r.Context(), dev.UserID, req.Algorithm, req.AuthData)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"version": v})
}

// getBackup is GET /room_keys/version and /room_keys/version/{version}.
func (a *API) getBackup(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	info, err := a.cfg.E2EE.Backup(r.Context(), dev.UserID, mux.Vars(r)["version"])
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, info)
}

// updateBackup is PUT /room_keys/version/{version}: only auth_data changes.
func (a *API) updateBackup(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
		Version   string          `json:"version"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Algorithm == "" || req.AuthData == nil {
		httputil.WriteError(w, missingParam("algorithm and auth_data are required"))
		return
	}
	if err := a.cfg.E2EE.UpdateBackup(r.Context(), dev.UserID, mux.Vars(r)["version"], req.Version, req.Algorithm, req.AuthData); err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// deleteBackup is DELETE /room_keys/version/{version}.
func (a *API) deleteBackup(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if err := a.cfg.E2EE.DeleteBackup(r.Context(), dev.UserID, mux.Vars(r)["version"]); err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// backupVersionParam reads the required version query parameter of the
// /room_keys/keys endpoints.
func backupVersionParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	v := r.URL.Query().Get("version")
	if v == "" {
		httputil.WriteError(w, missingParam("the version query parameter is required"))
		return "", false
	}
	return v, true
}

// roomSessions is {"sessions": {session ID: key data}}.
type roomSessions struct {
	Sessions map[string]json.RawMessage `json:"sessions"`
}

// putRoomKeys is PUT /room_keys/keys[/{roomId}[/{sessionId}]]: the body is
// {"rooms": {room: {"sessions": {...}}}}, {"sessions": {...}} or one key.
func (a *API) putRoomKeys(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	version, ok := backupVersionParam(w, r)
	if !ok {
		return
	}
	vars := mux.Vars(r)
	roomID, sessionID := vars["roomId"], vars["sessionId"]
	raw := map[string]map[string]json.RawMessage{}
	switch {
	case sessionID != "":
		var one json.RawMessage
		if e := httputil.ReadJSON(r, &one); e != nil {
			httputil.WriteError(w, e)
			return
		}
		raw[roomID] = map[string]json.RawMessage{sessionID: one}
	case roomID != "":
		var room roomSessions
		if e := httputil.ReadJSON(r, &room); e != nil {
			httputil.WriteError(w, e)
			return
		}
		if room.Sessions == nil {
			httputil.WriteError(w, missingParam("sessions is required"))
			return
		}
		raw[roomID] = room.Sessions
	default:
		var all struct {
			Rooms map[string]roomSessions `json:"rooms"`
		}
		if e := httputil.ReadJSON(r, &all); e != nil {
			httputil.WriteError(w, e)
			return
		}
		if all.Rooms == nil {
			httputil.WriteError(w, missingParam("rooms is required"))
			return
		}
		for id, room := range all.Rooms {
			raw[id] = room.Sessions
		}
	}
	keys := map[string]map[string]e2ee.RoomKeyData{}
	for room, sessions := range raw {
		keys[room] = map[string]e2ee.RoomKeyData{}
		for session, data := range sessions {
			k, err := e2ee.ParseRoomKeyData(data)
			if err != nil {
				writeE2EEError(w, r, err)
				return
			}
			keys[room][session] = k
		}
	}
	etag, count, err := a.cfg.E2EE.PutRoomKeys(r.Context(), dev.UserID, version, keys)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"etag": etag, "count": count})
}

// getRoomKeys is GET /room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) getRoomKeys(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	version, ok := backupVersionParam(w, r)
	if !ok {
		return
	}
	vars := mux.Vars(r)
	roomID, sessionID := vars["roomId"], vars["sessionId"]
	keys, err := a.cfg.E2EE.RoomKeys(r.Context(), dev.UserID, version, roomID, sessionID)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	switch {
	case sessionID != "":
		k, ok := keys[roomID][sessionID]
		if !ok {
			httputil.WriteError(w, httputil.NotFound("no key for this session in the backup"))
			return
		}
		httputil.WriteJSON(w, http.StatusOK, k)
	case roomID != "":
		sessions := keys[roomID]
		if sessions == nil {
			sessions = map[string]e2ee.RoomKeyData{}
		}
		httputil.WriteJSON(w, http.StatusOK, map[string]any{"sessions": sessions})
	default:
		rooms := map[string]any{}
		for id, sessions := range keys {
			rooms[id] = map[string]any{"sessions": sessions}
		}
		httputil.WriteJSON(w, http.StatusOK, map[string]any{"rooms": rooms})
	}
}

// deleteRoomKeys is DELETE /room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) deleteRoomKeys(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	version, ok := backupVersionParam(w, r)
	if !ok {
		return
	}
	vars := mux.Vars(r)
	etag, count, err := a.cfg.E2EE.DeleteRoomKeys(r.Context(), dev.UserID, version, vars["roomId"], vars["sessionId"])
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"etag": etag, "count": count})
}
