package clientapi

import (
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// registerAccountRoutes adds the account, device, profile, account data and
// filter endpoints.
func (a *API) registerAccountRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	const get, put, post, del = http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	route("/capabilities", a.authed(a.capabilities), get)
	route("/login", a.loginFlows, get)
	route("/login", a.login, post)
	route("/logout", a.authed(a.logout), post)
	route("/logout/all", a.authed(a.logoutAll), post)
	route("/register", a.register, post)
	route("/register/available", a.registerAvailable, get)
	route("/account/whoami", a.authed(a.whoami), get)
	route("/account/password", a.authed(a.changePassword), post)
	route("/account/deactivate", a.authed(a.deactivate), post)

	route("/devices", a.authed(a.listDevices), get)
	route("/devices/{deviceId}", a.authed(a.getDevice), get)
	route("/devices/{deviceId}", a.authed(a.updateDevice), put)
	route("/devices/{deviceId}", a.authed(a.deleteDevice), del)
	route("/delete_devices", a.authed(a.deleteDevices), post)

	route("/profile/{userId}", a.getProfile, get)
	route("/profile/{userId}/{keyName}", a.getProfileField, get)
	route("/profile/{userId}/{keyName}", a.authed(a.setProfileField), put)
	route("/profile/{userId}/{keyName}", a.authed(a.deleteProfileField), del)

	route("/user/{userId}/account_data/{type}", a.authed(a.getAccountData), get)
	route("/user/{userId}/account_data/{type}", a.authed(a.putAccountData), put)
	route("/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.getAccountData), get)
	route("/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.putAccountData), put)
	route("/user/{userId}/rooms/{roomId}/tags", a.authed(a.getTags), get)
	route("/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.putTag), put)
	route("/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.deleteTag), del)

	route("/user/{userId}/filter", a.authed(a.createFilter), post)
	route("/user/{userId}/filter/{filterId}", a.authed(a.getFilter), get)
}

type changePasswordRequest struct {
	NewPassword   *string         `json:"new_password"`
	LogoutDevices *bool           `json:"logout_devices"`
	Auth          *users.AuthData `json:"auth"`
}

// changePassword is POST /account/password, behind the user's current
// password.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req changePasswordRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.NewPassword == nil {
		httputil.WriteError(w, missingParam("new_password is required"))
		return
	}
	if *req.NewPassword == "" {
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_WEAK_PASSWORD", "the new password must not be empty"))
		return
	}
	if len(*req.NewPassword) > users.MaxPasswordBytes {
		httputil.WriteError(w, httputil.InvalidParam("passwords may be at most 72 bytes long"))
		return
	}
	if !a.userInteractiveAuth(w, r, users.UIARequest{
		Action: "POST /account/password", Localpart: dev.Localpart, Flows: users.PasswordFlows, Auth: req.Auth,
	}) {
		return
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices // the spec's default is true
	if err := a.users.ChangePassword(r.Context(), dev, *req.NewPassword, logout); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

type deactivateRequest struct {
	Auth     *users.AuthData `json:"auth"`
	IDServer string          `json:"id_server"`
	Erase    bool            `json:"erase"`
}

// deactivate is POST /account/deactivate, behind the user's password.
func (a *API) deactivate(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req deactivateRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if !a.userInteractiveAuth(w, r, users.UIARequest{
		Action: "POST /account/deactivate", Localpart: dev.Localpart, Flows: users.PasswordFlows, Auth: req.Auth,
	}) {
		return
	}
	if err := a.users.Deactivate(r.Context(), dev, req.Erase); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.Logger(r.Context()).WithField("user_id", dev.UserID).Info("account deactivated")
	// No third-party identifiers are bound, so there was nothing to unbind.
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"id_server_unbind_result": "success"})
}
