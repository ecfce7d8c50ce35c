package clientapi

import (
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// profileKeyName is the grammar of profile field names (spec v1.16):
// the two classic fields, m.tz, or a namespaced custom field.
var profileKeyName = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// profileJSON is a profile with unset fields left out.
type profileJSON struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// getProfile is GET /profile/{userId}.
func (a *API) getProfile(w http.ResponseWriter, r *http.Request) {
	p, err := a.profileOf(r.Context(), mux.Vars(r)["userId"])
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, profileJSON{DisplayName: p.DisplayName, AvatarURL: p.AvatarURL})
}

// getProfileField is GET /profile/{userId}/{keyName}. Only displayname and
// avatar_url are stored; other fields are never set, hence 404.
func (a *API) getProfileField(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	p, err := a.profileOf(r.Context(), vars["userId"])
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	key := vars["keyName"]
	var value string
	switch key {
	case "displayname":
		value = p.DisplayName
	case "avatar_url":
		value = p.AvatarURL
	}
	if value == "" {
		httputil.WriteError(w, httputil.NotFound("the user has no "+key))
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]string{key: value})
}

// profileFieldAccess checks a write to a profile field: the caller's own
// profile, and a field this server stores. It answers and returns false
// when the write cannot go ahead.
func profileFieldAccess(w http.ResponseWriter, r *http.Request, dev *users.Device) (string, bool) {
	vars := mux.Vars(r)
	if vars["userId"] != dev.UserID {
		httputil.WriteError(w, httputil.Forbidden("you can only change your own profile"))
		return "", false
	}
	key := vars["keyName"]
	if !profileKeyName.MatchString(key) {
		httputil.WriteError(w, httputil.InvalidParam("invalid profile field name"))
		return "", false
	}
	return key, true
}

// setProfileField is PUT /profile/{userId}/{keyName}.
func (a *API) setProfileField(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	key, ok := profileFieldAccess(w, r, dev)
	if !ok {
		return
	}
	if key != "displayname" && key != "avatar_url" {
		// As the m.profile_fields capability says.
		httputil.WriteError(w, httputil.Forbidden("only displayname and avatar_url can be set on this server"))
		return
	}
	var body map[string]json.RawMessage
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	raw, ok := body[key]
	if !ok {
		httputil.WriteError(w, missingParam(key+" is required"))
		return
	}
	var value string
	if string(raw) == "null" || json.Unmarshal(raw, &value) != nil {
		httputil.WriteError(w, httputil.BadJSON(key+" must be a string"))
		return
	}
	var err error
	if key == "displayname" {
		err = a.users.SetDisplayName(r.Context(), dev, value)
	} else {
		err = a.users.SetAvatarURL(r.Context(), dev, value)
	}
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// deleteProfileField is DELETE /profile/{userId}/{keyName}. Deleting a
// field that is not set (as every custom field is) succeeds.
func (a *API) deleteProfileField(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	key, ok := profileFieldAccess(w, r, dev)
	if !ok {
		return
	}
	var err error
	switch key {
	case "displayname":
		err = a.users.SetDisplayName(r.Context(), dev, "")
	case "avatar_url":
		err = a.users.SetAvatarURL(r.Context(), dev, "")
	}
	if err != nil {
		writeUsersError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
