package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/relations"
	"github.com/parley-chat/parley/homeserver/users"
)

// relations is GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (c *chatAPI) relations(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars, q := mux.Vars(r), r.URL.Query()
	// dir is optional here (default b); limit 0 lets the service choose.
	params, e := parsePageParams(r, "b", 0)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	recurse, recurseGiven := false, q.Has("recurse")
	switch q.Get("recurse") {
	case "", "false":
	case "true":
		recurse = true
	default:
		httputil.WriteError(w, httputil.InvalidParam("recurse must be true or false"))
		return
	}
	page, err := c.cfg.Relations.Children(r.Context(), relations.ChildrenRequest{
		Viewer: viewer(dev), RoomID: vars["roomId"], EventID: vars["eventId"], RelType: vars["relType"], EventType: vars["eventType"],
		From: params.from, To: params.to, Backwards: params.backwards, Limit: params.limit, Recurse: recurse,
	})
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	body := map[string]any{"chunk": page.Chunk}
	if page.Next != -1 {
		body["next_batch"] = streamToken(page.Next)
	}
	if params.from != -1 {
		body["prev_batch"] = q.Get("from")
	}
	if recurseGiven {
		depth := 1
		if recurse {
			depth = relations.RecursionDepth
		}
		body["recursion_depth"] = depth
	}
	httputil.WriteJSON(w, http.StatusOK, body)
}
