package clientapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/directory"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// hierarchy is GET /_matrix/client/v1/rooms/{roomId}/hierarchy.
func (c *chatAPI) hierarchy(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	req := directory.HierarchyRequest{UserID: dev.UserID, RoomID: mux.Vars(r)["roomId"], From: q.Get("from"), MaxDepth: -1}
	if v := q.Get("suggested_only"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			httputil.WriteError(w, httputil.InvalidParam("suggested_only must be true or false"))
			return
		}
		req.SuggestedOnly = b
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			httputil.WriteError(w, httputil.InvalidParam("limit must be a positive integer"))
			return
		}
		req.Limit = n
	}
	if v := q.Get("max_depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			httputil.WriteError(w, httputil.InvalidParam("max_depth must be a non-negative integer"))
			return
		}
		req.MaxDepth = n
	}
	page, err := c.cfg.Directory.Hierarchy(r.Context(), req)
	switch {
	case errors.Is(err, directory.ErrHierarchyForbidden):
		httputil.WriteError(w, httputil.Forbidden("you may not view this room"))
	case errors.Is(err, directory.ErrHierarchyToken):
		httputil.WriteError(w, httputil.InvalidParam(err.Error()))
	case err != nil:
		writeRoomError(w, r, err)
	default:
		httputil.WriteJSON(w, http.StatusOK, page)
	}
}
