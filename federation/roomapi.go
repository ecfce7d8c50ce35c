package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/federation/xmatrix"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/users"
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// Rooms connects the federation API and the room engine both ways: it
// serves the room endpoints other servers call, and returns the
// rooms.Federation the engine uses to call them. Call after Register.
func (a *API) Rooms(engine *rooms.Engine, db *storage.DB, accounts *users.Service) (rooms.Federation, *Sender) {
	h := &roomHandlers{a: a, engine: engine, db: db, users: accounts}
	r := a.authed
	r.HandleFunc("/_matrix/federation/v1/send/{txnId}", h.send).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v1/make_join/{roomId}/{userId}", h.makeMembership("join")).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/make_leave/{roomId}/{userId}", h.makeMembership("leave")).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/make_knock/{roomId}/{userId}", h.makeMembership("knock")).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/send_knock/{roomId}/{eventId}", h.sendMembership("knock", 2)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v1/send_join/{roomId}/{eventId}", h.sendMembership("join", 1)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v2/send_join/{roomId}/{eventId}", h.sendMembership("join", 2)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v1/send_leave/{roomId}/{eventId}", h.sendMembership("leave", 1)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v2/send_leave/{roomId}/{eventId}", h.sendMembership("leave", 2)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v1/invite/{roomId}/{eventId}", h.invite(1)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v2/invite/{roomId}/{eventId}", h.invite(2)).Methods(http.MethodPut)
	r.HandleFunc("/_matrix/federation/v1/event/{eventId}", h.getEvent).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/state_ids/{roomId}", h.stateIDs).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/state/{roomId}", h.state).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/event_auth/{roomId}/{eventId}", h.eventAuth).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/backfill/{roomId}", h.backfill).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/get_missing_events/{roomId}", h.missingEvents).Methods(http.MethodPost)
	r.HandleFunc("/_matrix/federation/v1/query/directory", h.queryDirectory).Methods(http.MethodGet)
	r.HandleFunc("/_matrix/federation/v1/query/profile", h.queryProfile).Methods(http.MethodGet)
	sender := NewSender(a, db)
	a.senderMu.Lock()
	a.sender = sender
	a.senderMu.Unlock()
	return &roomClient{a: a, sender: sender}, sender
}

type roomHandlers struct {
	a      *API
	engine *rooms.Engine
	db     *storage.DB
	users  *users.Service
}

func origin(r *http.Request) string {
	o, _ := xmatrix.Origin(r.Context())
	return o
}

// writeErr maps room engine errors to federation errors.
func (h *roomHandlers) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	msg := err.Error()
	switch {
	case errors.Is(err, rooms.ErrIncompatibleVersion):
		httputil.WriteError(w, httputil.NewError(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "%s", msg))
	case errors.Is(err, rooms.ErrNotFound):
		httputil.WriteError(w, httputil.NotFound(msg))
	case errors.Is(err, rooms.ErrForbidden), errors.Is(err, rooms.ErrRejected):
		httputil.WriteError(w, httputil.Forbidden(msg))
	case errors.Is(err, rooms.ErrBadRequest), errors.Is(err, event.ErrBadEvent), errors.Is(err, event.ErrBadSignature):
		httputil.WriteError(w, httputil.BadJSON(msg))
	default:
		httputil.Logger(r.Context()).WithError(err).Error("federation request failed")
		httputil.WriteError(w, httputil.Unknown())
	}
}

// roomVersion is the version of a room we hold.
func (h *roomHandlers) roomVersion(ctx context.Context, roomID string) (event.RoomVersion, error) {
	return h.engine.RoomVersion(ctx, roomID)
}

// txn is a transaction as received.
type txn struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []json.RawMessage `json:"edus"`
}

// send receives a transaction: each PDU is checked and handed to the room
// engine on its own, and answered with its own result. A repeated
// transaction gets the stored answer.
func (h *roomHandlers) send(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	o, txnID := origin(r), mux.Vars(r)["txnId"]
	if prev, err := h.db.InboundTxnResponse(ctx, o, txnID); err != nil {
		h.writeErr(w, r, err)
		return
	} else if prev != "" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(prev))
		return
	}
	var t txn
	if e := httputil.ReadJSON(r, &t); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if t.Origin != "" && t.Origin != o {
		httputil.WriteError(w, httputil.Forbidden("the transaction's origin is not the signing server"))
		return
	}
	if len(t.PDUs) > maxPDUsPerTxn || len(t.EDUs) > maxEDUsPerTxn {
		httputil.WriteError(w, httputil.BadJSON("too many PDUs or EDUs in one transaction"))
		return
	}
	for _, raw := range t.EDUs {
		var edu struct {
			Type    string          `json:"edu_type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(raw, &edu) != nil {
			continue
		}
		if handler := h.a.eduHandler(edu.Type); handler != nil {
			handler(ctx, o, edu.Content)
		}
	}
	// The checks of each PDU on its own (format, signatures, hashes) are
	// independent: run them on all cores at once.
	checked := make([]checkedPDU, len(t.PDUs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, raw := range t.PDUs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			checked[i] = h.checkPDU(ctx, raw)
		}()
	}
	wg.Wait()
	// The room engine takes the PDUs that passed, in the order sent, and
	// persists each room's together.
	var evs []*event.Event
	for _, c := range checked {
		if c.err == nil {
			evs = append(evs, c.ev)
		}
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	ingested := h.engine.IngestBatch(ictx, o, evs)
	cancel()
	results := map[string]map[string]string{}
	for _, c := range checked {
		err := c.err
		if err == nil {
			err, ingested = ingested[0], ingested[1:]
		}
		if c.eventID == "" {
			continue // not even an event ID to answer for
		}
		if err != nil {
			results[c.eventID] = map[string]string{"error": err.Error()}
		} else {
			results[c.eventID] = map[string]string{}
		}
	}
	resp, _ := json.Marshal(map[string]any{"pdus": results})
	if err := h.db.StoreInboundTxn(ctx, o, txnID, string(resp)); err != nil {
		h.writeErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(resp)
}

// checkedPDU is a PDU of a transaction after the checks that need no
// room state: the event, or why it failed, and its ID when it can be told.
type checkedPDU struct {
	eventID string
	ev      *event.Event
	err     error
}

// checkPDU runs the checks of one PDU that need no room state.
func (h *roomHandlers) checkPDU(ctx context.Context, raw json.RawMessage) checkedPDU {
	var head struct {
		RoomID string `json:"room_id"`
	}
	if json.Unmarshal(raw, &head) != nil || head.RoomID == "" {
		return checkedPDU{err: errors.New("no room_id")}
	}
	version, err := h.roomVersion(ctx, head.RoomID)
	if err != nil {
		return checkedPDU{err: err} // not a room we are in: nothing to say per event
	}
	ev, err := h.a.CheckPDU(ctx, raw, version)
	if err != nil {
		c := checkedPDU{err: err}
		c.eventID, _ = event.ComputeEventID(raw, mustInfo(version))
		return c
	}
	return checkedPDU{eventID: ev.EventID(), ev: ev}
}

func mustInfo(v event.RoomVersion) event.RoomVersionInfo {
	info, _ := v.Info()
	return info
}

func (h *roomHandlers) makeMembership(membership string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vars := mux.Vars(r)
		userID := vars["userId"]
		if uid, err := id.ParseUserID(userID); err != nil || string(uid.Server) != origin(r) {
			httputil.WriteError(w, httputil.Forbidden("the user is not a user of the requesting server"))
			return
		}
		var supported []string
		if membership == "join" || membership == "knock" {
			supported = r.URL.Query()["ver"]
			if len(supported) == 0 {
				supported = []string{"1"} // servers that send no ver support version 1 only
			}
		}
		version, tmpl, err := h.engine.MakeJoinTemplate(r.Context(), vars["roomId"], userID, membership, supported)
		if err != nil {
			if errors.Is(err, rooms.ErrIncompatibleVersion) {
				e := httputil.NewError(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "%s", err.Error())
				e.Extra = map[string]any{"room_version": string(version)}
				httputil.WriteError(w, e)
				return
			}
			h.writeErr(w, r, err)
			return
		}
		httputil.WriteJSON(w, http.StatusOK, map[string]any{"event": tmpl, "room_version": version})
	}
}

func (h *roomHandlers) sendMembership(membership string, apiVersion int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vars := mux.Vars(r)
		ctx := r.Context()
		version, err := h.roomVersion(ctx, vars["roomId"])
		if err != nil {
			h.writeErr(w, r, err)
			return
		}
		body, e := httputil.ReadBody(r)
		if e != nil {
			httputil.WriteError(w, e)
			return
		}
		ev, err := event.NewEventFromUntrustedJSON(body, version)
		if err == nil {
			// A restricted join that names one of our users as authoriser
			// needs our signature, which the joining server cannot make:
			// add it before checking the signatures.
			if via, ok := authrules.AuthorisingServer(ev); ok && via == h.a.cfg.ServerName {
				if !h.engine.MayAuthoriseJoin(ctx, ev.RoomID(), ev.Sender()) {
					httputil.WriteError(w, httputil.Forbidden("this server will not authorise that join"))
					return
				}
				ev, err = ev.Sign(h.a.cfg.ServerName, h.a.cfg.KeyID, h.a.cfg.Key)
			}
		}
		if err == nil {
			ev, err = h.a.checkParsedPDU(ctx, ev)
		}
		if err != nil {
			h.writeErr(w, r, err)
			return
		}
		if ev.EventID() != vars["eventId"] || ev.RoomID() != vars["roomId"] {
			httputil.WriteError(w, httputil.BadJSON("the event does not match the path"))
			return
		}
		state, chain, signed, err := h.engine.HandleSendJoin(ctx, origin(r), ev, membership)
		if err != nil {
			h.writeErr(w, r, err)
			return
		}
		var resp any = map[string]any{}
		switch membership {
		case "join":
			resp = map[string]any{"origin": h.a.cfg.ServerName, "state": state, "auth_chain": chain,
				"event": json.RawMessage(signed.JSON()), "members_omitted": false}
		case "knock":
			// The knocker sees the room as an invitee would: stripped state.
			resp = map[string]any{"knock_room_state": h.engine.StrippedState(ctx, ev.RoomID())}
		}
		if apiVersion == 1 {
			resp = []any{200, resp} // the v1 endpoints' odd array form
		}
		httputil.WriteJSON(w, http.StatusOK, resp)
	}
}

func (h *roomHandlers) invite(apiVersion int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var req struct {
			Event           json.RawMessage   `json:"event"`
			RoomVersion     event.RoomVersion `json:"room_version"`
			InviteRoomState []json.RawMessage `json:"invite_room_state"`
		}
		body, e := httputil.ReadBody(r)
		if e != nil {
			httputil.WriteError(w, e)
			return
		}
		if apiVersion == 1 {
			// v1 sends the bare event; the room version is 1 or known to us.
			req.Event, req.RoomVersion = body, "1"
			var unsigned struct {
				Unsigned struct {
					InviteRoomState []json.RawMessage `json:"invite_room_state"`
				} `json:"unsigned"`
			}
			_ = json.Unmarshal(body, &unsigned)
			req.InviteRoomState = unsigned.Unsigned.InviteRoomState
		} else if e := httputil.DecodeJSON(body, &req); e != nil {
			httputil.WriteError(w, e)
			return
		}
		if _, err := req.RoomVersion.Info(); err != nil {
			ie := httputil.NewError(http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION", "room version %q is not supported", req.RoomVersion)
			ie.Extra = map[string]any{"room_version": string(req.RoomVersion)}
			httputil.WriteError(w, ie)
			return
		}
		ev, err := h.a.CheckPDU(ctx, req.Event, req.RoomVersion)
		if err != nil {
			h.writeErr(w, r, err)
			return
		}
		signed, err := h.engine.HandleInvite(ctx, origin(r), req.RoomVersion, ev, req.InviteRoomState)
		if err != nil {
			h.writeErr(w, r, err)
			return
		}
		resp := map[string]any{"event": json.RawMessage(signed.JSON())}
		if apiVersion == 1 {
			httputil.WriteJSON(w, http.StatusOK, []any{200, resp})
			return
		}
		httputil.WriteJSON(w, http.StatusOK, resp)
	}
}

func (h *roomHandlers) pduResponse(pdus []json.RawMessage) map[string]any {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return map[string]any{"origin": h.a.cfg.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus}
}

func (h *roomHandlers) getEvent(w http.ResponseWriter, r *http.Request) {
	js, err := h.engine.EventForServer(r.Context(), origin(r), mux.Vars(r)["eventId"])
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, h.pduResponse([]json.RawMessage{js}))
}

func (h *roomHandlers) stateIDs(w http.ResponseWriter, r *http.Request) {
	state, chain, err := h.engine.StateIDsForServer(r.Context(), origin(r), mux.Vars(r)["roomId"], r.URL.Query().Get("event_id"))
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"pdu_ids": nonNilStrings(state), "auth_chain_ids": nonNilStrings(chain)})
}

func (h *roomHandlers) state(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	state, chain, err := h.engine.StateIDsForServer(ctx, origin(r), mux.Vars(r)["roomId"], r.URL.Query().Get("event_id"))
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	pdus, err := h.engine.EventsJSON(ctx, state)
	if err == nil {
		var authChain []json.RawMessage
		if authChain, err = h.engine.EventsJSON(ctx, chain); err == nil {
			httputil.WriteJSON(w, http.StatusOK, map[string]any{"pdus": pdus, "auth_chain": authChain})
			return
		}
	}
	h.writeErr(w, r, err)
}

func (h *roomHandlers) eventAuth(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	vars := mux.Vars(r)
	if _, err := h.engine.EventForServer(ctx, origin(r), vars["eventId"]); err != nil {
		h.writeErr(w, r, err)
		return
	}
	chain, err := h.engine.AuthChain(ctx, []string{vars["eventId"]})
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	evs, err := h.engine.EventsJSON(ctx, chain)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"auth_chain": evs})
}

func (h *roomHandlers) backfill(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		httputil.WriteError(w, httputil.InvalidParam("limit must be a positive integer"))
		return
	}
	pdus, err := h.engine.BackfillForServer(r.Context(), origin(r), mux.Vars(r)["roomId"], q["v"], limit)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, h.pduResponse(pdus))
}

func (h *roomHandlers) missingEvents(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Earliest []string `json:"earliest_events"`
		Latest   []string `json:"latest_events"`
		Limit    int      `json:"limit"`
		MinDepth int64    `json:"min_depth"`
	}
	if e := httputil.ReadJSON(r, &req); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if req.Limit == 0 {
		req.Limit = 10
	}
	evs, err := h.engine.MissingEventsForServer(r.Context(), origin(r), mux.Vars(r)["roomId"], req.Earliest, req.Latest, req.Limit, req.MinDepth)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (h *roomHandlers) queryDirectory(w http.ResponseWriter, r *http.Request) {
	alias := r.URL.Query().Get("room_alias")
	if a, err := id.ParseRoomAlias(alias); err != nil || string(a.Server) != h.a.cfg.ServerName {
		httputil.WriteError(w, httputil.NotFound("not an alias of this server"))
		return
	}
	roomID, err := h.engine.ResolveRoom(r.Context(), alias)
	if err != nil {
		h.writeErr(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"room_id": roomID, "servers": []string{h.a.cfg.ServerName}})
}

func (h *roomHandlers) queryProfile(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := h.users.LocalProfile(r.Context(), q.Get("user_id"))
	if err != nil {
		httputil.WriteError(w, httputil.NotFound("no such user"))
		return
	}
	out := map[string]string{}
	field := q.Get("field")
	if (field == "" || field == "displayname") && p.DisplayName != "" {
		out["displayname"] = p.DisplayName
	}
	if (field == "" || field == "avatar_url") && p.AvatarURL != "" {
		out["avatar_url"] = p.AvatarURL
	}
	httputil.WriteJSON(w, http.StatusOK, out)
}
