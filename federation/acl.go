package federation

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
)

// ACLChecker says whether a room's server ACL lets a server in.
type ACLChecker interface {
	ServerAllowed(ctx context.Context, roomID, server string) bool
}

// UseRoomACL refuses every authenticated request about a room (a path
// with a room ID) from a server the room's m.room.server_acl denies, with
// 403 M_FORBIDDEN. PDUs in transactions are checked by the room engine.
// Call after Register.
func (a *API) UseRoomACL(acl ACLChecker) {
	a.authed.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if roomID := mux.Vars(r)["roomId"]; roomID != "" && !acl.ServerAllowed(r.Context(), roomID, origin(r)) {
				httputil.WriteError(w, httputil.Forbidden("the room's server ACL denies this server"))
				return
			}
			next.ServeHTTP(w, r)
		})
	})
}
