package httputil

import (
	"net/http"

	"github.com/gorilla/mux"
)

// NewRouter returns a router whose unknown paths answer 404 M_UNRECOGNIZED
// and whose known paths with the wrong method answer 405 M_UNRECOGNIZED, as
// the spec asks of servers.
func NewRouter() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, Unrecognized("unrecognized request"))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, NewError(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "method not allowed for this endpoint"))
	})
	return r
}
