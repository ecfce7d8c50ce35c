package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// ownUser answers 403 and returns false unless the {userId} of the path is
// the caller: account data, tags and filters are private to their user.
func ownUser(w http.ResponseWriter, r *http.Request, dev *users.Device) bool {
	if mux.Vars(r)["userId"] != dev.UserID {
		httputil.WriteError(w, httputil.Forbidden("you can only access your own account data and filters"))
		return false
	}
	return true
}

// getAccountData is GET /user/{userId}/account_data/{type} and its
// per-room form /user/{userId}/rooms/{roomId}/account_data/{type}.
func (a *API) getAccountData(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	vars := mux.Vars(r)
	content, err := a.users.AccountData(r.Context(), dev, vars["roomId"], vars["type"])
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, content)
}

// putAccountData is PUT /user/{userId}/account_data/{type} and its
// per-room form.
func (a *API) putAccountData(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	var content json.RawMessage
	if e := httputil.ReadJSON(r, &content); e != nil {
		httputil.WriteError(w, e)
		return
	}
	vars := mux.Vars(r)
	if err := a.users.SetAccountData(r.Context(), dev, vars["roomId"], vars["type"], content); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// getTags is GET /user/{userId}/rooms/{roomId}/tags.
func (a *API) getTags(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	tags, err := a.users.Tags(r.Context(), dev, mux.Vars(r)["roomId"])
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"tags": tags})
}

// putTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) putTag(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	var content json.RawMessage
	if e := httputil.ReadJSON(r, &content); e != nil {
		httputil.WriteError(w, e)
		return
	}
	vars := mux.Vars(r)
	if err := a.users.SetTag(r.Context(), dev, vars["roomId"], vars["tag"], content); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// deleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) deleteTag(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	vars := mux.Vars(r)
	if err := a.users.RemoveTag(r.Context(), dev, vars["roomId"], vars["tag"]); err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// createFilter is POST /user/{userId}/filter.
func (a *API) createFilter(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	body, e := httputil.ReadBody(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	id, err := a.users.CreateFilter(r.Context(), dev, body)
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"filter_id": id})
}

// getFilter is GET /user/{userId}/filter/{filterId}.
func (a *API) getFilter(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	f, err := a.users.Filter(r.Context(), dev, mux.Vars(r)["filterId"])
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, f)
}
