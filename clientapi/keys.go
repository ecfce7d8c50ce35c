package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/parley-chat/parley/homeserver/e2ee"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/users"
)

// registerKeysRoutes adds the end-to-end encryption endpoints: keys,
// cross-signing, to-device messages and key backups.
func (a *API) registerKeysRoutes(route func(path string, h http.HandlerFunc, methods ...string)) {
	route("/keys/upload", a.authed(a.keysUpload), http.MethodPost)
	route("/keys/query", a.authed(a.keysQuery), http.MethodPost)
	route("/keys/claim", a.authed(a.keysClaim), http.MethodPost)
	route("/keys/changes", a.authed(a.keysChanges), http.MethodGet)
	route("/keys/device_signing/upload", a.authed(a.deviceSigningUpload), http.MethodPost)
	route("/keys/signatures/upload", a.authed(a.signaturesUpload), http.MethodPost)
	route("/sendToDevice/{eventType}/{txnId}", a.authed(a.sendToDevice), http.MethodPut)
	a.registerRoomKeysRoutes(route)
}

// e2eeError maps the e2ee service's errors to Matrix errors; nil means an
// internal error.
func e2eeError(err error) *httputil.Error {
	msg := err.Error()
	var wv *e2ee.WrongVersionError
	switch {
	case errors.As(err, &wv):
		e := httputil.NewError(http.StatusForbidden, "M_WRONG_ROOM_KEYS_VERSION", "%s", msg)
		e.Extra = map[string]any{"current_version": wv.Current}
		return e
	case errors.Is(err, e2ee.ErrBadJSON):
		return httputil.BadJSON(msg)
	case errors.Is(err, e2ee.ErrInvalidParam):
		return httputil.InvalidParam(msg)
	case errors.Is(err, e2ee.ErrMissingParam):
		return missingParam(msg)
	case errors.Is(err, e2ee.ErrInvalidSignature):
		return httputil.NewError(http.StatusBadRequest, "M_INVALID_SIGNATURE", "%s", msg)
	case errors.Is(err, e2ee.ErrForbidden):
		return httputil.Forbidden(msg)
	case errors.Is(err, e2ee.ErrNotFound):
		return httputil.NotFound(msg)
	}
	return nil
}

// writeE2EEError answers with the Matrix error for err, logging
// unexpected ones.
func writeE2EEError(w http.ResponseWriter, r *http.Request, err error) {
	if e := e2eeError(err); e != nil {
		httputil.WriteError(w, e)
		return
	}
	httputil.Logger(r.Context()).WithError(err).Error("end-to-end encryption request failed")
	httputil.WriteError(w, httputil.Unknown())
}

// keysUpload is POST /keys/upload.
func (a *API) keysUpload(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req e2ee.UploadRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	counts, err := a.cfg.E2EE.UploadKeys(r.Context(), dev.UserID, dev.DeviceID, req)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"one_time_key_counts": counts})
}

// remoteTimeout reads the timeout (milliseconds) of a key query or claim.
func remoteTimeout(ms *int64) time.Duration {
	if ms == nil || *ms <= 0 {
		return 0 // the service's default
	}
	return time.Duration(*ms) * time.Millisecond
}

// keysQuery is POST /keys/query.
func (a *API) keysQuery(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
		Timeout    *int64              `json:"timeout"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.DeviceKeys == nil {
		httputil.WriteError(w, missingParam("device_keys is required"))
		return
	}
	resp, err := a.cfg.E2EE.QueryKeys(r.Context(), dev.UserID, req.DeviceKeys, remoteTimeout(req.Timeout))
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, resp)
}

// keysClaim is POST /keys/claim.
func (a *API) keysClaim(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.OneTimeKeys == nil {
		httputil.WriteError(w, missingParam("one_time_keys is required"))
		return
	}
	resp, err := a.cfg.E2EE.ClaimKeys(r.Context(), req.OneTimeKeys, remoteTimeout(req.Timeout))
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, resp)
}

// keysChanges is GET /keys/changes?from=&to=.
func (a *API) keysChanges(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	q := r.URL.Query()
	from := q.Get("from")
	if from == "" {
		httputil.WriteError(w, missingParam("from is required"))
		return
	}
	changed, left, err := a.cfg.E2EE.KeyChanges(r.Context(), dev.UserID, from, q.Get("to"))
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"changed": changed, "left": left})
}

// deviceSigningUpload is POST /keys/device_signing/upload. It needs
// user-interactive authentication unless the user has no master key yet
// or re-uploads exactly the keys stored (the spec's rule since v1.11).
func (a *API) deviceSigningUpload(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req struct {
		MasterKey      json.RawMessage `json:"master_key"`
		SelfSigningKey json.RawMessage `json:"self_signing_key"`
		UserSigningKey json.RawMessage `json:"user_signing_key"`
		Auth           *users.AuthData `json:"auth"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	up, err := e2ee.ParseCrossSigningUpload(dev.UserID, req.MasterKey, req.SelfSigningKey, req.UserSigningKey)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	uia := users.UIARequest{Action: "POST /keys/device_signing/upload", Localpart: dev.Localpart, Flows: users.PasswordFlows, Auth: req.Auth}
	needs, err := a.cfg.E2EE.CrossSigningNeedsAuth(r.Context(), up)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	if needs && !a.userInteractiveAuth(w, r, uia) {
		return
	}
	err = a.cfg.E2EE.UploadCrossSigningKeys(r.Context(), up, needs)
	if errors.Is(err, e2ee.ErrAuthRequired) {
		// Keys were stored between the check and the write: now the
		// upload replaces them.
		if !a.userInteractiveAuth(w, r, uia) {
			return
		}
		err = a.cfg.E2EE.UploadCrossSigningKeys(r.Context(), up, true)
	}
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// signaturesUpload is POST /keys/signatures/upload.
func (a *API) signaturesUpload(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	var req map[string]map[string]json.RawMessage
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	failures, err := a.cfg.E2EE.UploadSignatures(r.Context(), dev.UserID, req)
	if err != nil {
		writeE2EEError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"failures": failures})
}
