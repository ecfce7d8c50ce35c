package clientapi

import (
	"context"
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

// writeUsersResult answers 200 with v, or the users service's err.
func writeUsersResult(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, v)
}

// putOwnJSON serves the PUT endpoints of the caller's own account data and
// tags: the body must be a JSON object, which set stores under the room of
// the path (none for global account data) and the path variable key names;
// the answer is {}.
func putOwnJSON(w http.ResponseWriter, r *http.Request, dev *users.Device, key string,
	set func(ctx context.Context, dev *users.Device, roomID, key string, content []byte) error) {
	if !ownUser(w, r, dev) {
		return
	}
	var content json.RawMessage
	if e := httputil.ReadJSON(r, &content); e != nil {
		httputil.WriteError(w, e)
		return
	}
	vars := mux.Vars(r)
	writeUsersResult(w, r, struct{}{}, set(r.Context(), dev, vars["roomId"], vars[key], content))
}

// getAccountData is GET /user/{userId}/account_data/{type} and its
// per-room form /user/{userId}/rooms/{roomId}/account_data/{type}.
func (a *API) getAccountData(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	vars := mux.Vars(r)
	content, err := a.users.AccountData(r.Context(), dev, vars["roomId"], vars["type"])
	writeUsersResult(w, r, content, err)
}

// putAccountData is PUT /user/{userId}/account_data/{type} and its
// per-room form.
func (a *API) putAccountData(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	putOwnJSON(w, r, dev, "type", a.users.SetAccountData)
}

// getTags is GET /user/{userId}/rooms/{roomId}/tags.
func (a *API) getTags(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	tags, err := a.users.Tags(r.Context(), dev, mux.Vars(r)["roomId"])
	writeUsersResult(w, r, map[string]any{"tags": tags}, err)
}

// putTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) putTag(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	putOwnJSON(w, r, dev, "tag", a.users.SetTag)
}

// deleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) deleteTag(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	vars := mux.Vars(r)
	writeUsersResult(w, r, struct{}{}, a.users.RemoveTag(r.Context(), dev, vars["roomId"], vars["tag"]))
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
	writeUsersResult(w, r, map[string]string{"filter_id": id}, err)
}

// getFilter is GET /user/{userId}/filter/{filterId}.
func (a *API) getFilter(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	if !ownUser(w, r, dev) {
		return
	}
	f, err := a.users.Filter(r.Context(), dev, mux.Vars(r)["filterId"])
	writeUsersResult(w, r, f, err)
}
