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

// writeDirectoryError maps the directory service's errors.
func writeDirectoryError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, directory.ErrNotFound):
		httputil.WriteError(w, httputil.NotFound(err.Error()))
	case errors.Is(err, directory.ErrForbidden):
		httputil.WriteError(w, httputil.Forbidden(err.Error()))
	case errors.Is(err, directory.ErrBadRequest), errors.Is(err, directory.ErrUnknownNetwork):
		httputil.WriteError(w, httputil.InvalidParam(err.Error()))
	case errors.Is(err, directory.ErrNoRemoteDirectory):
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNRECOGNIZED", "%s", err.Error()))
	case errors.Is(err, directory.ErrRemoteDirectory):
		httputil.WriteError(w, httputil.NewError(http.StatusBadGateway, "M_UNKNOWN", "%s", err.Error()))
	default:
		writeRoomError(w, r, err)
	}
}

// publicRoomsGet is GET /publicRooms.
func (c *chatAPI) publicRoomsGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			httputil.WriteError(w, httputil.InvalidParam("limit must be a non-negative integer"))
			return
		}
		limit = n
	}
	// The network parameters are POST's, but some clients send them here
	// too.
	page, err := c.cfg.Directory.PublicRoomsOf(r.Context(), q.Get("server"), directory.PublicRoomsRequest{Limit: limit, Since: q.Get("since"),
		ThirdPartyInstanceID: q.Get("third_party_instance_id"), IncludeAllNetworks: q.Get("include_all_networks") == "true"})
	if err != nil {
		writeDirectoryError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, page)
}

// publicRoomsPost is POST /publicRooms.
func (c *chatAPI) publicRoomsPost(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Limit  int    `json:"limit"`
		Since  string `json:"since"`
		Filter struct {
			GenericSearchTerm string     `json:"generic_search_term"`
			RoomTypes         *[]*string `json:"room_types"`
		} `json:"filter"`
		IncludeAllNetworks   bool   `json:"include_all_networks"`
		ThirdPartyInstanceID string `json:"third_party_instance_id"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Limit < 0 {
		httputil.WriteError(w, httputil.InvalidParam("limit must not be negative"))
		return
	}
	dreq := directory.PublicRoomsRequest{Limit: req.Limit, Since: req.Since, Term: req.Filter.GenericSearchTerm,
		ThirdPartyInstanceID: req.ThirdPartyInstanceID, IncludeAllNetworks: req.IncludeAllNetworks}
	if req.Filter.RoomTypes != nil {
		dreq.RoomTypes = []string{}
		for _, t := range *req.Filter.RoomTypes {
			if t == nil {
				dreq.RoomTypes = append(dreq.RoomTypes, "") // rooms without a type
			} else {
				dreq.RoomTypes = append(dreq.RoomTypes, *t)
			}
		}
	}
	page, err := c.cfg.Directory.PublicRoomsOf(r.Context(), r.URL.Query().Get("server"), dreq)
	if err != nil {
		writeDirectoryError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, page)
}

// getRoomVisibility is GET /directory/list/room/{roomId}.
func (c *chatAPI) getRoomVisibility(w http.ResponseWriter, r *http.Request) {
	v, err := c.cfg.Directory.Visibility(r.Context(), mux.Vars(r)["roomId"])
	if err != nil {
		writeDirectoryError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"visibility": v})
}

// setRoomVisibility is PUT /directory/list/room/{roomId}.
func (c *chatAPI) setRoomVisibility(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		Visibility *string `json:"visibility"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	visibility := "public" // the spec's default
	if req.Visibility != nil {
		visibility = *req.Visibility
	}
	if visibility != "public" && visibility != "private" {
		httputil.WriteError(w, httputil.InvalidParam("visibility must be public or private"))
		return
	}
	if err := c.cfg.Directory.SetVisibility(r.Context(), dev.UserID, dev.IsAdmin, mux.Vars(r)["roomId"], visibility); err != nil {
		writeDirectoryError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
