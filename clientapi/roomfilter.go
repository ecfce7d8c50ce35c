package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/parley-chat/parley/homeserver/filter"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage"
)

// roomEventFilter is a RoomEventFilter as /messages and /context use it.
type roomEventFilter struct {
	match           func(*storage.EventRow) bool
	lazyLoadMembers bool
}

// roomEventFilter parses the filter query parameter (inline JSON).
func (a *API) roomEventFilter(raw string) (roomEventFilter, *httputil.Error) {
	if raw == "" {
		return roomEventFilter{}, nil
	}
	f, err := filter.ParseRoomEventFilter([]byte(raw))
	if err != nil {
		return roomEventFilter{}, filterError(err)
	}
	return roomEventFilter{match: rowMatcher(f), lazyLoadMembers: f.LazyLoading()}, nil
}

func filterError(err error) *httputil.Error {
	var fe *filter.Error
	if errors.As(err, &fe) {
		return httputil.NewError(http.StatusBadRequest, fe.Code, "%s", fe.Message)
	}
	return httputil.BadJSON(err.Error())
}

// rowMatcher turns a room event filter into a predicate on stored events;
// nil when the filter lets everything through.
func rowMatcher(f *filter.RoomEventFilter) func(*storage.EventRow) bool {
	if f == nil {
		return nil
	}
	return func(row *storage.EventRow) bool {
		hasURL := false
		if f.ContainsURL != nil {
			var ev struct {
				Content struct {
					URL json.RawMessage `json:"url"`
				} `json:"content"`
			}
			_ = json.Unmarshal([]byte(row.JSON), &ev)
			hasURL = len(ev.Content.URL) > 0
		}
		return f.Allows(row.Type, row.Sender, row.RoomID, hasURL)
	}
}

// maxTimelineLimit bounds the timeline of one room in one /sync.
const maxTimelineLimit = 500

// applySyncFilter loads the sync filter (an ID or inline JSON) into req.
func (a *API) applySyncFilter(r *http.Request, dev *users.Device, param string, req *sync.Request) *httputil.Error {
	f, e := a.loadFilter(r, dev, param)
	if e != nil {
		return e
	}
	timeline := f.Timeline()
	req.TimelineLimit = 10
	if timeline != nil { // LimitOr is promoted from the embedded EventFilter
		req.TimelineLimit = timeline.LimitOr(10, maxTimelineLimit)
	}
	req.LazyLoadMembers = timeline.LazyLoading() || f.State().LazyLoading()
	req.IncludeLeave = f.IncludeLeave()
	req.UnreadThreadNotifications = timeline != nil && timeline.UnreadThreadNotifications
	if rf := f.RoomFilter(); rf != nil {
		req.RoomAllowed = rf.AllowsRoom
	}
	req.TimelineMatch = rowMatcher(timeline)
	req.StateMatch = rowMatcher(f.State())
	if ad := f.GlobalAccountData(); ad != nil {
		req.AccountDataMatch = func(eventType string) bool { return ad.Allows(eventType, dev.UserID) }
	}
	a.hideIgnoredInSync(r, dev, req)
	return nil
}
