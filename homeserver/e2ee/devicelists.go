package e2ee

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
)

// RegisterSync adds the service's two extensions to the sync service:
// device lists (with one-time key counts and unused fallback key types)
// and to-device messages. Call it once at start-up, at the same point of
// the wiring every time, since sync tokens carry extension positions by
// registration order; the indexes are remembered for /keys/changes.
func (s *Service) RegisterSync(svc *sync.Service) {
	s.deviceListIdx = svc.AddExtension(deviceListExtension{s})
	s.toDeviceIdx = svc.AddExtension(toDeviceExtension{s})
}

// deviceListExtension fills device_lists, device_one_time_keys_count and
// device_unused_fallback_key_types. Its position is the device-list
// stream's.
type deviceListExtension struct{ s *Service }

func (e deviceListExtension) CurrentPos(ctx context.Context) (int64, error) {
	return e.s.db.StreamPosition(ctx, storage.StreamDeviceLists)
}

func (e deviceListExtension) Fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (bool, error) {
	user, device := req.Viewer.UserID, req.Viewer.DeviceID
	counts, err := e.s.db.OneTimeKeyCounts(ctx, user, device)
	if err != nil {
		return false, err
	}
	if _, ok := counts[AlgorithmSignedCurve25519]; !ok {
		counts[AlgorithmSignedCurve25519] = 0
	}
	resp.DeviceOneTimeKeysCount = counts
	fallback, err := e.s.db.UnusedFallbackKeyTypes(ctx, user, device)
	if err != nil {
		return false, err
	}
	if fallback == nil {
		fallback = []string{}
	}
	resp.DeviceUnusedFallbackKeyTypes = fallback
	// Key counts change with every claim and never end a long-poll on
	// their own; device lists are for incremental syncs only (the client
	// queries what it needs after an initial sync).
	if req.Since == nil {
		return false, nil
	}
	// Membership changes come from the event stream: from the since
	// token's position to the one this response goes to.
	now, err := sync.ParseToken(resp.NextBatch)
	if err != nil {
		return false, fmt.Errorf("e2ee: next_batch: %w", err)
	}
	changed, left, err := e.s.deviceListDelta(ctx, user, from, to, min(req.Since.Events, now.Events), now.Events)
	if err != nil {
		return false, err
	}
	resp.DeviceLists.Changed = changed
	resp.DeviceLists.Left = left
	return len(changed) > 0 || len(left) > 0, nil
}

// deviceListDelta lists, for userID, the users whose device lists changed
// in the device-list stream range (devFrom, devTo] and who share a room
// with userID (or are userID), plus those who came to share a room in the
// event stream range (evFrom, evTo]; and, in left, those who stopped
// sharing any room with userID in that range.
func (s *Service) deviceListDelta(ctx context.Context, userID string, devFrom, devTo, evFrom, evTo int64) (changed, left []string, err error) {
	set := map[string]bool{}
	if devTo > devFrom {
		users, err := s.db.DeviceListsChangedBetween(ctx, userID, devFrom, devTo)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range users {
			set[u] = true
		}
	}
	if evTo > evFrom {
		joined, gone, err := s.db.SharedRoomChanges(ctx, userID, evFrom, evTo)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range joined {
			set[u] = true
		}
		for _, u := range gone {
			if !set[u] {
				left = append(left, u)
			}
		}
	}
	changed = sortedKeys(set)
	sort.Strings(left)
	return changed, left, nil
}

// KeyChanges answers GET /keys/changes for userID: the users whose device
// lists changed between two sync tokens, as /sync's device_lists would
// have reported them (ErrInvalidParam for a token that does not parse).
// An empty to means up to now.
func (s *Service) KeyChanges(ctx context.Context, userID, from, to string) (changed, left []string, err error) {
	ft, err := sync.ParseToken(from)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: from is not a sync token", ErrInvalidParam)
	}
	// A token from before the extension existed holds no position for it:
	// 0, which reports every change (more than needed, never less).
	ext := func(t sync.Token) int64 {
		if s.deviceListIdx >= 0 && s.deviceListIdx < len(t.Ext) {
			return t.Ext[s.deviceListIdx]
		}
		return 0
	}
	// Without to (which the spec requires but some clients leave out),
	// everything since from.
	devTo, evTo := int64(math.MaxInt64), int64(math.MaxInt64)
	if to != "" {
		tt, err := sync.ParseToken(to)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: to is not a sync token", ErrInvalidParam)
		}
		devTo, evTo = ext(tt), tt.Events
	}
	changed, left, err = s.deviceListDelta(ctx, userID, ext(ft), devTo, ft.Events, evTo)
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	return changed, left, err
}

// RemoteDeviceListChanged records that remote users' device lists or
// cross-signing keys changed (an m.device_list_update or
// m.signing_key_update EDU), so that local users who share a room with them
// see them in device_lists.changed and query their keys again.
func (s *Service) RemoteDeviceListChanged(ctx context.Context, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	if _, err := s.db.MarkDeviceListsChanged(ctx, userIDs...); err != nil {
		return err
	}
	s.deviceListChanged(ctx, userIDs...)
	return nil
}

// DevicesDeleted deletes the keys, one-time and fallback keys and pending
// to-device messages of deleted devices and tells the users who share a
// room with their owner. It is the users service's OnDevicesDeleted hook:
// the devices are gone whatever happens here, so errors are logged.
func (s *Service) DevicesDeleted(ctx context.Context, userID string, deviceIDs []string) {
	if len(deviceIDs) == 0 {
		return
	}
	if _, err := s.db.DeleteE2EDevices(ctx, userID, deviceIDs); err != nil {
		s.log.WithError(err).WithField("user_id", userID).Error("e2ee: deleting the keys of deleted devices")
		return
	}
	s.deviceListChanged(ctx, userID)
	s.publishDevices(ctx, userID, deviceIDs, true)
}

// UserDeactivated deletes everything the service holds for a deactivated
// user: device keys, one-time and fallback keys, to-device messages,
// cross-signing keys and signatures, and key backups. Errors are logged.
func (s *Service) UserDeactivated(ctx context.Context, userID string) {
	if _, err := s.db.DeleteE2EUser(ctx, userID); err != nil {
		s.log.WithError(err).WithField("user_id", userID).Error("e2ee: deleting the keys of a deactivated user")
		return
	}
	s.deviceListChanged(ctx, userID)
}
