package federation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/federation/fedclient"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// QueryProfile fetches a remote user's profile from their server
// (GET /_matrix/federation/v1/query/profile).
func (a *API) QueryProfile(ctx context.Context, userID string) (*users.Profile, error) {
	i := strings.IndexByte(userID, ':')
	if i < 0 {
		return nil, fmt.Errorf("%w: invalid user ID", users.ErrNotFound)
	}
	var resp struct {
		DisplayName string `json:"displayname"`
		AvatarURL   string `json:"avatar_url"`
	}
	err := a.client.Do(ctx, userID[i+1:], http.MethodGet, "/_matrix/federation/v1/query/profile?user_id="+url.QueryEscape(userID), nil, &resp)
	var fe *fedclient.Error
	if errors.As(err, &fe) && fe.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %s has no profile on its server", users.ErrNotFound, userID)
	}
	if err != nil {
		// An unreachable or failing server: for the client the profile
		// cannot be found, which is what the spec lets it expect.
		return nil, fmt.Errorf("%w: %v", users.ErrNotFound, err)
	}
	return &users.Profile{DisplayName: resp.DisplayName, AvatarURL: resp.AvatarURL}, nil
}

// OpenID serves GET /_matrix/federation/v1/openid/userinfo: a third party
// holding a user's OpenID token learns whose it is. The token is the
// authentication, so the route needs no X-Matrix signature.
func (a *API) OpenID(r *mux.Router, accounts *users.Service) {
	r.HandleFunc("/_matrix/federation/v1/openid/userinfo", func(w http.ResponseWriter, req *http.Request) {
		userID, err := accounts.OpenIDUser(req.Context(), req.URL.Query().Get("access_token"))
		if err != nil {
			httputil.WriteError(w, httputil.NewError(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "unknown or expired access token"))
			return
		}
		httputil.WriteJSON(w, http.StatusOK, map[string]string{"sub": userID})
	}).Methods(http.MethodGet)
}
