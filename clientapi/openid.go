package clientapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// requestOpenIDToken is POST /user/{userId}/openid/request_token.
func (a *API) requestOpenIDToken(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if mux.Vars(r)["userId"] != dev.UserID {
		httputil.WriteError(w, httputil.Forbidden("you may only request OpenID tokens for yourself"))
		return
	}
	var body map[string]any
	if e := readOptionalJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	token, lifetime, err := a.users.RequestOpenIDToken(r.Context(), dev)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"access_token": token, "token_type": "Bearer",
		"matrix_server_name": a.cfg.ServerName, "expires_in": int(lifetime.Seconds()),
	})
}
