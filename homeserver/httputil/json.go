package httputil

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// WriteJSON sends v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"errcode":"M_UNKNOWN","error":"internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteError sends e as a Matrix error response.
func WriteError(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Status, e.Body())
}

// ReadBody reads the whole request body, mapping a body over the limit set
// by the BodyLimit middleware to 413 M_TOO_LARGE.
func ReadBody(r *http.Request) ([]byte, *Error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, TooLarge("request body too large")
		}
		return nil, NotJSON("could not read the request body")
	}
	return body, nil
}

// ReadJSON decodes the request body into v: 413 M_TOO_LARGE over the limit,
// M_NOT_JSON when it does not parse, M_BAD_JSON when its shape is wrong
// (including a body that is not a JSON object when v is a struct or map).
func ReadJSON(r *http.Request, v any) *Error {
	body, e := ReadBody(r)
	if e != nil {
		return e
	}
	return DecodeJSON(body, v)
}

// DecodeJSON is ReadJSON for a body already read.
func DecodeJSON(body []byte, v any) *Error {
	if !json.Valid(body) {
		return NotJSON("request body is not valid JSON")
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return BadJSON("request body must be a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return BadJSON("wrong type for " + te.Field + ": want " + te.Type.String())
		}
		return BadJSON(err.Error())
	}
	return nil
}
