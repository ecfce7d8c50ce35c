package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/parley-chat/parley/storage"
)

// Device lists over federation. Each local user's device changes go to
// every server that shares a room with the user as m.device_list_update
// EDUs, numbered by a per-user sequence (stream_id) and chained by prev_id;
// cross-signing key changes go as m.signing_key_update. In the other
// direction the service caches the device lists of remote users who share
// a room with local users: updates are applied when the cache holds every
// update they depend on, and otherwise the list is fetched again whole
// (/user/devices). Key queries for those users are answered from the cache.

// Limits of the background work.
const (
	// maxConcurrentResyncs bounds the /user/devices requests in flight.
	maxConcurrentResyncs = 8
	// resyncTimeout bounds one resynchronisation.
	resyncTimeout = 30 * time.Second
)

// DeviceListUpdate is the content of an m.device_list_update EDU: one
// change of one device of a user.
type DeviceListUpdate struct {
	UserID            string `json:"user_id"`
	DeviceID          string `json:"device_id"`
	DeviceDisplayName string `json:"device_display_name,omitempty"`
	// StreamID numbers the user's updates; PrevID names the update(s)
	// this one follows, empty for the first.
	StreamID int64   `json:"stream_id"`
	PrevID   []int64 `json:"prev_id,omitempty"`
	Deleted  bool    `json:"deleted,omitempty"`
	// Keys are the device's identity keys, absent when it has none.
	Keys json.RawMessage `json:"keys,omitempty"`
}

// SigningKeyUpdate is the content of an m.signing_key_update EDU: a user's
// new public cross-signing keys.
type SigningKeyUpdate struct {
	UserID         string          `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// RemoteDeviceLists sends local users' device list changes to other
// servers. The federation layer implements it with EDUs, which it queues
// per destination in order.
type RemoteDeviceLists interface {
	// SendDeviceListUpdates queues m.device_list_update EDUs, in order,
	// for each destination.
	SendDeviceListUpdates(destinations []string, updates []DeviceListUpdate)
	// SendSigningKeyUpdate queues an m.signing_key_update EDU.
	SendSigningKeyUpdate(destinations []string, update SigningKeyUpdate)
}

// bgRunner runs goroutines that stop together.
type bgRunner struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

func (b *bgRunner) init() { b.ctx, b.cancel = context.WithCancel(context.Background()) }

// goRun runs fn in a goroutine unless the runner has stopped, and reports
// whether it did.
func (b *bgRunner) goRun(fn func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn(b.ctx)
	}()
	return true
}

func (b *bgRunner) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// lockUser takes the lock that orders userID's device list updates.
func (s *Service) lockUser(userID string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(userID))
	mu := &s.userLocks[h.Sum32()%uint32(len(s.userLocks))]
	mu.Lock()
	return mu.Unlock
}

// remoteServersSharing lists the other servers that have a user in a room
// with userID: where userID's device list changes must go.
func (s *Service) remoteServersSharing(ctx context.Context, userID string) ([]string, error) {
	users, err := s.db.UsersSharingRooms(ctx, userID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, u := range users {
		if server, ok := serverOf(u); ok && server != s.serverName && !seen[server] {
			seen[server] = true
			out = append(out, server)
		}
	}
	sort.Strings(out)
	return out, nil
}

// publishDevices tells other servers that devices of a local user were
// added, changed (new keys or signatures) or deleted. The stream IDs are
// taken even when nobody is told, so that /user/devices always reports the
// position of the latest change. Failures are logged: the change itself is
// committed, and servers that miss an update resynchronise at the next.
func (s *Service) publishDevices(ctx context.Context, userID string, deviceIDs []string, deleted bool) {
	if len(deviceIDs) == 0 {
		return
	}
	localpart, ok := s.localpart(userID)
	if !ok {
		return
	}
	log := s.log.WithField("user_id", userID)
	unlock := s.lockUser(userID)
	defer unlock()
	last, err := s.db.NextDeviceListStreamIDs(ctx, userID, len(deviceIDs))
	if err != nil {
		log.WithError(err).Warn("e2ee: numbering a device list update")
		return
	}
	rl := s.remoteDeviceLists()
	if rl == nil {
		return
	}
	servers, err := s.remoteServersSharing(ctx, userID)
	if err != nil {
		log.WithError(err).Warn("e2ee: listing the servers to send a device list update to")
		return
	}
	if len(servers) == 0 {
		return
	}
	var keys map[string]json.RawMessage
	names := map[string]string{}
	if !deleted {
		res, err := s.QueryLocalKeys(ctx, map[string][]string{userID: deviceIDs})
		if err != nil {
			log.WithError(err).Warn("e2ee: loading keys for a device list update")
			return
		}
		keys = res.DeviceKeys[userID]
		devices, err := s.db.Devices(ctx, localpart)
		if err != nil {
			log.WithError(err).Warn("e2ee: loading devices for a device list update")
			return
		}
		for _, d := range devices {
			names[d.DeviceID] = d.DisplayName
		}
	}
	first := last - int64(len(deviceIDs)) + 1
	updates := make([]DeviceListUpdate, 0, len(deviceIDs))
	for i, d := range deviceIDs {
		u := DeviceListUpdate{UserID: userID, DeviceID: d, StreamID: first + int64(i), Deleted: deleted,
			DeviceDisplayName: names[d], Keys: keys[d]}
		if u.StreamID > 1 {
			u.PrevID = []int64{u.StreamID - 1}
		}
		updates = append(updates, u)
	}
	rl.SendDeviceListUpdates(servers, updates)
}

// publishSigningKeys sends a local user's public cross-signing keys to the
// servers that share a room with the user.
func (s *Service) publishSigningKeys(ctx context.Context, userID string) {
	rl := s.remoteDeviceLists()
	if rl == nil {
		return
	}
	log := s.log.WithField("user_id", userID)
	servers, err := s.remoteServersSharing(ctx, userID)
	if err != nil {
		log.WithError(err).Warn("e2ee: listing the servers to send a signing key update to")
		return
	}
	if len(servers) == 0 {
		return
	}
	res, err := s.QueryLocalKeys(ctx, map[string][]string{userID: nil})
	if err != nil {
		log.WithError(err).Warn("e2ee: loading cross-signing keys for a signing key update")
		return
	}
	if res.MasterKeys[userID] == nil && res.SelfSigningKeys[userID] == nil {
		return
	}
	rl.SendSigningKeyUpdate(servers, SigningKeyUpdate{UserID: userID,
		MasterKey: res.MasterKeys[userID], SelfSigningKey: res.SelfSigningKeys[userID]})
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// followedRemoteUser reports whether userID is a user of origin (not of
// this server) who shares a room with a local user: the only users whose
// device lists origin may update here.
func (s *Service) followedRemoteUser(ctx context.Context, origin, userID string) bool {
	server, ok := serverOf(userID)
	if !ok || server != origin || server == s.serverName {
		s.log.WithField("origin", origin).WithField("user_id", userID).
			Info("e2ee: ignoring an update of a user of another server")
		return false
	}
	shared, err := s.db.SharingRoomsWithServer(ctx, s.serverName, []string{userID})
	if err != nil {
		s.log.WithError(err).Warn("e2ee: checking the rooms of a remote user")
		return false
	}
	return shared[userID]
}

// HandleDeviceListUpdate applies an m.device_list_update EDU from the
// server origin to the cached device list of one of its users, or, when
// an update was missed, has the list fetched again. Local users who share
// a room with the user see the change in their next /sync. Updates for
// users of other servers, for users nobody here shares a room with, or
// with keys that are not the device's own are ignored.
func (s *Service) HandleDeviceListUpdate(ctx context.Context, origin string, u DeviceListUpdate) {
	if u.DeviceID == "" || !s.followedRemoteUser(ctx, origin, u.UserID) {
		return
	}
	upd := storage.RemoteDeviceUpdate{UserID: u.UserID, DeviceID: u.DeviceID, DisplayName: u.DeviceDisplayName,
		StreamID: u.StreamID, PrevIDs: u.PrevID, Deleted: u.Deleted}
	if !u.Deleted && !isNull(u.Keys) {
		canon, _, err := CheckDeviceKeys(u.Keys, u.UserID, u.DeviceID)
		if err != nil {
			s.log.WithError(err).WithField("origin", origin).WithField("user_id", u.UserID).
				Info("e2ee: ignoring a device list update with bad keys")
			return
		}
		upd.KeyJSON = string(canon)
	}
	res, err := s.db.ApplyRemoteDeviceUpdate(ctx, upd, time.Now().UnixMilli())
	if err != nil {
		s.log.WithError(err).WithField("user_id", u.UserID).Warn("e2ee: applying a device list update")
		return
	}
	switch res {
	case storage.RemoteUpdateDuplicate:
		return
	case storage.RemoteUpdateNeedsResync:
		s.scheduleResync(u.UserID)
	}
	// Clients query the keys again: from the cache when the update
	// applied, from the user's server while the list is being fetched.
	if err := s.RemoteDeviceListChanged(ctx, u.UserID); err != nil {
		s.log.WithError(err).WithField("user_id", u.UserID).Warn("e2ee: recording a remote device list change")
	}
}

// checkRemoteCrossSigning validates a remote user's master and
// self-signing keys (either may be absent); the self-signing key must be
// signed by the master key, the given one or else master (canonical JSON,
// "" when unknown). It returns their canonical JSON, "" for absent ones.
func checkRemoteCrossSigning(userID string, masterRaw, sskRaw json.RawMessage, master string) (string, string, error) {
	var masterOut, sskOut string
	var mk *crossSigningKey
	if !isNull(masterRaw) {
		k, err := checkCrossSigningKey(masterRaw, userID, UsageMaster)
		if err != nil {
			return "", "", err
		}
		mk, masterOut = k, string(k.Canon)
	} else if master != "" {
		mk, _ = checkCrossSigningKey([]byte(master), userID, UsageMaster)
	}
	if !isNull(sskRaw) {
		k, err := checkCrossSigningKey(sskRaw, userID, UsageSelfSigning)
		if err != nil {
			return "", "", err
		}
		if mk != nil {
			if err := verifySigned(k.Canon, userID, mk.keyID(), mk.PublicKey); err != nil {
				return "", "", err
			}
		}
		sskOut = string(k.Canon)
	}
	return masterOut, sskOut, nil
}

// HandleSigningKeyUpdate applies an m.signing_key_update EDU from origin to
// the cached cross-signing keys of one of its users and tells the local
// users who share a room with the user. Updates for users of other
// servers or with malformed keys are ignored.
func (s *Service) HandleSigningKeyUpdate(ctx context.Context, origin string, u SigningKeyUpdate) {
	if !s.followedRemoteUser(ctx, origin, u.UserID) {
		return
	}
	cached, err := s.db.RemoteDeviceLists(ctx, []string{u.UserID})
	if err != nil {
		s.log.WithError(err).Warn("e2ee: loading a cached device list")
		return
	}
	known := ""
	if l := cached[u.UserID]; l != nil {
		known = l.MasterKey
	}
	master, ssk, err := checkRemoteCrossSigning(u.UserID, u.MasterKey, u.SelfSigningKey, known)
	if err != nil {
		s.log.WithError(err).WithField("origin", origin).WithField("user_id", u.UserID).
			Info("e2ee: ignoring a signing key update with bad keys")
		return
	}
	if master == "" && ssk == "" {
		return
	}
	if _, err := s.db.SetRemoteCrossSigningKeys(ctx, u.UserID, master, ssk, time.Now().UnixMilli()); err != nil {
		s.log.WithError(err).WithField("user_id", u.UserID).Warn("e2ee: storing remote cross-signing keys")
		return
	}
	if err := s.RemoteDeviceListChanged(ctx, u.UserID); err != nil {
		s.log.WithError(err).WithField("user_id", u.UserID).Warn("e2ee: recording a remote device list change")
	}
}

// scheduleResync has a remote user's device list fetched again in the
// background. A request that comes while a fetch runs makes it run once
// more after, since the running fetch may predate the change that asked.
func (s *Service) scheduleResync(userID string) {
	s.resyncMu.Lock()
	if _, running := s.resyncing[userID]; running {
		s.resyncing[userID] = true
		s.resyncMu.Unlock()
		return
	}
	s.resyncing[userID] = false
	s.resyncMu.Unlock()
	ok := s.bg.goRun(func(ctx context.Context) {
		for {
			select {
			case s.resyncSlots <- struct{}{}:
			case <-ctx.Done():
				s.resyncDone(userID, true)
				return
			}
			s.resync(ctx, userID)
			<-s.resyncSlots
			if s.resyncDone(userID, false) {
				return
			}
		}
	})
	if !ok {
		s.resyncDone(userID, true)
	}
}

// resyncDone ends a round of userID's resynchronisation and reports
// whether it is over (rather than asked for again).
func (s *Service) resyncDone(userID string, stop bool) bool {
	s.resyncMu.Lock()
	defer s.resyncMu.Unlock()
	if again := s.resyncing[userID]; again && !stop {
		s.resyncing[userID] = false
		return false
	}
	delete(s.resyncing, userID)
	return true
}

// resync fetches a remote user's whole device list and caches it. Devices
// whose keys are not their own and cross-signing keys that do not check
// are left out. On failure the list stays stale (or absent): key queries
// go to the user's server until the next update tries again.
func (s *Service) resync(ctx context.Context, userID string) {
	rk := s.remoteKeys()
	if rk == nil {
		return
	}
	log := s.log.WithField("user_id", userID)
	ctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	defer cancel()
	dl, err := rk.UserDevices(ctx, userID)
	if err != nil {
		log.WithError(err).Info("e2ee: fetching a remote device list")
		return
	}
	if dl.UserID != userID {
		log.WithField("got", dl.UserID).Info("e2ee: a server answered a device list for another user")
		return
	}
	list := storage.RemoteDeviceList{UserID: userID, StreamID: dl.StreamID}
	seen := map[string]bool{}
	for _, d := range dl.Devices {
		if d.DeviceID == "" || seen[d.DeviceID] {
			continue
		}
		dev := storage.RemoteDevice{DeviceID: d.DeviceID, DisplayName: d.DeviceDisplayName}
		if !isNull(d.Keys) {
			canon, _, err := CheckDeviceKeys(d.Keys, userID, d.DeviceID)
			if err != nil {
				log.WithError(err).WithField("device_id", d.DeviceID).Info("e2ee: leaving out a remote device with bad keys")
				continue
			}
			dev.KeyJSON = string(canon)
		}
		seen[d.DeviceID] = true
		list.Devices = append(list.Devices, dev)
	}
	if list.MasterKey, list.SelfSigningKey, err = checkRemoteCrossSigning(userID, dl.MasterKey, dl.SelfSigningKey, ""); err != nil {
		log.WithError(err).Info("e2ee: leaving out remote cross-signing keys that do not check")
		list.MasterKey, list.SelfSigningKey = "", ""
	}
	if _, err := s.db.ReplaceRemoteDeviceList(ctx, list, time.Now().UnixMilli()); err != nil {
		log.WithError(err).Warn("e2ee: caching a remote device list")
		return
	}
	// The user may have left the last shared room during the fetch, after
	// MemberLeft looked: a list nobody follows would go out of date
	// unnoticed, so it goes.
	if shared, err := s.db.SharingRoomsWithServer(ctx, s.serverName, []string{userID}); err == nil && !shared[userID] {
		if err := s.db.DropRemoteDeviceLists(ctx, userID); err != nil {
			log.WithError(err).Warn("e2ee: dropping a device list nobody follows")
		}
	}
}

// cachedQuery answers what it can of a key query for remote users from the
// cache: users who share a room with a local user and whose cached list is
// current. It returns their keys as one result per server, the users it
// could not answer by server, and those among them whose lists should be
// fetched (they share a room, so their server will keep us updated).
func (s *Service) cachedQuery(ctx context.Context, servers map[string]map[string][]string) (
	cached map[string]*RemoteQueryResult, rest map[string]map[string][]string, toResync []string) {
	var users []string
	for _, byUser := range servers {
		users = append(users, sortedKeys(byUser)...)
	}
	shared, err := s.db.SharingRoomsWithServer(ctx, s.serverName, users)
	if err == nil && len(shared) > 0 {
		var lists map[string]*storage.RemoteDeviceList
		if lists, err = s.db.RemoteDeviceLists(ctx, sortedKeys(shared)); err == nil {
			cached = map[string]*RemoteQueryResult{}
			rest = map[string]map[string][]string{}
			for server, byUser := range servers {
				for user, devices := range byUser {
					l := lists[user]
					if !shared[user] || l == nil || l.Stale {
						if shared[user] {
							toResync = append(toResync, user)
						}
						if rest[server] == nil {
							rest[server] = map[string][]string{}
						}
						rest[server][user] = devices
						continue
					}
					if cached[server] == nil {
						cached[server] = &RemoteQueryResult{DeviceKeys: map[string]map[string]json.RawMessage{},
							MasterKeys: map[string]json.RawMessage{}, SelfSigningKeys: map[string]json.RawMessage{}}
					}
					s.answerFromCache(l, devices, cached[server])
				}
			}
			sort.Strings(toResync)
			return cached, rest, toResync
		}
	}
	if err != nil {
		s.log.WithError(err).Warn("e2ee: reading cached remote device lists")
	}
	return nil, servers, nil
}

// answerFromCache adds a cached list's keys (of the asked devices, or all)
// to res.
func (s *Service) answerFromCache(l *storage.RemoteDeviceList, devices []string, res *RemoteQueryResult) {
	want := map[string]bool{}
	for _, d := range devices {
		want[d] = true
	}
	out := map[string]json.RawMessage{}
	for _, d := range l.Devices {
		if d.KeyJSON == "" || (len(want) > 0 && !want[d.DeviceID]) {
			continue
		}
		js := json.RawMessage(d.KeyJSON)
		if d.DisplayName != "" {
			if withName, err := setUnsigned(js, map[string]any{"device_display_name": d.DisplayName}); err == nil {
				js = withName
			}
		}
		out[d.DeviceID] = js
	}
	res.DeviceKeys[l.UserID] = out
	if l.MasterKey != "" {
		res.MasterKeys[l.UserID] = json.RawMessage(l.MasterKey)
	}
	if l.SelfSigningKey != "" {
		res.SelfSigningKeys[l.UserID] = json.RawMessage(l.SelfSigningKey)
	}
}

// MemberLeft is told of a user leaving a room (or being kicked or banned).
// Remote users who no longer share any room with a local user drop out of
// the cache, since their servers stop sending us their updates: their
// lists are fetched again if they come back. It returns at once; the work
// runs in the background.
func (s *Service) MemberLeft(roomID, userID string) {
	s.bg.goRun(func(ctx context.Context) {
		var candidates []string
		if _, local := s.localpart(userID); local {
			users, err := s.db.CachedRemoteUsersInRoom(ctx, roomID)
			if err != nil {
				s.log.WithError(err).Warn("e2ee: listing cached device lists of a room")
				return
			}
			candidates = users
		} else {
			lists, err := s.db.RemoteDeviceLists(ctx, []string{userID})
			if err != nil || lists[userID] == nil {
				return
			}
			candidates = []string{userID}
		}
		if len(candidates) == 0 {
			return
		}
		shared, err := s.db.SharingRoomsWithServer(ctx, s.serverName, candidates)
		if err != nil {
			s.log.WithError(err).Warn("e2ee: checking the rooms of remote users")
			return
		}
		var drop []string
		for _, u := range candidates {
			if !shared[u] {
				drop = append(drop, u)
			}
		}
		if err := s.db.DropRemoteDeviceLists(ctx, drop...); err != nil {
			s.log.WithError(err).Warn("e2ee: dropping device lists nobody follows")
		}
	})
}
