package clientapi

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/appservice"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// registerThirdPartyRoutes adds the third-party lookups, answered by the
// application services that declare the protocols (a server without any
// knows no protocol).
func (a *API) registerThirdPartyRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	route("/thirdparty/protocols", a.authed(a.thirdPartyProtocols), http.MethodGet)
	route("/thirdparty/protocol/{protocol}", a.authed(a.thirdPartyProtocol), http.MethodGet)
	route("/thirdparty/location", a.authed(a.thirdPartyLookup("location", "alias")), http.MethodGet)
	route("/thirdparty/location/{protocol}", a.authed(a.thirdPartyLookup("location", "")), http.MethodGet)
	route("/thirdparty/user", a.authed(a.thirdPartyLookup("user", "userid")), http.MethodGet)
	route("/thirdparty/user/{protocol}", a.authed(a.thirdPartyLookup("user", "")), http.MethodGet)
}

// thirdPartyProtocols is GET /thirdparty/protocols.
func (a *API) thirdPartyProtocols(w http.ResponseWriter, r *http.Request, _ *users.Device) {
	httputil.WriteJSON(w, http.StatusOK, a.cfg.AppServices.Protocols(r.Context()))
}

// thirdPartyProtocol is GET /thirdparty/protocol/{protocol}.
func (a *API) thirdPartyProtocol(w http.ResponseWriter, r *http.Request, _ *users.Device) {
	meta, err := a.cfg.AppServices.Protocol(r.Context(), mux.Vars(r)["protocol"])
	if err != nil {
		httputil.WriteError(w, appServiceError(r, err, http.StatusBadRequest))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, meta)
}

// thirdPartyLookup answers the location and user lookups: by protocol
// with the protocol's search fields, or the reverse lookups by a Matrix
// ID (reverseParam: alias or userid). The query string goes to the
// services as it came, less the caller's credentials. Nothing found is
// 404 M_NOT_FOUND, as the spec has it.
func (a *API) thirdPartyLookup(kind, reverseParam string) func(http.ResponseWriter, *http.Request, *users.Device) {
	return func(w http.ResponseWriter, r *http.Request, _ *users.Device) {
		protocol := mux.Vars(r)["protocol"]
		query := url.Values{}
		for k, v := range r.URL.Query() {
			switch k {
			case "access_token", "user_id", "device_id", "org.matrix.msc3202.device_id":
			default:
				query[k] = v
			}
		}
		if reverseParam != "" && query.Get(reverseParam) == "" {
			httputil.WriteError(w, missingParam(reverseParam+" is required"))
			return
		}
		found, err := a.cfg.AppServices.ThirdPartyLookup(r.Context(), kind, protocol, query)
		if err != nil {
			if errors.Is(err, appservice.ErrNotFound) {
				httputil.WriteError(w, httputil.NotFound(err.Error()))
				return
			}
			httputil.WriteError(w, appServiceError(r, err, http.StatusBadRequest))
			return
		}
		if len(found) == 0 {
			httputil.WriteError(w, httputil.NotFound("no "+kind+" found"))
			return
		}
		httputil.WriteJSON(w, http.StatusOK, found)
	}
}
