package clientapi

import (
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// searchUsers is POST /user_directory/search.
func (c *chatAPI) searchUsers(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.SearchTerm == nil {
		httputil.WriteError(w, httputil.BadJSON("search_term is required"))
		return
	}
	limit := 10
	if req.Limit != nil {
		if *req.Limit < 0 {
			httputil.WriteError(w, httputil.InvalidParam("limit must not be negative"))
			return
		}
		limit = *req.Limit
	}
	results, limited, err := c.cfg.Directory.SearchUsers(r.Context(), dev.UserID, *req.SearchTerm, limit)
	if err != nil {
		writeDirectoryError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"results": results, "limited": limited})
}
