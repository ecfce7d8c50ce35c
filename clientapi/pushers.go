package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/push"
	"github.com/parley-chat/parley/homeserver/users"
)

// getPushers is GET /pushers.
func (p *pushAPI) getPushers(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	ps, err := p.svc.Pushers(r.Context(), dev.UserID)
	if err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"pushers": ps})
}

// setPusher is POST /pushers/set: create or replace a pusher, or delete it
// with "kind": null.
func (p *pushAPI) setPusher(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	body, e := httputil.ReadBody(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	// An absent kind is a missing parameter; null is a deletion. Only the
	// raw object tells them apart.
	var keys map[string]json.RawMessage
	if e := httputil.DecodeJSON(body, &keys); e != nil {
		httputil.WriteError(w, e)
		return
	}
	var req push.PusherRequest
	if e := httputil.DecodeJSON(body, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	kind, present := keys["kind"]
	req.KindPresent = present
	if present && !bytes.Equal(bytes.TrimSpace(kind), []byte("null")) && req.Kind == nil {
		httputil.WriteError(w, httputil.BadJSON("kind must be a string or null"))
		return
	}
	if err := p.svc.SetPusher(r.Context(), dev.UserID, dev.DeviceID, req); err != nil {
		pushError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
