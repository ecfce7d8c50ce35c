package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/receipts"
	"github.com/parley-chat/parley/homeserver/users"
)

// sendReceipt is POST /rooms/{roomId}/receipt/{receiptType}/{eventId}:
// m.read or m.read.private, optionally threaded, or m.fully_read, which
// moves the fully read marker as /read_markers does.
func (a *API) sendReceipt(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	vars := mux.Vars(r)
	body, e := httputil.ReadBody(r)
	if e != nil {
		httputil.WriteError(w, e)
		return
	}
	// The body is required by the spec, but some clients send none when
	// they have no thread to name.
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var req struct {
		ThreadID json.RawMessage `json:"thread_id"`
	}
	if e := httputil.DecodeJSON(body, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	threadID := ""
	if req.ThreadID != nil {
		if json.Unmarshal(req.ThreadID, &threadID) != nil || threadID == "" {
			httputil.WriteError(w, httputil.InvalidParam("thread_id must be a non-empty string"))
			return
		}
	}
	roomID, eventID := vars["roomId"], vars["eventId"]
	if vars["receiptType"] == users.FullyReadType {
		if threadID != "" {
			httputil.WriteError(w, httputil.InvalidParam("m.fully_read takes no thread_id"))
			return
		}
		if err := a.setFullyRead(r, dev, roomID, eventID); err != nil {
			writeEphemeralError(w, r, err)
			return
		}
		httputil.WriteJSON(w, http.StatusOK, struct{}{})
		return
	}
	if err := a.cfg.Ephemeral.Receipts.Send(r.Context(), roomID, dev.UserID, vars["receiptType"], eventID, threadID); err != nil {
		writeEphemeralError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}

// setFullyRead moves the fully read marker after checking that the event
// belongs to a room the user is joined to. The marker only moves forwards:
// a client that loads history late must not pull it back.
func (a *API) setFullyRead(r *http.Request, dev *users.Device, roomID, eventID string) error {
	ctx, rs := r.Context(), a.cfg.Ephemeral.Receipts
	row, err := rs.CheckEvent(ctx, roomID, dev.UserID, eventID)
	if err != nil {
		return err
	}
	if old, err := a.users.AccountData(ctx, dev, roomID, users.FullyReadType); err == nil {
		var marker struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(old, &marker) == nil && marker.EventID != "" && marker.EventID != eventID {
			if oldRow, err := rs.CheckEvent(ctx, roomID, dev.UserID, marker.EventID); err == nil && oldRow.StreamPos > row.StreamPos {
				return nil
			}
		}
	}
	return a.users.SetFullyRead(ctx, dev, roomID, eventID)
}

type readMarkersRequest struct {
	FullyRead   string `json:"m.fully_read"`
	Read        string `json:"m.read"`
	ReadPrivate string `json:"m.read.private"`
}

// setReadMarkers is POST /rooms/{roomId}/read_markers: the fully read
// marker and, in the same call, the read receipts (unthreaded).
func (a *API) setReadMarkers(w http.ResponseWriter, r *http.Request, dev *users.Device) {
	roomID := mux.Vars(r)["roomId"]
	var req readMarkersRequest
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.FullyRead != "" {
		if err := a.setFullyRead(r, dev, roomID, req.FullyRead); err != nil {
			writeEphemeralError(w, r, err)
			return
		}
	}
	for _, rc := range []struct{ typ, eventID string }{{receipts.Read, req.Read}, {receipts.ReadPrivate, req.ReadPrivate}} {
		if rc.eventID == "" {
			continue
		}
		if err := a.cfg.Ephemeral.Receipts.Send(r.Context(), roomID, dev.UserID, rc.typ, rc.eventID, ""); err != nil {
			writeEphemeralError(w, r, err)
			return
		}
	}
	httputil.WriteJSON(w, http.StatusOK, struct{}{})
}
