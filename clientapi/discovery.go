package clientapi

import (
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/matrix/event"
)

// wellKnown is GET /.well-known/matrix/client: where clients find the
// client API. It only helps when the server name's host serves it, which
// a reverse proxy in front of Parley does by passing the path through.
func (a *API) wellKnown(w http.ResponseWriter, _ *http.Request) {
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"m.homeserver": map[string]string{"base_url": a.cfg.PublicBaseURL},
	})
}

// capabilities is GET /capabilities.
func (a *API) capabilities(w http.ResponseWriter, _ *http.Request, _ *users.Device) {
	available := make(map[string]string)
	for _, v := range event.KnownRoomVersions() {
		available[string(v)] = "stable"
	}
	defaultVersion := a.cfg.DefaultRoomVersion
	if defaultVersion == "" {
		defaultVersion = string(event.DefaultRoomVersion)
	}
	enabled := func(b bool) map[string]bool { return map[string]bool{"enabled": b} }
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": defaultVersion, "available": available},
		"m.change_password": enabled(true),
		// Display name and avatar are the profile fields users can set;
		// the deprecated per-field capabilities must agree.
		"m.set_displayname": enabled(true),
		"m.set_avatar_url":  enabled(true),
		"m.profile_fields":  map[string]any{"enabled": true, "allowed": []string{"displayname", "avatar_url"}},
		// No third-party identifiers (e-mail, phone) can be bound.
		"m.3pid_changes":    enabled(false),
		"m.get_login_token": enabled(false),
	}})
}
