package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/parley-chat/parley/homeserver/e2ee"
	"github.com/parley-chat/parley/homeserver/httputil"
	"github.com/parley-chat/parley/matrix/id"
)

// EDU types of end-to-end encryption.
const (
	eduDirectToDevice   = "m.direct_to_device"
	eduDeviceListUpdate = "m.device_list_update"
	eduSigningKeyUpdate = "m.signing_key_update"
)

// maxMessageIDLength bounds the message_id of m.direct_to_device (the spec
// says 32 codepoints; some servers send longer ones).
const maxMessageIDLength = 255

// E2EE connects the federation API and the end-to-end encryption service
// both ways: it serves /user/keys/query, /user/keys/claim and
// /user/devices to other servers, handles the m.direct_to_device,
// m.device_list_update and m.signing_key_update EDUs they send, and
// returns the client the service uses to reach them (install it with
// SetRemote and SetRemoteDeviceLists). Call after Rooms, whose sender
// carries the EDUs.
func (a *API) E2EE(svc *e2ee.Service, sender *Sender) *E2EEClient {
	h := &e2eeHandlers{a: a, svc: svc}
	r := a.authed
	r.HandleFunc("/_matrix/federation/v1/user/keys/query", h.queryKeys).Methods(http.MethodPost)
	r.HandleFunc("/_matrix/federation/v1/user/keys/claim", h.claimKeys).Methods(http.MethodPost)
	r.HandleFunc("/_matrix/federation/v1/user/devices/{userId}", h.userDevices).Methods(http.MethodGet)
	a.HandleEDU(eduDirectToDevice, h.directToDevice)
	a.HandleEDU(eduDeviceListUpdate, h.deviceListUpdate)
	a.HandleEDU(eduSigningKeyUpdate, h.signingKeyUpdate)
	return &E2EEClient{a: a, sender: sender}
}

type e2eeHandlers struct {
	a   *API
	svc *e2ee.Service
}

func (h *e2eeHandlers) serverError(w http.ResponseWriter, r *http.Request, err error) {
	httputil.Logger(r.Context()).WithError(err).Error("federation end-to-end request failed")
	httputil.WriteError(w, httputil.Unknown())
}

// queryKeys answers POST /user/keys/query with the keys of our users among
// those asked for; users of other servers are left out.
func (h *e2eeHandlers) queryKeys(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if body.DeviceKeys == nil {
		httputil.WriteError(w, httputil.BadJSON("device_keys is required"))
		return
	}
	res, err := h.svc.QueryLocalKeys(r.Context(), body.DeviceKeys)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, res)
}

// claimKeys answers POST /user/keys/claim: one one-time (or fallback) key
// of each asked device of our users; other users are left out.
func (h *e2eeHandlers) claimKeys(w http.ResponseWriter, r *http.Request) {
	var body struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if e := httputil.ReadJSON(r, &body); e != nil {
		httputil.WriteError(w, e)
		return
	}
	if body.OneTimeKeys == nil {
		httputil.WriteError(w, httputil.BadJSON("one_time_keys is required"))
		return
	}
	claimed, err := h.svc.ClaimLocalKeys(r.Context(), body.OneTimeKeys)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"one_time_keys": claimed})
}

// userDevices answers GET /user/devices/{userId} for one of our users.
func (h *e2eeHandlers) userDevices(w http.ResponseWriter, r *http.Request) {
	userID := mux.Vars(r)["userId"]
	uid, err := id.ParseUserID(userID)
	if err != nil {
		httputil.WriteError(w, httputil.InvalidParam("userId is not a user ID"))
		return
	}
	if string(uid.Server) != h.a.cfg.ServerName {
		httputil.WriteError(w, httputil.NotFound("the user is not a user of this server"))
		return
	}
	dl, err := h.svc.LocalUserDevices(r.Context(), userID)
	if errors.Is(err, e2ee.ErrNotFound) {
		httputil.WriteError(w, httputil.NotFound(err.Error()))
		return
	}
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	httputil.WriteJSON(w, http.StatusOK, dl)
}

// senderOf checks that userID is a user of origin: a server may only
// speak for its own users.
func senderOf(origin, userID string) bool {
	uid, err := id.ParseUserID(userID)
	return err == nil && string(uid.Server) == origin
}

// directToDevice delivers the to-device messages of an m.direct_to_device
// EDU to our users' devices; messages for users of other servers are
// dropped, and so is the whole EDU when its sender is not a user of the
// sending server.
func (h *e2eeHandlers) directToDevice(ctx context.Context, origin string, content json.RawMessage) {
	log := h.a.cfg.Log.WithField("origin", origin).WithField("edu_type", eduDirectToDevice)
	var c struct {
		Sender    string                                `json:"sender"`
		Type      string                                `json:"type"`
		MessageID string                                `json:"message_id"`
		Messages  map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		log.WithError(err).Info("ignoring a malformed EDU")
		return
	}
	switch {
	case !senderOf(origin, c.Sender):
		log.WithField("sender", c.Sender).Info("ignoring to-device messages from a user of another server")
		return
	case c.Type == "" || c.MessageID == "" || len(c.MessageID) > maxMessageIDLength:
		log.Info("ignoring to-device messages without a type or a valid message_id")
		return
	}
	if err := h.svc.DeliverToDevice(ctx, c.Sender, c.Type, c.MessageID, c.Messages); err != nil {
		log.WithError(err).Info("could not deliver to-device messages")
	}
}

func (h *e2eeHandlers) deviceListUpdate(ctx context.Context, origin string, content json.RawMessage) {
	var u e2ee.DeviceListUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		h.a.cfg.Log.WithError(err).WithField("origin", origin).WithField("edu_type", eduDeviceListUpdate).Info("ignoring a malformed EDU")
		return
	}
	h.svc.HandleDeviceListUpdate(ctx, origin, u)
}

func (h *e2eeHandlers) signingKeyUpdate(ctx context.Context, origin string, content json.RawMessage) {
	var u e2ee.SigningKeyUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		h.a.cfg.Log.WithError(err).WithField("origin", origin).WithField("edu_type", eduSigningKeyUpdate).Info("ignoring a malformed EDU")
		return
	}
	h.svc.HandleSigningKeyUpdate(ctx, origin, u)
}

// E2EEClient reaches other servers for the end-to-end encryption service:
// it implements e2ee.RemoteKeys, e2ee.RemoteToDevice and
// e2ee.RemoteDeviceLists.
type E2EEClient struct {
	a      *API
	sender *Sender
}

// QueryKeys asks server for its users' device and cross-signing keys.
func (c *E2EEClient) QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (*e2ee.RemoteQueryResult, error) {
	body := map[string]map[string][]string{"device_keys": {}}
	for user, devices := range deviceKeys {
		if devices == nil {
			devices = []string{}
		}
		body["device_keys"][user] = devices
	}
	var res e2ee.RemoteQueryResult
	if err := c.a.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/user/keys/query", body, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// ClaimKeys claims one-time keys of server's users.
func (c *E2EEClient) ClaimKeys(ctx context.Context, server string, oneTimeKeys map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	var res struct {
		OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	}
	body := map[string]any{"one_time_keys": oneTimeKeys}
	if err := c.a.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/user/keys/claim", body, &res); err != nil {
		return nil, err
	}
	return res.OneTimeKeys, nil
}

// UserDevices fetches a remote user's whole device list from their server.
func (c *E2EEClient) UserDevices(ctx context.Context, userID string) (*e2ee.DeviceList, error) {
	uid, err := id.ParseUserID(userID)
	if err != nil {
		return nil, fmt.Errorf("federation: %w", err)
	}
	var dl e2ee.DeviceList
	if err := c.a.client.Do(ctx, string(uid.Server), http.MethodGet, "/_matrix/federation/v1/user/devices/"+esc(userID), nil, &dl); err != nil {
		return nil, err
	}
	return &dl, nil
}

// SendToDevice queues an m.direct_to_device EDU for server.
func (c *E2EEClient) SendToDevice(_ context.Context, server, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error {
	c.sender.EnqueueEDU([]string{server}, EDU{Type: eduDirectToDevice, Content: map[string]any{
		"sender": sender, "type": eventType, "message_id": messageID, "messages": messages,
	}})
	return nil
}

// SendDeviceListUpdates queues m.device_list_update EDUs, in order, for
// each destination.
func (c *E2EEClient) SendDeviceListUpdates(destinations []string, updates []e2ee.DeviceListUpdate) {
	for _, u := range updates {
		c.sender.EnqueueEDU(destinations, EDU{Type: eduDeviceListUpdate, Content: u})
	}
}

// SendSigningKeyUpdate queues an m.signing_key_update EDU for each
// destination.
func (c *E2EEClient) SendSigningKeyUpdate(destinations []string, update e2ee.SigningKeyUpdate) {
	c.sender.EnqueueEDU(destinations, EDU{Type: eduSigningKeyUpdate, Content: update})
}
