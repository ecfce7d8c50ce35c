package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley/storage"
)

// PusherInfo is a pusher as GET /pushers shows it.
type PusherInfo struct {
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// PusherRequest is the body of POST /pushers/set. Kind is nil for JSON
// null (delete the pusher).
type PusherRequest struct {
	PushKey           string          `json:"pushkey"`
	Kind              *string         `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
	// KindPresent tells an absent kind (an error) from null; the client
	// API sets it.
	KindPresent bool `json:"-"`
}

// Limits the spec sets on pushers, and ours on how many a user may have.
const (
	maxPushKeyBytes   = 512
	maxAppIDChars     = 64
	maxPushersPerUser = 20
)

// notifyPath is the path every push gateway URL must have.
const notifyPath = "/_matrix/push/v1/notify"

// Pushers lists the user's pushers.
func (s *Service) Pushers(ctx context.Context, userID string) ([]PusherInfo, error) {
	ps, err := s.db.Pushers(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]PusherInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, PusherInfo{PushKey: p.PushKey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: json.RawMessage(p.Data)})
	}
	return out, nil
}

// SetPusher creates, replaces or (kind null) deletes one of the user's
// pushers. Errors wrap ErrMissingParam or ErrInvalid.
func (s *Service) SetPusher(ctx context.Context, userID, deviceID string, req PusherRequest) error {
	var missing []string
	if req.PushKey == "" {
		missing = append(missing, "pushkey")
	}
	if req.AppID == "" {
		missing = append(missing, "app_id")
	}
	if !req.KindPresent {
		missing = append(missing, "kind")
	}
	if len(missing) > 0 {
		return missingParams(missing)
	}
	if len(req.PushKey) > maxPushKeyBytes {
		return invalidf("pushkey is longer than %d bytes", maxPushKeyBytes)
	}
	if utf8.RuneCountInString(req.AppID) > maxAppIDChars {
		return invalidf("app_id is longer than %d characters", maxAppIDChars)
	}
	if req.Kind == nil {
		// Deleting a pusher that does not exist is not an error: the
		// caller's wish holds either way.
		_, err := s.db.DeletePusher(ctx, userID, req.AppID, req.PushKey)
		return err
	}
	if *req.Kind != "http" {
		return invalidf("unsupported pusher kind %q: this server has http pushers only", *req.Kind)
	}
	if req.AppDisplayName == "" {
		missing = append(missing, "app_display_name")
	}
	if req.DeviceDisplayName == "" {
		missing = append(missing, "device_display_name")
	}
	if req.Lang == "" {
		missing = append(missing, "lang")
	}
	data := bytes.TrimSpace(req.Data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		missing = append(missing, "data")
	}
	if len(missing) > 0 {
		return missingParams(missing)
	}
	var d map[string]json.RawMessage
	if json.Unmarshal(data, &d) != nil || d == nil {
		return invalidf("data must be an object")
	}
	var gw string
	if json.Unmarshal(d["url"], &gw) != nil || gw == "" {
		return invalidf("data.url is required for http pushers")
	}
	u, err := url.Parse(gw)
	// The spec asks for HTTPS; plain HTTP is accepted for gateways on the
	// same host or network (allowed or not by push.allow_private_addresses).
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return invalidf("data.url must be an http(s) URL")
	}
	if u.Path != notifyPath {
		return invalidf("data.url must have the path %s", notifyPath)
	}
	var format string
	if f, ok := d["format"]; ok {
		if json.Unmarshal(f, &format) != nil || format != "event_id_only" {
			return invalidf("data.format must be \"event_id_only\" when given")
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return invalidf("data is not valid JSON")
	}
	existing, err := s.db.Pushers(ctx, userID)
	if err != nil {
		return err
	}
	isNew := true
	for _, p := range existing {
		if p.AppID == req.AppID && p.PushKey == req.PushKey {
			isNew = false
		}
	}
	if isNew && len(existing) >= maxPushersPerUser {
		return invalidf("too many pushers (at most %d)", maxPushersPerUser)
	}
	return s.db.SetPusher(ctx, storage.Pusher{
		UserID: userID, AppID: req.AppID, PushKey: req.PushKey, Kind: *req.Kind,
		AppDisplayName: req.AppDisplayName, DeviceDisplayName: req.DeviceDisplayName, ProfileTag: req.ProfileTag,
		Lang: req.Lang, Data: compact.String(), PushKeyTS: s.cfg.Now().Unix(), DeviceID: deviceID,
	}, req.Append)
}

func missingParams(names []string) error {
	return fmt.Errorf("%w: %s", ErrMissingParam, strings.Join(names, ", "))
}

// DevicesDeleted removes the pushers the deleted devices set: their
// notifications would go to devices that are logged out.
func (s *Service) DevicesDeleted(ctx context.Context, userID string, deviceIDs []string) {
	if err := s.db.DeleteDevicePushers(ctx, userID, deviceIDs); err != nil {
		s.log.WithError(err).Warn("push: removing the pushers of deleted devices")
	}
}
