package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/notices"
	"github.com/parley-chat/parley/homeserver/users"
)

// sendServerNotice is POST /_parley/admin/v1/send_server_notice
// {"user_id": ..., "content": {...}, "type": optional}, for server admins.
func (c *chatAPI) sendServerNotice(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !dev.IsAdmin {
		httputil.WriteError(w, httputil.Forbidden("only server admins may send server notices"))
		return
	}
	var req struct {
		UserID  string          `json:"user_id"`
		Content json.RawMessage `json:"content"`
		Type    string          `json:"type"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.UserID == "" || len(req.Content) == 0 {
		httputil.WriteError(w, httputil.BadJSON("user_id and content are required"))
		return
	}
	eventID, err := c.cfg.Notices.Send(r.Context(), req.UserID, req.Type, req.Content)
	switch {
	case errors.Is(err, notices.ErrDisabled):
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "server notices are not enabled on this server (server_notices.enabled)"))
	case errors.Is(err, notices.ErrNotFound):
		httputil.WriteError(w, httputil.NotFound(err.Error()))
	case errors.Is(err, notices.ErrBadRequest):
		httputil.WriteError(w, httputil.BadJSON(err.Error()))
	case err != nil:
		writeRoomError(w, r, err)
	default:
		httputil.WriteJSON(w, http.StatusOK, map[string]string{"event_id": eventID})
	}
}
