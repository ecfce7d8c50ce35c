package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/upgrade"
	"github.com/parley-chat/parley/homeserver/users"
)

// upgradeRoom is POST /rooms/{roomId}/upgrade.
func (c *chatAPI) upgradeRoom(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		NewVersion         *string  `json:"new_version"`
		AdditionalCreators []string `json:"additional_creators"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.NewVersion == nil {
		httputil.WriteError(w, httputil.BadJSON("new_version is required"))
		return
	}
	newRoom, err := c.cfg.Upgrade.Upgrade(r.Context(), upgrade.Request{UserID: dev.UserID, RoomID: mux.Vars(r)["roomId"],
		NewVersion: *req.NewVersion, AdditionalCreators: req.AdditionalCreators})
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"replacement_room": newRoom})
}
