// Package httputil is the HTTP plumbing shared by the client-server and
// server-server APIs: Matrix error bodies, JSON in and out, routers whose
// unknown paths answer M_UNRECOGNIZED, and the request middleware (request
// IDs, access logs, body limits, panic recovery).
package httputil

import (
	"fmt"
	"net/http"
)

// Error is a Matrix error response: {"errcode": "M_...", "error": "..."}
// with its HTTP status. Extra holds additional keys such as retry_after_ms.
type Error struct {
	Status  int
	ErrCode string
	Message string
	Extra   map[string]any
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.ErrCode, e.Message) }

// Body is the JSON object sent to the client.
func (e *Error) Body() map[string]any {
	b := make(map[string]any, 2+len(e.Extra))
	for k, v := range e.Extra {
		b[k] = v
	}
	b["errcode"] = e.ErrCode
	b["error"] = e.Message
	return b
}

// NewError builds an Error with a formatted message.
func NewError(status int, errcode, format string, args ...any) *Error {
	return &Error{Status: status, ErrCode: errcode, Message: fmt.Sprintf(format, args...)}
}

// The errors every API uses. Handlers build the rest with NewError.
func Unrecognized(msg string) *Error {
	return NewError(http.StatusNotFound, "M_UNRECOGNIZED", "%s", msg)
}

// NotFound is 404 M_NOT_FOUND.
func NotFound(msg string) *Error { return NewError(http.StatusNotFound, "M_NOT_FOUND", "%s", msg) }

// Forbidden is 403 M_FORBIDDEN.
func Forbidden(msg string) *Error { return NewError(http.StatusForbidden, "M_FORBIDDEN", "%s", msg) }

// BadJSON is 400 M_BAD_JSON: valid JSON of the wrong shape.
func BadJSON(msg string) *Error { return NewError(http.StatusBadRequest, "M_BAD_JSON", "%s", msg) }

// NotJSON is 400 M_NOT_JSON: the body does not parse as JSON.
func NotJSON(msg string) *Error { return NewError(http.StatusBadRequest, "M_NOT_JSON", "%s", msg) }

// InvalidParam is 400 M_INVALID_PARAM.
func InvalidParam(msg string) *Error {
	return NewError(http.StatusBadRequest, "M_INVALID_PARAM", "%s", msg)
}

// TooLarge is 413 M_TOO_LARGE.
func TooLarge(msg string) *Error {
	return NewError(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "%s", msg)
}

// Unknown is 500 M_UNKNOWN: our fault, details only in the log.
func Unknown() *Error {
	return NewError(http.StatusInternalServerError, "M_UNKNOWN", "internal server error")
}
