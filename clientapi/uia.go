package clientapi

import (
	"bytes"
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// userInteractiveAuth runs user-interactive authentication for a request
// whose body the handler has decoded (req.Auth is its "auth" object). It
// returns true when the request is authenticated; otherwise it has answered
// with the 401 challenge (or an error) and the handler must stop.
//
// Password attempts count against the login rate limit of the account, so
// that a stolen access token does not open a way to guess the password.
func (a *API) userInteractiveAuth(w http.ResponseWriter, r *http.Request, req users.UIARequest) bool {
	if !a.uiaRateLimit(w, r, req) {
		return false
	}
	ch, err := a.users.UserInteractiveAuth(r.Context(), req)
	return a.uiaAnswer(w, r, ch, err)
}

// uiaRateLimit applies the login rate limit to password attempts.
func (a *API) uiaRateLimit(w http.ResponseWriter, r *http.Request, req users.UIARequest) bool {
	if req.Auth != nil && req.Auth.Type == users.AuthTypePassword {
		key := "user:" + req.Localpart
		if req.Localpart == "" {
			key = a.rateLimitKeyIP(r)
		}
		return a.rateLimit(w, a.cfg.RateLimits.Login, key, nil)
	}
	return true
}

// uiaAnswer answers a step of user-interactive authentication that did not
// authenticate the request (a challenge or an error) and returns false, or
// returns true.
func (a *API) uiaAnswer(w http.ResponseWriter, r *http.Request, ch *users.UIAChallenge, err error) bool {
	if err != nil {
		writeUsersError(w, r, err)
		return false
	}
	if ch != nil {
		httputil.WriteJSON(w, http.StatusUnauthorized, ch)
		return false
	}
	return true
}

// readJSONOrEmpty decodes the request body into v, taking an empty body as
// {}: DELETE requests may come without one.
func readJSONOrEmpty(r *http.Request, v any) *httputil.Error {
	body, e := httputil.ReadBody(r)
	if e != nil {
		return e
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return httputil.DecodeJSON(body, v)
}

// missingParam is 400 M_MISSING_PARAM.
func missingParam(msg string) *httputil.Error {
	return httputil.NewError(http.StatusBadRequest, "M_MISSING_PARAM", "%s", msg)
}
