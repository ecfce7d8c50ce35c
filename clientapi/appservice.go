package clientapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// authTypeAppService is the login and registration type of application
// services: their as_token stands in for credentials.
const authTypeAppService = "m.login.application_service"

// registerAppServiceRoutes adds the endpoints only application services
// call, and the third-party lookups they answer (thirdparty.go).
func (a *API) registerAppServiceRoutes(r *mux.Router, route func(path string, h http.HandlerFunc, methods ...string)) {
	r.HandleFunc("/_matrix/client/v1/appservice/{appserviceId}/ping", a.authed(a.appServicePing)).Methods(http.MethodPost)
	route("/directory/list/appservice/{networkId}/{roomId}", a.authed(a.appServiceDirectory), http.MethodPut)
	a.registerThirdPartyRoutes(route)
}

// appServiceAuth authenticates a request carrying an application
// service's as_token: the service acts as the user_id parameter (its
// sender when absent) and, with device_id (or MSC3202's
// org.matrix.msc3202.device_id), as that device. ok is false when the
// token is no service's, for the ordinary token look-up to go on.
func (a *API) appServiceAuth(r *http.Request, token string) (dev *users.Device, e *httputil.Error, ok bool) {
	reg := a.cfg.AppServices.ByToken(token)
	if reg == nil {
		return nil, nil, false
	}
	q := r.URL.Query()
	deviceID := q.Get("device_id")
	if deviceID == "" {
		deviceID = q.Get("org.matrix.msc3202.device_id")
	}
	dev, err := a.cfg.AppServices.Authenticate(r.Context(), reg, q.Get("user_id"), deviceID)
	if err != nil {
		return nil, appServiceError(r, err, http.StatusForbidden), true
	}
	return dev, nil, true
}

// appServiceError maps the appservice package's errors to Matrix errors;
// exclusiveStatus is the status of M_EXCLUSIVE, which the spec gives as
// 400 for registration and which is 403 for identity assertion.
func appServiceError(r *http.Request, err error, exclusiveStatus int) *httputil.Error {
	msg := err.Error()
	switch {
	case errors.Is(err, appservice.ErrExclusive):
		return httputil.NewError(exclusiveStatus, "M_EXCLUSIVE", "%s", msg)
	case errors.Is(err, appservice.ErrForbidden):
		return httputil.Forbidden(msg)
	case errors.Is(err, appservice.ErrUnknownDevice):
		return httputil.NewError(http.StatusBadRequest, "M_UNKNOWN_DEVICE", "%s", msg)
	case errors.Is(err, appservice.ErrMissingParam):
		return missingParam(msg)
	case errors.Is(err, appservice.ErrNotFound):
		return httputil.NotFound(msg)
	}
	if e := usersError(err); e != nil {
		return e
	}
	httputil.Logger(r.Context()).WithError(err).Error("application service request failed")
	return httputil.Unknown()
}

// appServiceFromToken returns the application service whose as_token the
// request carries, or the 401 to answer: registration and login with
// m.login.application_service need one.
func (a *API) appServiceFromToken(r *http.Request) (*appservice.Registration, *httputil.Error) {
	token, ok := accessToken(r)
	if !ok {
		return nil, httputil.NewError(http.StatusUnauthorized, "M_MISSING_TOKEN", "m.login.application_service needs the application service's as_token")
	}
	reg := a.cfg.AppServices.ByToken(token)
	if reg == nil {
		return nil, httputil.NewError(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "not an application service's as_token")
	}
	return reg, nil
}

// isAppServiceRequest reports whether the request carries an as_token.
func (a *API) isAppServiceRequest(r *http.Request) bool {
	token, ok := accessToken(r)
	return ok && a.cfg.AppServices.ByToken(token) != nil
}

// registerAppService is POST /register with m.login.application_service:
// a service creates a user of its namespaces, without password or
// user-interactive authentication, whether or not registration is open.
// It is not rate limited: rate_limited concerns what the users do, and a
// bridge creates a ghost for every remote user it meets.
func (a *API) registerAppService(w http.ResponseWriter, r *http.Request, req *registerRequest) {
	reg, e := a.appServiceFromToken(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	var device *users.DeviceParams
	if !req.InhibitLogin {
		device = &users.DeviceParams{DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, IP: a.clientIP(r)}
	}
	sess, err := a.cfg.AppServices.RegisterUser(r.Context(), reg, req.Username, device)
	if err != nil {
		httputil.WriteError(w, appServiceError(r, err, http.StatusBadRequest))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, registerResponse{
		UserID: sess.UserID, AccessToken: sess.AccessToken, DeviceID: sess.DeviceID, HomeServer: a.cfg.ServerName,
	})
}

// loginAppService is POST /login with m.login.application_service: a
// service logs one of its users in without a password.
func (a *API) loginAppService(w http.ResponseWriter, r *http.Request, req *loginRequest) {
	reg, e := a.appServiceFromToken(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	localpart, err := a.users.ResolveIdentifier(req.Identifier, req.User, req.Medium, req.Address)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	sess, err := a.cfg.AppServices.LoginUser(r.Context(), reg, localpart, users.DeviceParams{
		DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, IP: a.clientIP(r),
	})
	if err != nil {
		httputil.WriteError(w, appServiceError(r, err, http.StatusBadRequest))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, loginResponse{
		UserID: sess.UserID, AccessToken: sess.AccessToken, DeviceID: sess.DeviceID, HomeServer: a.cfg.ServerName,
	})
}

// exclusiveUsername refuses a username an application service reserves
// (400 M_EXCLUSIVE), for ordinary registration.
func (a *API) exclusiveUsername(localpart string) *httputil.Error {
	if owner := a.cfg.AppServices.ExclusiveOwner(a.users.UserID(localpart)); owner != nil {
		return httputil.NewError(http.StatusBadRequest, "M_EXCLUSIVE", "this user ID is reserved by an application service")
	}
	return nil
}

// profileOf is a user's profile; an unknown user in an application
// service's namespace is first asked of the service, which may create it.
func (a *API) profileOf(ctx context.Context, userID string) (*users.Profile, error) {
	p, err := a.users.Profile(ctx, userID)
	if errors.Is(err, users.ErrNotFound) && a.cfg.AppServices.QueryUser(ctx, userID) {
		p, err = a.users.Profile(ctx, userID)
	}
	return p, err
}

// appServicePing is POST /_matrix/client/v1/appservice/{appserviceId}/ping:
// the homeserver pings the service on its behalf, to prove the way back
// works.
func (a *API) appServicePing(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	id := mux.Vars(r)["appserviceId"]
	reg := a.cfg.AppServices.ByID(dev.AppServiceID)
	if reg == nil || reg.ID != id {
		httputil.WriteError(w, httputil.Forbidden("the access token is not the as_token of application service "+id))
		return
	}
	var req struct {
		TransactionID string `json:"transaction_id"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	took, err := a.cfg.AppServices.Ping(r.Context(), reg, req.TransactionID)
	var pe *appservice.PingError
	switch {
	case err == nil:
		httputil.WriteJSON(w, http.StatusOK, map[string]int64{"duration_ms": took.Milliseconds()})
	case errors.As(err, &pe):
		status := http.StatusBadGateway
		switch pe.Code {
		case "M_URL_NOT_SET":
			status = http.StatusBadRequest
		case "M_CONNECTION_TIMEOUT":
			status = http.StatusGatewayTimeout
		}
		e := httputil.NewError(status, pe.Code, "%s", pe.Error())
		if pe.Code == "M_BAD_STATUS" {
			e.Extra = map[string]any{"status": pe.Status, "body": pe.Body}
		}
		httputil.Logger(r.Context()).WithError(err).WithField("appservice", reg.ID).Info("application service ping failed")
		httputil.WriteError(w, e)
	default:
		httputil.WriteError(w, appServiceError(r, err, http.StatusBadRequest))
	}
}

// appServiceDirectory is PUT /directory/list/appservice/{networkId}/{roomId}:
// a service lists a room in (or removes it from) the public directory of
// one of its networks.
func (a *API) appServiceDirectory(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	reg := a.cfg.AppServices.ByID(dev.AppServiceID)
	if reg == nil {
		httputil.WriteError(w, httputil.Forbidden("only application services may use this endpoint"))
		return
	}
	var req struct {
		Visibility string `json:"visibility"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Visibility != "public" && req.Visibility != "private" {
		httputil.WriteError(w, httputil.InvalidParam("visibility must be public or private"))
		return
	}
	vars := mux.Vars(r)
	if err := a.cfg.AppServices.SetRoomVisibility(r.Context(), reg, vars["networkId"], vars["roomId"], req.Visibility == "public"); err != nil {
		httputil.WriteError(w, appServiceError(r, err, http.StatusBadRequest))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
