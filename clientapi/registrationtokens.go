package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// registerTokenRoutes adds the registration token validity check of the
// spec (Matrix 1.2) and the admin API that manages the tokens, shaped like
// Synapse's /_synapse/admin/v1/registration_tokens.
func (a *API) registerTokenRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	route("/_matrix/client/v1/register/m.login.registration_token/validity", a.registrationTokenValidity, http.MethodGet)
	admin := "/_parley/admin/v1/registration_tokens"
	route(admin, a.authed(a.listRegistrationTokens), http.MethodGet)
	route(admin+"/new", a.authed(a.createRegistrationToken), http.MethodPost)
	route(admin+"/{token}", a.authed(a.getRegistrationToken), http.MethodGet)
	route(admin+"/{token}", a.authed(a.updateRegistrationToken), http.MethodPut)
	route(admin+"/{token}", a.authed(a.deleteRegistrationToken), http.MethodDelete)
}

// registrationTokenValidity is GET
// /_matrix/client/v1/register/m.login.registration_token/validity?token=.
func (a *API) registrationTokenValidity(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.RegistrationEnabled {
		httputil.WriteError(w, httputil.Forbidden("registration is disabled on this server"))
		return
	}
	// The spec asks for a rate limit against guessing tokens; this one is
	// registration's, in a bucket of its own.
	if !a.rateLimit(w, a.cfg.RateLimits.Registration, "token_validity:"+a.rateLimitKeyIP(r), nil) {
		return
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		httputil.WriteError(w, missingParam("token is required"))
		return
	}
	valid, err := a.users.RegistrationTokenValid(r.Context(), token)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]bool{"valid": valid})
}

// registrationTokenJSON is a token as the admin API shows it; null means
// unlimited.
type registrationTokenJSON struct {
	Token       string `json:"token"`
	UsesAllowed *int64 `json:"uses_allowed"`
	Pending     int64  `json:"pending"`
	Completed   int64  `json:"completed"`
	ExpiryTime  *int64 `json:"expiry_time"`
}

func tokenJSON(t users.RegistrationToken) registrationTokenJSON {
	return registrationTokenJSON{Token: t.Token, UsesAllowed: t.UsesAllowed, Pending: t.Pending, Completed: t.Completed, ExpiryTime: t.ExpiryTime}
}

// writeToken answers with t, or with the error err.
func writeToken(w http.ResponseWriter, r *http.Request, t *users.RegistrationToken, err error) {
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, tokenJSON(*t))
}

// optionalInt is a JSON integer that may be absent (Set false), null
// (Value nil) or a number.
type optionalInt struct {
	Set   bool
	Value *int64
}

func (o *optionalInt) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		return nil
	}
	var v int64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	o.Value = &v
	return nil
}

// listRegistrationTokens is GET /_parley/admin/v1/registration_tokens,
// with ?valid=true or ?valid=false to list only valid or invalid tokens.
func (a *API) listRegistrationTokens(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	var valid *bool
	switch v := r.URL.Query().Get("valid"); v {
	case "":
	case "true", "false":
		b := v == "true"
		valid = &b
	default:
		httputil.WriteError(w, httputil.InvalidParam("valid must be true or false"))
		return
	}
	list, err := a.users.RegistrationTokens(r.Context(), valid)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	out := make([]registrationTokenJSON, len(list))
	for i, t := range list {
		out[i] = tokenJSON(t)
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"registration_tokens": out})
}

// createRegistrationToken is POST /_parley/admin/v1/registration_tokens/new
// {token, uses_allowed, expiry_time, length}, every field optional.
func (a *API) createRegistrationToken(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	var req struct {
		Token       *string     `json:"token"`
		UsesAllowed optionalInt `json:"uses_allowed"`
		ExpiryTime  optionalInt `json:"expiry_time"`
		Length      *int        `json:"length"`
	}
	if e := readJSONOrEmpty(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	nt := users.NewRegistrationToken{UsesAllowed: req.UsesAllowed.Value, ExpiryTime: req.ExpiryTime.Value}
	if req.Token != nil {
		if *req.Token == "" {
			httputil.WriteError(w, httputil.InvalidParam("token must not be empty; leave it out to generate one"))
			return
		}
		nt.Token = *req.Token
	}
	if req.Length != nil {
		if *req.Length < 1 {
			httputil.WriteError(w, httputil.InvalidParam("length must be between 1 and 64"))
			return
		}
		nt.Length = *req.Length
	}
	t, err := a.users.CreateRegistrationToken(r.Context(), nt)
	if err == nil {
		httputil.Logger(r.Context()).WithField("admin", dev.UserID).Info("admin created a registration token")
	}
	writeToken(w, r, t, err)
}

// getRegistrationToken is GET /_parley/admin/v1/registration_tokens/{token}.
func (a *API) getRegistrationToken(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	t, err := a.users.GetRegistrationToken(r.Context(), mux.Vars(r)["token"])
	writeToken(w, r, t, err)
}

// updateRegistrationToken is PUT
// /_parley/admin/v1/registration_tokens/{token} {uses_allowed, expiry_time}:
// a field left out stays as it is, null makes it unlimited.
func (a *API) updateRegistrationToken(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	var req struct {
		UsesAllowed optionalInt `json:"uses_allowed"`
		ExpiryTime  optionalInt `json:"expiry_time"`
	}
	if e := readJSONOrEmpty(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	t, err := a.users.UpdateRegistrationToken(r.Context(), mux.Vars(r)["token"], users.RegistrationTokenUpdate{
		SetUsesAllowed: req.UsesAllowed.Set, UsesAllowed: req.UsesAllowed.Value,
		SetExpiryTime: req.ExpiryTime.Set, ExpiryTime: req.ExpiryTime.Value,
	})
	writeToken(w, r, t, err)
}

// deleteRegistrationToken is DELETE
// /_parley/admin/v1/registration_tokens/{token}.
func (a *API) deleteRegistrationToken(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !requireAdmin(w, dev) {
		return
	}
	if err := a.users.DeleteRegistrationToken(r.Context(), mux.Vars(r)["token"]); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.Logger(r.Context()).WithField("admin", dev.UserID).Info("admin deleted a registration token")
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
