package clientapi

import (
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

type registerRequest struct {
	// Type is m.login.application_service for an application service
	// creating one of its users (appservice.go).
	Type                     string          `json:"type"`
	Auth                     *users.AuthData `json:"auth"`
	Username                 string          `json:"username"`
	Password                 string          `json:"password"`
	DeviceID                 string          `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	InhibitLogin             bool            `json:"inhibit_login"`
	RefreshToken             bool            `json:"refresh_token"`
}

// registerResponse is the answer of both registration APIs. Access tokens
// do not expire, so no refresh token is issued.
type registerResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
	HomeServer  string `json:"home_server"`
}

// register is POST /register: open registration with an m.login.dummy
// user-interactive authentication, or an m.login.registration_token one
// when registration requires a token.
func (a *API) register(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("kind") {
	case "", "user":
	case "guest":
		httputil.WriteError(w, httputil.NewError(http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "guest access is not supported"))
		return
	default:
		httputil.WriteError(w, httputil.InvalidParam("kind must be user or guest"))
		return
	}
	var req registerRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	// Application services register their users whether or not
	// registration is open.
	if req.Type == authTypeAppService || a.isAppServiceRequest(r) {
		a.registerAppService(w, r, &req)
		return
	}
	if !a.cfg.RegistrationEnabled {
		httputil.WriteError(w, httputil.Forbidden("registration is disabled on this server"))
		return
	}
	// Only attempts to finish a registration count: the first request,
	// without auth, just asks for the flows.
	if req.Auth != nil && !a.rateLimit(w, a.cfg.RateLimits.Registration, a.rateLimitKeyIP(r), nil) {
		return
	}
	// The spec has these checked before user-interactive authentication,
	// so that a client learns of a taken name before going through it.
	if req.Username != "" {
		localpart, err := a.users.CheckUsername(r.Context(), req.Username)
		if err != nil {
			writeUsersError(w, r, err)
			return
		}
		if e := a.exclusiveUsername(localpart); e != nil {
			httputil.WriteError(w, e)
			return
		}
		req.Username = localpart
	}
	if req.Auth != nil && req.Password == "" {
		httputil.WriteError(w, missingParam("password is required"))
		return
	}
	if len(req.Password) > users.MaxPasswordBytes {
		httputil.WriteError(w, httputil.InvalidParam("passwords may be at most 72 bytes long"))
		return
	}
	uia := users.UIARequest{Action: "POST /register", Flows: users.DummyFlows, Auth: req.Auth}
	if a.cfg.RegistrationRequiresToken {
		uia.Flows = users.RegistrationTokenFlows
	}
	if !a.uiaRateLimit(w, r, uia) {
		return
	}
	account := users.NewAccount{Username: req.Username, Password: req.Password}
	if !req.InhibitLogin {
		account.Device = &users.DeviceParams{DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, IP: a.clientIP(r)}
	}
	sess, ch, err := a.users.RegisterInteractive(r.Context(), uia, account)
	if !a.uiaAnswer(w, r, ch, err) {
		return
	}
	httputil.Logger(r.Context()).WithField("user_id", sess.UserID).Info("registered a new account")
	httputil.WriteJSON(w, http.StatusOK, registerResponse{
		UserID: sess.UserID, AccessToken: sess.AccessToken, DeviceID: sess.DeviceID, HomeServer: a.cfg.ServerName,
	})
}

// registerAvailable is GET /register/available.
func (a *API) registerAvailable(w http.ResponseWriter, r *http.Request) {
	username := r.URL.Query().Get("username")
	if username == "" {
		httputil.WriteError(w, missingParam("username is required"))
		return
	}
	localpart, err := a.users.CheckUsername(r.Context(), username)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	if e := a.exclusiveUsername(localpart); e != nil {
		httputil.WriteError(w, e)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]bool{"available": true})
}

type sharedSecretRequest struct {
	Nonce        string `json:"nonce"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	Admin        bool   `json:"admin"`
	UserType     string `json:"user_type"`
	DisplayName  string `json:"displayname"`
	MAC          string `json:"mac"`
	InhibitLogin bool   `json:"inhibit_login"`
}

// registerAdminRoutes adds the shared-secret registration API that Synapse
// defined and admin tools (register_new_matrix_user, mautrix's
// synapseadmin) speak.
func (a *API) registerAdminRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	route("/_synapse/admin/v1/register", a.sharedSecretNonce, http.MethodGet)
	route("/_synapse/admin/v1/register", a.sharedSecretRegister, http.MethodPost)
}

// sharedSecretEnabled answers 403 and returns false when no shared secret
// is configured.
func (a *API) sharedSecretEnabled(w http.ResponseWriter) bool {
	if a.cfg.RegistrationSharedSecret == "" {
		httputil.WriteError(w, httputil.Forbidden("shared-secret registration is disabled (registration.shared_secret is not set)"))
		return false
	}
	return true
}

// sharedSecretNonce is GET /_synapse/admin/v1/register.
func (a *API) sharedSecretNonce(w http.ResponseWriter, r *http.Request) {
	if !a.sharedSecretEnabled(w) {
		return
	}
	// Every nonce is a database row, so unauthenticated callers may not
	// mint them without limit.
	if !a.rateLimit(w, a.cfg.RateLimits.Registration, "nonce:"+a.rateLimitKeyIP(r), nil) {
		return
	}
	nonce, err := a.users.NewRegistrationNonce(r.Context())
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"nonce": nonce})
}

// sharedSecretRegister is POST /_synapse/admin/v1/register.
func (a *API) sharedSecretRegister(w http.ResponseWriter, r *http.Request) {
	if !a.sharedSecretEnabled(w) {
		return
	}
	var req sharedSecretRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	for _, p := range [][2]string{{"nonce", req.Nonce}, {"username", req.Username}, {"password", req.Password}, {"mac", req.MAC}} {
		if p[1] == "" {
			httputil.WriteError(w, missingParam(p[0]+" is required"))
			return
		}
	}
	ssr := users.SharedSecretRequest{
		Nonce: req.Nonce, Username: req.Username, Password: req.Password, Admin: req.Admin,
		UserType: req.UserType, DisplayName: req.DisplayName, MAC: req.MAC,
	}
	if !req.InhibitLogin {
		ssr.Device = &users.DeviceParams{IP: a.clientIP(r)}
	}
	sess, err := a.users.SharedSecretRegister(r.Context(), a.cfg.RegistrationSharedSecret, ssr)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.Logger(r.Context()).WithField("user_id", sess.UserID).WithField("admin", req.Admin).
		Info("registered a new account with the shared secret")
	httputil.WriteJSON(w, http.StatusOK, registerResponse{
		UserID: sess.UserID, AccessToken: sess.AccessToken, DeviceID: sess.DeviceID, HomeServer: a.cfg.ServerName,
	})
}
