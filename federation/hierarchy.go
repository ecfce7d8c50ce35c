package federation

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/directory"
	"github.com/parley-chat/parley/homeserver/httputil"
)

// Hierarchy serves GET /_matrix/federation/v1/hierarchy/{roomId} (spaces
// we are in, for servers whose users walk them) and returns the function
// that asks other servers. Call after Register.
func (a *API) Hierarchy(svc *directory.Service) directory.RemoteHierarchy {
	a.authed.HandleFunc("/_matrix/federation/v1/hierarchy/{roomId}", func(w http.ResponseWriter, r *http.Request) {
		suggested := false
		if v := r.URL.Query().Get("suggested_only"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				httputil.WriteError(w, httputil.InvalidParam("suggested_only must be true or false"))
				return
			}
			suggested = b
		}
		answer, err := svc.HierarchyFor(r.Context(), origin(r), mux.Vars(r)["roomId"], suggested)
		if errors.Is(err, directory.ErrHierarchyNotFound) {
			httputil.WriteError(w, httputil.NotFound("room not found or not accessible to your server"))
			return
		}
		if err != nil {
			httputil.Logger(r.Context()).WithError(err).Error("federation hierarchy failed")
			httputil.WriteError(w, httputil.Unknown())
			return
		}
		httputil.WriteJSON(w, http.StatusOK, answer)
	}).Methods(http.MethodGet)
	return a.remoteHierarchy
}

// remoteHierarchy asks server about a space.
func (a *API) remoteHierarchy(ctx context.Context, server, roomID string, suggestedOnly bool) (*directory.ServerHierarchy, error) {
	var out directory.ServerHierarchy
	path := "/_matrix/federation/v1/hierarchy/" + esc(roomID) + "?suggested_only=" + strconv.FormatBool(suggestedOnly)
	if err := a.client.Do(ctx, server, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
