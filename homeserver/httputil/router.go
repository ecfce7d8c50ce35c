package httputil

import (
	"net/http"
	"net/url"

	"github.com/gorilla/mux"
)

// NewRouter returns a router whose unknown paths answer 404 M_UNRECOGNIZED
// and whose known paths with the wrong method answer 405 M_UNRECOGNIZED, as
// the spec asks of servers.
//
// Routes match the path as sent, still percent-encoded, and the path
// variables are decoded afterwards: identifiers may hold a slash (the
// event IDs of room version 3 are standard base64), which a client sends
// as %2F and which must stay inside its path segment.
func NewRouter() *mux.Router {
	r := mux.NewRouter()
	r.UseEncodedPath()
	r.Use(decodeVars)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, Unrecognized("unrecognized request"))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, NewError(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "method not allowed for this endpoint"))
	})
	return r
}

// decodeVars percent-decodes the path variables of the matched route.
func decodeVars(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vars := mux.Vars(r)
		if len(vars) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		decoded := make(map[string]string, len(vars))
		for k, v := range vars {
			d, err := url.PathUnescape(v)
			if err != nil { // net/http refuses such paths first; kept as a guard
				WriteError(w, InvalidParam("the path is not correctly percent-encoded"))
				return
			}
			decoded[k] = d
		}
		next.ServeHTTP(w, mux.SetURLVars(r, decoded))
	})
}
