package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/parley-chat/parley/homeserver/filter"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/search"
	"github.com/parley-chat/parley/homeserver/users"
)

// searchRequest is POST /search's body.
type searchRequest struct {
	SearchCategories struct {
		RoomEvents *struct {
			SearchTerm   *string         `json:"search_term"`
			Keys         []string        `json:"keys"`
			Filter       json.RawMessage `json:"filter"`
			OrderBy      string          `json:"order_by"`
			EventContext *struct {
				BeforeLimit    *int `json:"before_limit"`
				AfterLimit     *int `json:"after_limit"`
				IncludeProfile bool `json:"include_profile"`
			} `json:"event_context"`
			IncludeState bool `json:"include_state"`
			Groupings    *struct {
				GroupBy []struct {
					Key string `json:"key"`
				} `json:"group_by"`
			} `json:"groupings"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

// maxContextLimit bounds event_context's before_limit and after_limit.
const maxContextLimit = 20

// search is POST /search.
func (c *chatAPI) search(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var body searchRequest
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	re := body.SearchCategories.RoomEvents
	if re == nil {
		// room_events is the only category; without it there is nothing to search.
		httputil.WriteJSON(w, http.StatusOK, map[string]any{"search_categories": map[string]any{}})
		return
	}
	if re.SearchTerm == nil {
		httputil.WriteError(w, httputil.BadJSON("search_term is required"))
		return
	}
	req := search.Request{Viewer: viewer(dev), Term: *re.SearchTerm, Keys: re.Keys, IncludeState: re.IncludeState,
		NextBatch: r.URL.Query().Get("next_batch")}
	switch re.OrderBy {
	case "", "rank":
	case "recent":
		req.Recent = true
	default:
		httputil.WriteError(w, httputil.InvalidParam("order_by must be rank or recent"))
		return
	}
	if len(re.Filter) > 0 && string(re.Filter) != "null" {
		f, err := filter.ParseRoomEventFilter(re.Filter)
		if err != nil {
			httputil.WriteError(w, filterError(err))
			return
		}
		req.Filter = f
	}
	if ec := re.EventContext; ec != nil {
		limit := func(p *int) int {
			if p == nil {
				return 5 // the spec's default
			}
			return min(max(*p, 0), maxContextLimit)
		}
		req.Context = &search.ContextRequest{BeforeLimit: limit(ec.BeforeLimit), AfterLimit: limit(ec.AfterLimit),
			IncludeProfile: ec.IncludeProfile}
	}
	if re.Groupings != nil {
		for _, g := range re.Groupings.GroupBy {
			req.GroupBy = append(req.GroupBy, g.Key)
		}
	}
	res, err := c.cfg.Search.Search(r.Context(), req)
	if errors.Is(err, search.ErrBadRequest) {
		httputil.WriteError(w, httputil.InvalidParam(err.Error()))
		return
	}
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"search_categories": map[string]any{"room_events": res}})
}
