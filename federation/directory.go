package federation

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/parley-chat/parley/homeserver/directory"
	"github.com/parley-chat/parley/homeserver/httputil"
)

// Directory serves our public room directory to other servers
// (GET and POST /_matrix/federation/v1/publicRooms) and returns the
// function that fetches theirs. Call after Register.
func (a *API) Directory(svc *directory.Service) directory.RemoteDirectory {
	h := &directoryHandlers{svc: svc}
	a.authed.HandleFunc("/_matrix/federation/v1/publicRooms", h.get).Methods(http.MethodGet)
	a.authed.HandleFunc("/_matrix/federation/v1/publicRooms", h.post).Methods(http.MethodPost)
	return a.remotePublicRooms
}

type directoryHandlers struct{ svc *directory.Service }

func (h *directoryHandlers) get(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	h.answer(w, r, directory.PublicRoomsRequest{Limit: max(limit, 0), Since: q.Get("since"),
		ThirdPartyInstanceID: q.Get("third_party_instance_id"), IncludeAllNetworks: q.Get("include_all_networks") == "true"})
}

// publicRoomsBody is the POST form, also what we send to other servers.
type publicRoomsBody struct {
	Limit  int    `json:"limit,omitempty"`
	Since  string `json:"since,omitempty"`
	Filter struct {
		GenericSearchTerm string     `json:"generic_search_term,omitempty"`
		RoomTypes         *[]*string `json:"room_types,omitempty"`
	} `json:"filter"`
	IncludeAllNetworks   bool   `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string `json:"third_party_instance_id,omitempty"`
}

func (h *directoryHandlers) post(w http.ResponseWriter, r *http.Request) {
	var b publicRoomsBody
	if e := httputil.ReadJSON(r, &b); e != nil {
		httputil.WriteError(w, e)
		return
	}
	req := directory.PublicRoomsRequest{Limit: max(b.Limit, 0), Since: b.Since, Term: b.Filter.GenericSearchTerm,
		ThirdPartyInstanceID: b.ThirdPartyInstanceID, IncludeAllNetworks: b.IncludeAllNetworks}
	if b.Filter.RoomTypes != nil {
		req.RoomTypes = []string{}
		for _, t := range *b.Filter.RoomTypes {
			if t == nil {
				req.RoomTypes = append(req.RoomTypes, "")
			} else {
				req.RoomTypes = append(req.RoomTypes, *t)
			}
		}
	}
	h.answer(w, r, req)
}

func (h *directoryHandlers) answer(w http.ResponseWriter, r *http.Request, req directory.PublicRoomsRequest) {
	page, err := h.svc.PublicRooms(r.Context(), req)
	if err != nil {
		httputil.WriteError(w, httputil.InvalidParam(err.Error()))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, page)
}

// remotePublicRooms asks server for its directory.
func (a *API) remotePublicRooms(ctx context.Context, server string, req directory.PublicRoomsRequest) (*directory.PublicRoomsPage, error) {
	var page directory.PublicRoomsPage
	if req.Term == "" && req.RoomTypes == nil {
		// The plain listing is a GET, which every server has.
		q := url.Values{}
		if req.Limit > 0 {
			q.Set("limit", strconv.Itoa(req.Limit))
		}
		if req.Since != "" {
			q.Set("since", req.Since)
		}
		if req.IncludeAllNetworks {
			q.Set("include_all_networks", "true")
		}
		if req.ThirdPartyInstanceID != "" {
			q.Set("third_party_instance_id", req.ThirdPartyInstanceID)
		}
		path := "/_matrix/federation/v1/publicRooms"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		err := a.client.Do(ctx, server, http.MethodGet, path, nil, &page)
		return &page, err
	}
	b := publicRoomsBody{Limit: req.Limit, Since: req.Since, IncludeAllNetworks: req.IncludeAllNetworks, ThirdPartyInstanceID: req.ThirdPartyInstanceID}
	b.Filter.GenericSearchTerm = req.Term
	if req.RoomTypes != nil {
		types := make([]*string, len(req.RoomTypes))
		for i := range req.RoomTypes {
			if req.RoomTypes[i] != "" {
				types[i] = &req.RoomTypes[i]
			}
		}
		b.Filter.RoomTypes = &types
	}
	err := a.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/publicRooms", b, &page)
	return &page, err
}
