package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/parley-chat/parley/storage"
)

// BackupInfo describes a key backup version (GET /room_keys/version).
type BackupInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// RoomKeyData is one backed-up session key (KeyBackupData in the spec).
type RoomKeyData struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// ParseRoomKeyData reads one session key of a backup upload; every field
// is required.
func ParseRoomKeyData(raw json.RawMessage) (RoomKeyData, error) {
	var k struct {
		FirstMessageIndex *int64          `json:"first_message_index"`
		ForwardedCount    *int64          `json:"forwarded_count"`
		IsVerified        *bool           `json:"is_verified"`
		SessionData       json.RawMessage `json:"session_data"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return RoomKeyData{}, fmt.Errorf("%w: key data: %v", ErrBadJSON, err)
	}
	if k.FirstMessageIndex == nil || k.ForwardedCount == nil || k.IsVerified == nil || !isObject(k.SessionData) {
		return RoomKeyData{}, fmt.Errorf("%w: key data needs first_message_index, forwarded_count, is_verified and a session_data object", ErrBadJSON)
	}
	if *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0 {
		return RoomKeyData{}, fmt.Errorf("%w: first_message_index and forwarded_count must not be negative", ErrInvalidParam)
	}
	return RoomKeyData{FirstMessageIndex: *k.FirstMessageIndex, ForwardedCount: *k.ForwardedCount,
		IsVerified: *k.IsVerified, SessionData: k.SessionData}, nil
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(raw)
}

// parseVersion reads a backup version as this server writes them
// (positive integers); anything else names no version.
func parseVersion(version string) (int64, error) {
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%w: unknown backup version %q", ErrNotFound, version)
	}
	return v, nil
}

// backupErr maps storage errors of the backup tables.
func backupErr(err error, version string) error {
	var wv *storage.WrongBackupVersionError
	switch {
	case errors.As(err, &wv):
		cur := ""
		if wv.Current > 0 {
			cur = strconv.FormatInt(wv.Current, 10)
		}
		return &WrongVersionError{Current: cur}
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: unknown backup version %q", ErrNotFound, version)
	}
	return err
}

// CreateBackup creates a new key backup version, which becomes the current
// one, and returns it.
func (s *Service) CreateBackup(ctx context.Context, userID, algorithm string, authData json.RawMessage) (string, error) {
	if algorithm == "" {
		return "", fmt.Errorf("%w: algorithm is required", ErrMissingParam)
	}
	if !isObject(authData) {
		return "", fmt.Errorf("%w: auth_data must be an object", ErrBadJSON)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, authData)
	v, err := s.db.CreateBackupVersion(ctx, userID, algorithm, compact.String())
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(v, 10), nil
}

// Backup describes a backup version, or the current one when version is
// "" (ErrNotFound when there is none).
func (s *Service) Backup(ctx context.Context, userID, version string) (*BackupInfo, error) {
	var v int64
	if version != "" {
		var err error
		if v, err = parseVersion(version); err != nil {
			return nil, err
		}
	}
	b, err := s.db.GetBackupVersion(ctx, userID, v)
	if errors.Is(err, storage.ErrNotFound) {
		if version == "" {
			return nil, fmt.Errorf("%w: no current backup version", ErrNotFound)
		}
		return nil, fmt.Errorf("%w: unknown backup version %q", ErrNotFound, version)
	}
	if err != nil {
		return nil, err
	}
	return &BackupInfo{Algorithm: b.Algorithm, AuthData: json.RawMessage(b.AuthData), Count: b.Count,
		Etag: strconv.FormatInt(b.Etag, 10), Version: strconv.FormatInt(b.Version, 10)}, nil
}

// UpdateBackup replaces the auth_data of a backup version; only auth_data
// can change. bodyVersion, the version in the request body, must be ""
// or the version itself, and algorithm the version's algorithm
// (ErrInvalidParam otherwise).
func (s *Service) UpdateBackup(ctx context.Context, userID, version, bodyVersion, algorithm string, authData json.RawMessage) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	if bodyVersion != "" && bodyVersion != version {
		return fmt.Errorf("%w: the version in the body does not match the version in the path", ErrInvalidParam)
	}
	if !isObject(authData) {
		return fmt.Errorf("%w: auth_data must be an object", ErrBadJSON)
	}
	cur, err := s.db.GetBackupVersion(ctx, userID, v)
	if err != nil {
		return backupErr(err, version)
	}
	if algorithm != cur.Algorithm {
		return fmt.Errorf("%w: the algorithm does not match the backup's", ErrInvalidParam)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, authData)
	return backupErr(s.db.UpdateBackupVersion(ctx, userID, v, compact.String()), version)
}

// DeleteBackup deletes a backup version with its keys; deleting it again
// succeeds.
func (s *Service) DeleteBackup(ctx context.Context, userID, version string) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	return backupErr(s.db.DeleteBackupVersion(ctx, userID, v), version)
}

// betterRoomKey applies the spec's rule for a key uploaded for a session
// the backup already holds: a verified key beats an unverified one, then
// the lower first_message_index wins, then the lower forwarded_count; on a
// tie the stored key stays.
func betterRoomKey(old, new *storage.RoomKey) bool {
	if old.IsVerified != new.IsVerified {
		return new.IsVerified
	}
	if old.FirstMessageIndex != new.FirstMessageIndex {
		return new.FirstMessageIndex < old.FirstMessageIndex
	}
	return new.ForwardedCount < old.ForwardedCount
}

// PutRoomKeys stores session keys (room ID → session ID → key) in the
// current backup version and returns its etag and key count. A write to
// another version fails with *WrongVersionError; to an unknown one with
// ErrNotFound.
func (s *Service) PutRoomKeys(ctx context.Context, userID, version string, rooms map[string]map[string]RoomKeyData) (etag string, count int64, err error) {
	v, err := parseVersion(version)
	if err != nil {
		return "", 0, err
	}
	var keys []storage.RoomKey
	for _, room := range sortedKeys(rooms) {
		for _, session := range sortedKeys(rooms[room]) {
			k := rooms[room][session]
			var compact bytes.Buffer
			if err := json.Compact(&compact, k.SessionData); err != nil {
				return "", 0, fmt.Errorf("%w: session_data: %v", ErrBadJSON, err)
			}
			keys = append(keys, storage.RoomKey{RoomID: room, SessionID: session, FirstMessageIndex: k.FirstMessageIndex,
				ForwardedCount: k.ForwardedCount, IsVerified: k.IsVerified, SessionData: compact.String()})
		}
	}
	e, n, err := s.db.PutRoomKeys(ctx, userID, v, keys, betterRoomKey)
	if err != nil {
		return "", 0, backupErr(err, version)
	}
	return strconv.FormatInt(e, 10), n, nil
}

// RoomKeys returns the keys of a backup version: all (roomID ""), a
// room's, or one session's (room ID → session ID → key).
func (s *Service) RoomKeys(ctx context.Context, userID, version, roomID, sessionID string) (map[string]map[string]RoomKeyData, error) {
	v, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	keys, err := s.db.RoomKeys(ctx, userID, v, roomID, sessionID)
	if err != nil {
		return nil, backupErr(err, version)
	}
	out := map[string]map[string]RoomKeyData{}
	for _, k := range keys {
		if out[k.RoomID] == nil {
			out[k.RoomID] = map[string]RoomKeyData{}
		}
		out[k.RoomID][k.SessionID] = RoomKeyData{FirstMessageIndex: k.FirstMessageIndex, ForwardedCount: k.ForwardedCount,
			IsVerified: k.IsVerified, SessionData: json.RawMessage(k.SessionData)}
	}
	return out, nil
}

// DeleteRoomKeys deletes keys of a backup version (all, a room's or one
// session's) and returns its etag and key count.
func (s *Service) DeleteRoomKeys(ctx context.Context, userID, version, roomID, sessionID string) (etag string, count int64, err error) {
	v, err := parseVersion(version)
	if err != nil {
		return "", 0, err
	}
	e, n, err := s.db.DeleteRoomKeys(ctx, userID, v, roomID, sessionID)
	if err != nil {
		return "", 0, backupErr(err, version)
	}
	return strconv.FormatInt(e, 10), n, nil
}
