package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// sendToDevice is PUT /sendToDevice/{eventType}/{txnId}. It is idempotent
// per sending device, event type and transaction ID.
func (a *API) sendToDevice(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Messages == nil {
		httputil.WriteError(w, missingParam("messages is required"))
		return
	}
	vars := mux.Vars(r)
	if err := a.cfg.E2EE.SendToDevice(r.Context(), dev.UserID, dev.DeviceID, vars["eventType"], vars["txnId"], req.Messages); err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
