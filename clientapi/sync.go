package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/homeserver/users"
)

// maxSyncTimeout bounds how long one /sync may wait, whatever the client
// asks, so that a stuck client cannot hold a request forever.
const maxSyncTimeout = 5 * time.Minute

func (a *API) sync(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	req := sync.Request{Viewer: viewer(dev), FullState: q.Get("full_state") == "true"}
	if s := q.Get("since"); s != "" {
		t, err := sync.ParseToken(s)
		if err != nil {
			httputil.WriteError(w, httputil.InvalidParam("invalid since token"))
			return
		}
		req.Since = &t
	}
	if s := q.Get("timeout"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			httputil.WriteError(w, httputil.InvalidParam("timeout must be a non-negative integer"))
			return
		}
		req.Timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	switch q.Get("set_presence") {
	case "", "online", "offline", "unavailable":
	default:
		httputil.WriteError(w, httputil.InvalidParam("set_presence must be online, offline or unavailable"))
		return
	}
	if e := a.applySyncFilter(r, dev, q.Get("filter"), &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if p := a.cfg.Ephemeral.Presence; p != nil {
		// The user counts as connected while the request runs.
		defer p.Syncing(r.Context(), dev.UserID, q.Get("set_presence"))()
	}
	resp, err := a.rooms.Sync.Sync(r.Context(), req)
	if err != nil {
		writeRoomError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, resp)
}
