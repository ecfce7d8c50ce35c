package clientapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/presence"
	"github.com/parley-chat/parley/homeserver/receipts"
	"github.com/parley-chat/parley/homeserver/typing"
	"github.com/parley-chat/parley/homeserver/users"
)

// EphemeralServices are the services behind the typing, receipt, read
// marker and presence endpoints. The endpoints of a nil service are not
// served.
type EphemeralServices struct {
	Typing   *typing.Service
	Receipts *receipts.Service
	Presence *presence.Service
}

// registerEphemeralRoutes adds the typing, receipt, read marker and
// presence endpoints (typing.go, receipts.go, presence.go).
func (a *API) registerEphemeralRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	e := a.cfg.Ephemeral
	if e.Typing != nil {
		route("/rooms/{roomId}/typing/{userId}", a.authed(a.setTyping), http.MethodPut)
	}
	if e.Receipts != nil {
		route("/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.authed(a.sendReceipt), http.MethodPost)
		route("/rooms/{roomId}/read_markers", a.authed(a.setReadMarkers), http.MethodPost)
	}
	if e.Presence != nil {
		route("/presence/{userId}/status", a.authed(a.getPresence), http.MethodGet)
		route("/presence/{userId}/status", a.authed(a.setPresence), http.MethodPut)
	}
}

// ephemeralError maps the typing, receipt and presence services' errors to
// Matrix errors; nil means an internal error.
func ephemeralError(err error) *httputil.Error {
	msg := err.Error()
	switch {
	case errors.Is(err, typing.ErrForbidden), errors.Is(err, receipts.ErrForbidden), errors.Is(err, presence.ErrForbidden):
		return httputil.Forbidden(msg)
	case errors.Is(err, receipts.ErrNotFound):
		return httputil.NotFound(msg)
	case errors.Is(err, receipts.ErrInvalidParam), errors.Is(err, presence.ErrInvalidParam):
		return httputil.InvalidParam(msg)
	}
	if e := usersError(err); e != nil {
		return e
	}
	return roomError(err)
}

func writeEphemeralError(w http.ResponseWriter, r *http.Request, err error) {
	if e := ephemeralError(err); e != nil {
		httputil.WriteError(w, e)
		return
	}
	httputil.Logger(r.Context()).WithError(err).Error("request failed")
	httputil.WriteError(w, httputil.Unknown())
}

type typingRequest struct {
	Typing  *bool  `json:"typing"`
	Timeout *int64 `json:"timeout"`
}

// setTyping is PUT /rooms/{roomId}/typing/{userId}: only for oneself, in a
// room one is joined to.
func (a *API) setTyping(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	if vars["userId"] != dev.UserID {
		httputil.WriteError(w, httputil.Forbidden("you can only set your own typing notifications"))
		return
	}
	var req typingRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Typing == nil {
		httputil.WriteError(w, httputil.BadJSON("typing is required"))
		return
	}
	var timeout time.Duration
	if req.Timeout != nil {
		if *req.Timeout < 0 {
			httputil.WriteError(w, httputil.InvalidParam("timeout must not be negative"))
			return
		}
		timeout = time.Duration(min(*req.Timeout, typing.MaxTimeout.Milliseconds())) * time.Millisecond
	}
	if err := a.cfg.Ephemeral.Typing.SetTyping(r.Context(), vars["roomId"], dev.UserID, *req.Typing, timeout); err != nil {
		writeEphemeralError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
