package clientapi

import (
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/ignored"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/storage"
)

// Ignoring users (the spec's "Ignoring Users"): the events of the users in
// a user's m.ignored_user_list are kept out of their timelines (/sync,
// /messages, /context), state events excepted, and so are invites from
// them. The list is read with each request, so a change applies from the
// next one on; events that arrived while a user was ignored are not sent
// again when they no longer are (a client wanting them syncs afresh).

// ignoredUsers is the set of users dev's user ignores (nil on failure,
// which is logged: the request goes on unfiltered rather than failing).
func (a *API) ignoredUsers(r *http.Request, dev *users.Device) ignored.Set {
	set, err := ignored.Users(r.Context(), a.rooms.Rooms.DB(), a.cfg.ServerName, dev.UserID)
	if err != nil {
		httputil.Logger(r.Context()).WithError(err).Warn("reading the ignored users list")
	}
	return set
}

// hideIgnored extends an event predicate to leave out the events of the
// users dev's user ignores.
func (a *API) hideIgnored(r *http.Request, dev *users.Device, match func(*storage.EventRow) bool) func(*storage.EventRow) bool {
	set := a.ignoredUsers(r, dev)
	if len(set) == 0 {
		return match
	}
	return func(row *storage.EventRow) bool {
		if set.Hides(row.Sender, row.StateKey != nil) {
			return false
		}
		return match == nil || match(row)
	}
}

// hideIgnoredInSync applies the ignore list to a /sync request: timelines
// without the ignored users' events, and no invites from them.
func (a *API) hideIgnoredInSync(r *http.Request, dev *users.Device, req *sync.Request) {
	set := a.ignoredUsers(r, dev)
	if len(set) == 0 {
		return
	}
	match := req.TimelineMatch
	req.TimelineMatch = func(row *storage.EventRow) bool {
		return !set.Hides(row.Sender, row.StateKey != nil) && (match == nil || match(row))
	}
	db := a.rooms.Rooms.DB()
	invites, err := db.UserMemberships(r.Context(), dev.UserID, "invite")
	if err != nil {
		httputil.Logger(r.Context()).WithError(err).Warn("reading invites for the ignored users list")
		return
	}
	hidden := map[string]bool{}
	for _, m := range invites {
		if ev, err := db.GetAnyEvent(r.Context(), m.EventID); err == nil && set[ev.Sender] {
			hidden[m.RoomID] = true
		}
	}
	if len(hidden) == 0 {
		return
	}
	allowed := req.RoomAllowed
	req.RoomAllowed = func(roomID string) bool {
		return !hidden[roomID] && (allowed == nil || allowed(roomID))
	}
}
