package e2ee

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
)

// MaxToDevicePerSync is how many to-device messages one /sync response
// carries at most (the spec recommends 100); the rest come next time.
const MaxToDevicePerSync = 100

// toDeviceEvent is a to-device message as /sync delivers it.
type toDeviceEvent struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// SendToDevice answers PUT /sendToDevice/{eventType}/{txnId} for the
// sending device: messages maps user ID → device ID (or "*" for all the
// user's devices) → content. A retried request (same device, event type
// and transaction ID) delivers nothing again. Messages for local devices
// are queued for their /sync; those for remote users go to RemoteToDevice,
// or are dropped (and logged) without federation. Messages for unknown
// local devices and malformed user IDs are dropped.
func (s *Service) SendToDevice(ctx context.Context, senderUser, senderDevice, eventType, txnID string, messages map[string]map[string]json.RawMessage) error {
	txn := &storage.ToDeviceTxn{UserID: senderUser, DeviceID: senderDevice, EventType: eventType, TxnID: txnID, TS: time.Now().UnixMilli()}
	return s.deliver(ctx, senderUser, eventType, txn, messages, true)
}

// DeliverToDevice queues to-device messages from a remote server's user
// (an m.direct_to_device EDU) for local devices: user ID → device ID or
// "*" → content. messageID deduplicates EDUs the remote server sends
// again; messages for remote users are ignored.
func (s *Service) DeliverToDevice(ctx context.Context, sender, eventType, messageID string, messages map[string]map[string]json.RawMessage) error {
	var txn *storage.ToDeviceTxn
	if messageID != "" {
		txn = &storage.ToDeviceTxn{UserID: sender, DeviceID: "", EventType: eventType, TxnID: messageID, TS: time.Now().UnixMilli()}
	}
	return s.deliver(ctx, sender, eventType, txn, messages, false)
}

func (s *Service) deliver(ctx context.Context, sender, eventType string, txn *storage.ToDeviceTxn,
	messages map[string]map[string]json.RawMessage, forwardRemote bool) error {
	if eventType == "" {
		return fmt.Errorf("%w: the event type must not be empty", ErrInvalidParam)
	}
	var (
		local      []storage.ToDeviceMessage
		recipients []string
		remote     = map[string]map[string]map[string]json.RawMessage{}
	)
	for _, user := range sortedKeys(messages) {
		devices := messages[user]
		for _, device := range sortedKeys(devices) {
			if t := bytes.TrimLeft(devices[device], " \t\r\n"); len(t) == 0 || t[0] != '{' {
				return fmt.Errorf("%w: the message for %s %s is not a JSON object", ErrBadJSON, user, device)
			}
		}
		localpart, isLocal := s.localpart(user)
		if !isLocal {
			server, ok := serverOf(user)
			if !ok {
				s.log.WithField("user_id", user).Debug("e2ee: dropping a to-device message for a malformed user ID")
				continue
			}
			if forwardRemote {
				if remote[server] == nil {
					remote[server] = map[string]map[string]json.RawMessage{}
				}
				remote[server][user] = devices
			}
			continue
		}
		known, err := s.db.Devices(ctx, localpart)
		if err != nil {
			return err
		}
		exists := map[string]bool{}
		for _, d := range known {
			exists[d.DeviceID] = true
		}
		before := len(local)
		for _, device := range sortedKeys(devices) {
			var compact bytes.Buffer
			if err := json.Compact(&compact, devices[device]); err != nil {
				return fmt.Errorf("%w: the message for %s %s: %v", ErrBadJSON, user, device, err)
			}
			targets := []string{device}
			if device == "*" {
				targets = targets[:0]
				for _, d := range known {
					targets = append(targets, d.DeviceID)
				}
			} else if !exists[device] {
				continue
			}
			for _, d := range targets {
				local = append(local, storage.ToDeviceMessage{UserID: user, DeviceID: d, Sender: sender, Type: eventType, Content: compact.String()})
			}
		}
		if len(local) > before {
			recipients = append(recipients, user)
		}
	}
	_, duplicate, err := s.db.QueueToDevice(ctx, txn, local)
	if err != nil {
		return err
	}
	if duplicate {
		return nil
	}
	if f := s.toDeviceObserver.Load(); f != nil {
		for _, m := range local {
			(*f)(m)
		}
	}
	if len(recipients) > 0 && s.notifier != nil {
		s.notifier.Wake(recipients...)
	}
	if len(remote) == 0 {
		return nil
	}
	rtd := s.remoteToDevice()
	for _, server := range sortedKeys(remote) {
		if rtd == nil {
			s.log.WithField("server", server).WithField("type", eventType).
				Info("e2ee: dropping to-device messages for a remote server: federation is not available")
			continue
		}
		if err := rtd.SendToDevice(ctx, server, sender, eventType, newMessageID(), remote[server]); err != nil {
			// The local part is committed and the request cannot be
			// retried usefully (its transaction ID is used up), so the
			// failure is logged rather than returned.
			s.log.WithError(err).WithField("server", server).Warn("e2ee: queueing to-device messages for a remote server")
		}
	}
	return nil
}

// newMessageID returns a random message ID for an m.direct_to_device EDU.
func newMessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// toDeviceExtension fills to_device. Its position is the to-device
// stream's; syncing from a token acknowledges (deletes) the device's
// messages up to the token's position.
type toDeviceExtension struct{ s *Service }

func (e toDeviceExtension) CurrentPos(ctx context.Context) (int64, error) {
	return e.s.db.StreamPosition(ctx, storage.StreamToDevice)
}

// Fill delivers everything pending in (from, to]; the sync service calls
// FillPartial, which caps the number of messages.
func (e toDeviceExtension) Fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (bool, error) {
	_, changed, err := e.fill(ctx, req, from, to, resp, math.MaxInt32)
	return changed, err
}

// FillPartial delivers up to MaxToDevicePerSync messages and returns the
// position of the last one when it had to stop short of to.
func (e toDeviceExtension) FillPartial(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (int64, bool, error) {
	return e.fill(ctx, req, from, to, resp, MaxToDevicePerSync)
}

func (e toDeviceExtension) fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response, limit int) (int64, bool, error) {
	user, device := req.Viewer.UserID, req.Viewer.DeviceID
	if req.Since != nil && from > 0 {
		// The client got everything up to its since token: that is the
		// acknowledgement the spec describes.
		if err := e.s.db.AckToDevice(ctx, user, device, from); err != nil {
			return from, false, err
		}
	}
	if to <= from {
		return to, false, nil
	}
	msgs, err := e.s.db.PendingToDevice(ctx, user, device, from, to, limit)
	if err != nil {
		return from, false, err
	}
	for _, m := range msgs {
		ev, err := json.Marshal(toDeviceEvent{Sender: m.Sender, Type: m.Type, Content: json.RawMessage(m.Content)})
		if err != nil {
			return from, false, err
		}
		resp.ToDevice.Events = append(resp.ToDevice.Events, ev)
	}
	reached := to
	if len(msgs) == limit {
		reached = msgs[len(msgs)-1].StreamPos
	}
	return reached, len(msgs) > 0, nil
}

// SetToDeviceObserver installs a function told of every to-device message
// stored for a local device.
func (s *Service) SetToDeviceObserver(f func(storage.ToDeviceMessage)) { s.toDeviceObserver.Store(&f) }
