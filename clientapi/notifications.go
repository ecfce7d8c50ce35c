package clientapi

import (
	"net/http"
	"strconv"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// Page sizes of GET /notifications.
const (
	defaultNotificationsLimit = 20
	maxNotificationsLimit     = 100
)

// notifications is GET /notifications: the events the user was notified
// about, newest first.
func (p *pushAPI) notifications(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	limit := defaultNotificationsLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			httputil.WriteError(w, httputil.InvalidParam("limit must be a non-negative integer"))
			return
		}
		limit = min(max(n, 1), maxNotificationsLimit)
	}
	page, err := p.svc.Notifications(r.Context(), viewer(dev), q.Get("from"), limit, q.Get("only") == "highlight")
	if err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, page)
}
