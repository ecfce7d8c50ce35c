package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/directory"
	"github.com/parley-chat/parley/homeserver/notices"
	"github.com/parley-chat/parley/homeserver/relations"
	"github.com/parley-chat/parley/homeserver/reports"
	"github.com/parley-chat/parley/homeserver/search"
	"github.com/parley-chat/parley/homeserver/upgrade"
)

// ChatConfig holds the services behind the everyday chat endpoints beyond
// plain messaging: relations and threads, the room and user directories,
// search, room upgrades, reports and server notices.
type ChatConfig struct {
	Relations *relations.Service
	Directory *directory.Service
	Search    *search.Service
	Upgrade   *upgrade.Service
	Reports   *reports.Service
	Notices   *notices.Service
}

// chatAPI serves those endpoints.
type chatAPI struct {
	*API
	cfg ChatConfig
}

// RegisterChat adds the chat endpoints to r (from httputil.NewRouter):
// relations and threads under /_matrix/client/v1, the rest under v3 and r0,
// and the reports and server notices admin API under /_parley/admin/v1.
func (a *API) RegisterChat(r *mux.Router, cfg ChatConfig) {
	c := &chatAPI{API: a, cfg: cfg}
	get, post, put := http.MethodGet, http.MethodPost, http.MethodPut
	route := func(path string, h http.HandlerFunc, methods ...string) {
		for _, prefix := range clientPrefixes {
			r.HandleFunc(prefix+path, h).Methods(methods...)
		}
	}
	v1 := "/_matrix/client/v1"
	if cfg.Relations != nil {
		r.HandleFunc(v1+"/rooms/{roomId}/relations/{eventId}", a.authed(c.relations)).Methods(get)
		r.HandleFunc(v1+"/rooms/{roomId}/relations/{eventId}/{relType}", a.authed(c.relations)).Methods(get)
		r.HandleFunc(v1+"/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a.authed(c.relations)).Methods(get)
		r.HandleFunc(v1+"/rooms/{roomId}/threads", a.authed(c.threads)).Methods(get)
	}
	if cfg.Directory != nil {
		// Listing the directory needs no account; filtering it does.
		route("/publicRooms", c.publicRoomsGet, get)
		route("/publicRooms", a.authed(c.publicRoomsPost), post)
		route("/directory/list/room/{roomId}", c.getRoomVisibility, get)
		route("/directory/list/room/{roomId}", a.authed(c.setRoomVisibility), put)
		route("/user_directory/search", a.authed(c.searchUsers), post)
		r.HandleFunc(v1+"/rooms/{roomId}/hierarchy", a.authed(c.hierarchy)).Methods(get)
	}
	if cfg.Search != nil {
		route("/search", a.authed(c.search), post)
	}
	if cfg.Upgrade != nil {
		route("/rooms/{roomId}/upgrade", a.authed(c.upgradeRoom), post)
	}
	admin := "/_parley/admin/v1"
	if cfg.Reports != nil {
		route("/rooms/{roomId}/report/{eventId}", a.authed(c.reportEvent), post)
		route("/rooms/{roomId}/report", a.authed(c.reportRoom), post)
		route("/users/{userId}/report", a.authed(c.reportUser), post)
		r.HandleFunc(admin+"/reports", a.authed(c.listReports)).Methods(get)
	}
	if cfg.Notices != nil {
		r.HandleFunc(admin+"/send_server_notice", a.authed(c.sendServerNotice)).Methods(post)
	}
}
