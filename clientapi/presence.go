package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/matrix/id"
)

// getPresence is GET /presence/{userId}/status: one's own presence or that
// of a user one shares a room with (403 otherwise). With presence disabled
// everyone is offline.
func (a *API) getPresence(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	userID := mux.Vars(r)["userId"]
	if _, err := id.ParseUserID(userID); err != nil {
		httputil.WriteError(w, httputil.InvalidParam(err.Error()))
		return
	}
	st, err := a.cfg.Ephemeral.Presence.Get(r.Context(), dev.UserID, userID)
	if err != nil {
		writeEphemeralError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, st)
}

type presenceRequest struct {
	Presence  string  `json:"presence"`
	StatusMsg *string `json:"status_msg"`
}

// setPresence is PUT /presence/{userId}/status, only for oneself. With
// presence disabled the request is checked, accepted and ignored.
func (a *API) setPresence(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if mux.Vars(r)["userId"] != dev.UserID {
		httputil.WriteError(w, httputil.Forbidden("you can only set your own presence"))
		return
	}
	var req presenceRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Presence == "" {
		httputil.WriteError(w, httputil.BadJSON("presence is required"))
		return
	}
	status := ""
	if req.StatusMsg != nil {
		status = *req.StatusMsg
	}
	if err := a.cfg.Ephemeral.Presence.Set(r.Context(), dev.UserID, req.Presence, status); err != nil {
		writeEphemeralError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
