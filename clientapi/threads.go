package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/relations"
	"github.com/parley-chat/parley/homeserver/users"
)

// threads is GET /rooms/{roomId}/threads.
func (c *chatAPI) threads(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	include := q.Get("include")
	if include != "" && include != "all" && include != "participated" {
		httputil.WriteError(w, httputil.InvalidParam("include must be all or participated"))
		return
	}
	from, e := parseStreamToken(q.Get("from"))
	if e != nil {
		httputil.WriteError(w, httputil.InvalidParam("unknown pagination token"))
		return
	}
	limit, e := queryInt(r, "limit", 0)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	if q.Has("limit") && limit == 0 {
		httputil.WriteError(w, httputil.InvalidParam("limit must be greater than zero"))
		return
	}
	page, err := c.cfg.Relations.Threads(r.Context(), relations.ThreadsRequest{
		Viewer: viewer(dev), RoomID: mux.Vars(r)["roomId"], Participated: include == "participated", From: from, Limit: limit,
	})
	if err != nil {
		writeRoomError(w, r, notFoundAsForbidden(err))
		return
	}
	body := map[string]any{"chunk": page.Chunk}
	if page.Next != -1 {
		body["next_batch"] = streamToken(page.Next)
	}
	httputil.WriteJSON(w, http.StatusOK, body)
}
