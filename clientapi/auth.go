package clientapi

import (
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/homeserver/filter"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/ratelimit"
	"github.com/parley-chat/parley/homeserver/users"
)

// authed wraps a handler that needs a logged-in user. It reads the access
// token from the "Authorization: Bearer" header or the access_token query
// parameter, answers 401 M_MISSING_TOKEN or M_UNKNOWN_TOKEN itself, and
// otherwise calls h with the caller's device:
//
//	route("/joined_rooms", a.authed(a.joinedRooms), http.MethodGet)
//
//	func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request, dev *users.Device) {
//		// dev.UserID, dev.DeviceID, dev.IsAdmin
//	}
//
// Validated tokens are cached in memory by the users service, so on the
// hot path this costs a hash and a map look-up.
func (a *API) authed(h func(w http.ResponseWriter, r *http.Request, dev *users.Device)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		dev, e := a.authenticate(r)
		if e != nil {
			httputil.WriteError(w, e)
			return
		}
		h(w, r, dev)
	}
}

// authenticate returns the caller's device, or the Matrix error to answer.
func (a *API) authenticate(r *http.Request) (*users.Device, *httputil.Error) {
	token, ok := accessToken(r)
	if !ok {
		return nil, httputil.NewError(http.StatusUnauthorized, "M_MISSING_TOKEN", "missing access token")
	}
	// An application service's as_token, acting as one of its users
	// (appservice.go).
	if dev, e, ok := a.appServiceAuth(r, token); ok {
		return dev, e
	}
	dev, err := a.users.Authenticate(r.Context(), token, a.clientIP(r))
	if errors.Is(err, users.ErrUnknownToken) {
		e := httputil.NewError(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "unknown or expired access token")
		// Not a soft logout: the session is gone and the client must
		// discard it.
		e.Extra = map[string]any{"soft_logout": false}
		return nil, e
	}
	if err != nil {
		httputil.Logger(r.Context()).WithError(err).Error("access token look-up failed")
		return nil, httputil.Unknown()
	}
	return dev, nil
}

// accessToken finds the request's access token: the Authorization header
// (Bearer scheme, case-insensitive) first, then the access_token query
// parameter that older clients and appservices use.
func accessToken(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
			return strings.TrimSpace(token), true
		}
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t, true
	}
	return "", false
}

// clientIP is the client's address: the connection's peer, or the last
// X-Forwarded-For hop (added by our reverse proxy) when so configured.
func (a *API) clientIP(r *http.Request) string {
	if a.cfg.XForwardedFor {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			hops := strings.Split(xff, ",")
			if ip := net.ParseIP(strings.TrimSpace(hops[len(hops)-1])); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rateLimitKeyIP is the rate-limit key of the client's address. An IPv6
// client usually controls a whole /64, so it counts as one address.
func (a *API) rateLimitKeyIP(r *http.Request) string {
	ip := net.ParseIP(a.clientIP(r))
	if ip == nil {
		return "ip:" + a.clientIP(r)
	}
	if ip.To4() == nil {
		ip = ip.Mask(net.CIDRMask(64, 128))
	}
	return "ip:" + ip.String()
}

// rateLimit takes a token from l's bucket for key. When the bucket is
// empty it answers 429 M_LIMIT_EXCEEDED, with retry_after_ms and a
// Retry-After header, and returns false: the handler must stop. Server
// admins (dev, which may be nil for unauthenticated requests) are exempt,
// and so are application services whose registration says rate_limited:
// false (their sender always is).
//
//	if !a.rateLimit(w, a.cfg.RateLimits.MessageSending, dev.UserID, dev) {
//		return
//	}
func (a *API) rateLimit(w http.ResponseWriter, l *ratelimit.Limiter, key string, dev *users.Device) bool {
	if dev != nil && (dev.IsAdmin || a.cfg.AppServices.RateLimitExempt(dev)) {
		return true
	}
	ok, wait := l.Allow(key)
	if ok {
		return true
	}
	ms := wait.Milliseconds()
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	e := httputil.NewError(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "too many requests; retry in %d ms", ms)
	e.Extra = map[string]any{"retry_after_ms": ms}
	httputil.WriteError(w, e)
	return false
}

// usersError maps the users service's errors to Matrix errors; nil means an
// internal error.
func usersError(err error) *httputil.Error {
	msg := err.Error()
	var fe *filter.Error
	switch {
	case errors.As(err, &fe):
		if fe.Code == "M_NOT_FOUND" {
			return httputil.NotFound(fe.Message)
		}
		return httputil.NewError(http.StatusBadRequest, fe.Code, "%s", fe.Message)
	case errors.Is(err, users.ErrUserInUse):
		return httputil.NewError(http.StatusBadRequest, "M_USER_IN_USE", "%s", msg)
	case errors.Is(err, users.ErrInvalidUsername):
		return httputil.NewError(http.StatusBadRequest, "M_INVALID_USERNAME", "%s", msg)
	case errors.Is(err, users.ErrForbidden):
		return httputil.Forbidden(msg)
	case errors.Is(err, users.ErrUserDeactivated):
		return httputil.NewError(http.StatusForbidden, "M_USER_DEACTIVATED", "%s", msg)
	case errors.Is(err, users.ErrNotFound):
		return httputil.NotFound(msg)
	case errors.Is(err, users.ErrInvalidParam):
		return httputil.InvalidParam(msg)
	case errors.Is(err, users.ErrBadJSON):
		return httputil.BadJSON(msg)
	case errors.Is(err, users.ErrUnknownLoginType):
		return httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "%s", msg)
	case errors.Is(err, users.ErrServerManaged):
		// The spec's status for this is 405, with M_BAD_JSON.
		return httputil.NewError(http.StatusMethodNotAllowed, "M_BAD_JSON", "%s", msg)
	}
	return nil
}

// writeUsersError answers with the Matrix error for err, logging
// unexpected ones.
func writeUsersError(w http.ResponseWriter, r *http.Request, err error) {
	if e := usersError(err); e != nil {
		httputil.WriteError(w, e)
		return
	}
	httputil.Logger(r.Context()).WithError(err).Error("account request failed")
	httputil.WriteError(w, httputil.Unknown())
}

// loadFilter resolves a filter query parameter (a filter ID or inline
// JSON) for the room and sync endpoints. A nil filter with a nil error
// means no filter; the filter package's matchers treat nil as "allow all".
func (a *API) loadFilter(r *http.Request, dev *users.Device, param string) (*filter.Filter, *httputil.Error) {
	f, err := a.users.LoadFilter(r.Context(), dev.UserID, param)
	if err != nil {
		if e := usersError(err); e != nil {
			return nil, e
		}
		httputil.Logger(r.Context()).WithError(err).Error("loading filter failed")
		return nil, httputil.Unknown()
	}
	return f, nil
}
