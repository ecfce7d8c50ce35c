package clientapi

import (
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// loginFlows is GET /login.
func (a *API) loginFlows(w http.ResponseWriter, _ *http.Request) {
	flows := []map[string]string{{"type": users.AuthTypePassword}}
	if len(a.cfg.AppServices.Registrations()) > 0 {
		flows = append(flows, map[string]string{"type": authTypeAppService})
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"flows": flows})
}

type loginRequest struct {
	Type       string            `json:"type"`
	Identifier *users.Identifier `json:"identifier"`
	// Deprecated forms of the identifier.
	User    string `json:"user"`
	Medium  string `json:"medium"`
	Address string `json:"address"`

	Password                 string `json:"password"`
	DeviceID                 string `json:"device_id"`
	InitialDeviceDisplayName string `json:"initial_device_display_name"`
	RefreshToken             bool   `json:"refresh_token"`
}

type loginResponse struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
	HomeServer  string `json:"home_server"`
}

// login is POST /login with a password. Attempts are rate limited by client
// address and by account, before the password is checked.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Type == authTypeAppService {
		a.loginAppService(w, r, &req)
		return
	}
	if !a.rateLimit(w, a.cfg.RateLimits.Login, a.rateLimitKeyIP(r), nil) {
		return
	}
	switch req.Type {
	case users.AuthTypePassword:
	case "":
		httputil.WriteError(w, httputil.BadJSON("type is required"))
		return
	default:
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_UNKNOWN", "unsupported login type %q", req.Type))
		return
	}
	localpart, err := a.users.ResolveIdentifier(req.Identifier, req.User, req.Medium, req.Address)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	if !a.rateLimit(w, a.cfg.RateLimits.Login, "user:"+localpart, nil) {
		return
	}
	if err := a.users.CheckLogin(r.Context(), localpart, req.Password); err != nil {
		writeUsersError(w, r, err)
		return
	}
	sess, err := a.users.Login(r.Context(), localpart, users.DeviceParams{
		DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, IP: a.clientIP(r),
	})
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, loginResponse{
		UserID: sess.UserID, AccessToken: sess.AccessToken, DeviceID: sess.DeviceID, HomeServer: a.cfg.ServerName,
	})
}

// logout is POST /logout: the device and its token go.
func (a *API) logout(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if err := a.users.Logout(r.Context(), dev); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// logoutAll is POST /logout/all: every device of the user goes.
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if err := a.users.LogoutAll(r.Context(), dev); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// whoami is GET /account/whoami. An application service acting without a
// device has none to report.
func (a *API) whoami(w http.ResponseWriter, _ *http.Request, dev *users.Device) {
	resp := map[string]any{"user_id": dev.UserID, "device_id": dev.DeviceID, "is_guest": false}
	if dev.Virtual {
		delete(resp, "device_id")
	}
	httputil.WriteJSON(w, http.StatusOK, resp)
}
