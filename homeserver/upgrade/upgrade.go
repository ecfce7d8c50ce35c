// Package upgrade upgrades rooms to a new room version (POST
// /rooms/{roomId}/upgrade), as the spec's "Room Upgrades" module
// describes: a replacement room with the old one as predecessor and its
// important state, the local aliases and directory listing moved over, and
// a tombstone in the old room, whose power levels then stop ordinary
// members from talking and inviting there.
package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// copiedState are the state events (with an empty state key) replicated
// into the new room: those the spec recommends, and the canonical alias,
// whose aliases move along.
var copiedState = []string{
	"m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.guest_access", "m.room.history_visibility", "m.room.join_rules", "m.room.canonical_alias",
}

// Service upgrades rooms.
type Service struct {
	db    *storage.DB
	rooms *rooms.Engine
	log   logrus.FieldLogger

	mu   sync.Mutex
	busy map[string]bool
}

// New returns the upgrade service.
func New(db *storage.DB, engine *rooms.Engine, log logrus.FieldLogger) *Service {
	return &Service{db: db, rooms: engine, log: log, busy: map[string]bool{}}
}

// Request is an upgrade request.
type Request struct {
	UserID     string
	RoomID     string
	NewVersion string
	// AdditionalCreators are the new room's additional creators, for
	// versions with privileged creators (12); ignored otherwise.
	AdditionalCreators []string
}

// Upgrade replaces a room with one of the new version and returns the new
// room's ID. Errors wrap the room engine's (ErrForbidden,
// ErrUnsupportedRoomVersion, ErrBadRequest, ErrNotFound).
func (s *Service) Upgrade(ctx context.Context, req Request) (string, error) {
	version := event.RoomVersion(req.NewVersion)
	info, err := version.Info()
	if err != nil || req.NewVersion == "" {
		return "", fmt.Errorf("%w: room version %q is not supported", rooms.ErrUnsupportedRoomVersion, req.NewVersion)
	}
	for _, u := range req.AdditionalCreators {
		if _, err := id.ParseUserID(u); err != nil {
			return "", fmt.Errorf("%w: invalid user ID in additional_creators: %q", rooms.ErrBadRequest, u)
		}
	}
	if !s.lock(req.RoomID) {
		return "", fmt.Errorf("%w: the room is being upgraded already", rooms.ErrBadRequest)
	}
	defer s.unlock(req.RoomID)

	state, err := s.rooms.CurrentState(ctx, req.RoomID)
	if err != nil {
		return "", err
	}
	get := func(t string) *event.Event { return state[storage.StateKey{Type: t}] }
	if m := state[storage.StateKey{Type: "m.room.member", StateKey: req.UserID}]; m == nil {
		return "", fmt.Errorf("%w: you are not in this room", rooms.ErrForbidden)
	} else if ms, _ := m.Membership(); ms != "join" {
		return "", fmt.Errorf("%w: you are not in this room", rooms.ErrForbidden)
	}
	oldPL := get("m.room.power_levels")
	levels, err := authrules.NewPowerLevels(get("m.room.create"), oldPL)
	if err != nil {
		return "", err
	}
	if levels.UserLevel(req.UserID) < levels.EventLevel("m.room.tombstone", true) {
		return "", fmt.Errorf("%w: you may not upgrade this room (you cannot send m.room.tombstone)", rooms.ErrForbidden)
	}

	create, err := s.creationContent(ctx, req, info, get("m.room.create"))
	if err != nil {
		return "", err
	}
	initial, preset := copyState(state, info, s.redacted(ctx, state))
	finalPL, firstPL := s.powerLevels(req, info, levels, oldPL)
	newRoom, err := s.rooms.CreateRoom(ctx, rooms.CreateRequest{
		Creator: req.UserID, Preset: preset, RoomVersion: version, CreationContent: create,
		PowerLevelContentOverride: firstPL, InitialState: initial,
	})
	if err != nil {
		return "", err
	}
	log := s.log.WithField("room_id", req.RoomID).WithField("replacement_room", newRoom)
	if finalPL != nil {
		// The upgrader was raised only to copy the state; back to their level.
		if _, err := s.rooms.Send(ctx, newRoom, rooms.Proto{Type: "m.room.power_levels", StateKey: strp(""),
			Sender: req.UserID, Content: mustJSON(finalPL)}); err != nil {
			log.WithError(err).Warn("room upgrade: restoring the power levels of the new room")
		}
	}

	// Local aliases and the directory listing move to the new room.
	if _, err := s.db.MoveAliases(ctx, req.RoomID, newRoom); err != nil {
		return "", err
	}
	if ca := get("m.room.canonical_alias"); ca != nil && string(ca.Content()) != "{}" {
		if _, err := s.rooms.Send(ctx, req.RoomID, rooms.Proto{Type: "m.room.canonical_alias", StateKey: strp(""),
			Sender: req.UserID, Content: json.RawMessage(`{}`)}); err != nil {
			log.WithError(err).Info("room upgrade: could not clear the old room's canonical alias")
		}
	}
	if row, err := s.db.GetRoom(ctx, req.RoomID); err == nil && row.Published {
		if err := s.db.SetRoomPublished(ctx, newRoom, true); err != nil {
			return "", err
		}
		if err := s.db.SetRoomPublished(ctx, req.RoomID, false); err != nil {
			return "", err
		}
	}

	if _, err := s.rooms.Send(ctx, req.RoomID, rooms.Proto{Type: "m.room.tombstone", StateKey: strp(""), Sender: req.UserID,
		Content: mustJSON(map[string]string{"body": "This room has been replaced", "replacement_room": newRoom})}); err != nil {
		return "", err
	}
	s.restrictOldRoom(ctx, log, req, oldPL)
	return newRoom, nil
}

func (s *Service) lock(roomID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[roomID] {
		return false
	}
	s.busy[roomID] = true
	return true
}

func (s *Service) unlock(roomID string) {
	s.mu.Lock()
	delete(s.busy, roomID)
	s.mu.Unlock()
}

// creationContent is the new room's m.room.create content (beyond what
// CreateRoom adds): the predecessor, the old room's type and m.federate,
// and the additional creators.
func (s *Service) creationContent(ctx context.Context, req Request, info event.RoomVersionInfo, oldCreate *event.Event) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	var old map[string]json.RawMessage
	if oldCreate != nil {
		_ = json.Unmarshal(oldCreate.Content(), &old)
	}
	for _, k := range []string{"type", "m.federate"} {
		if v, ok := old[k]; ok {
			out[k] = v
		}
	}
	pred := map[string]string{"room_id": req.RoomID}
	// The spec deprecates predecessor.event_id but asks to fill it where
	// practical: the last event of the old room before the upgrade.
	last, err := s.db.LastEventBefore(ctx, req.RoomID, s.rooms.CurrentStreamPos())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if last != nil {
		pred["event_id"] = last.EventID
	}
	out["predecessor"] = mustJSON(pred)
	if info.PrivilegedCreators && len(req.AdditionalCreators) > 0 {
		var extra []string
		for _, u := range req.AdditionalCreators {
			if u != req.UserID {
				extra = append(extra, u)
			}
		}
		if len(extra) > 0 {
			out["additional_creators"] = mustJSON(extra)
		}
	}
	return out, nil
}

// redacted lists which of the state events to copy were redacted: the
// room's state holds them as they were sent.
func (s *Service) redacted(ctx context.Context, state map[storage.StateKey]*event.Event) map[string]bool {
	out := map[string]bool{}
	for _, t := range copiedState {
		if ev := state[storage.StateKey{Type: t}]; ev != nil {
			if row, err := s.db.GetEvent(ctx, ev.EventID()); err == nil && row.RedactedBy != "" {
				out[ev.EventID()] = true
			}
		}
	}
	return out
}

// copyState is the old room's transferable state as initial_state of the
// new room, and the preset whose defaults fill in what the old room lacked.
// Redacted events are not copied (their content is gone); a join rule the
// new version does not know falls back to invite.
func copyState(state map[storage.StateKey]*event.Event, info event.RoomVersionInfo, redacted map[string]bool) ([]rooms.StateEvent, string) {
	var out []rooms.StateEvent
	preset := "private_chat"
	for _, t := range copiedState {
		ev := state[storage.StateKey{Type: t}]
		if ev == nil || redacted[ev.EventID()] || string(ev.Content()) == "{}" {
			continue
		}
		content := ev.Content()
		if t == "m.room.join_rules" {
			var c struct {
				JoinRule string `json:"join_rule"`
			}
			_ = json.Unmarshal(content, &c)
			supported := c.JoinRule == "public" || c.JoinRule == "invite" ||
				(c.JoinRule == "knock" && info.Knocking) ||
				(c.JoinRule == "restricted" && info.RestrictedJoins) ||
				(c.JoinRule == "knock_restricted" && info.KnockRestricted)
			if !supported {
				content = json.RawMessage(`{"join_rule":"invite"}`)
			}
			if c.JoinRule == "public" {
				preset = "public_chat"
			}
		}
		out = append(out, rooms.StateEvent{Type: t, StateKey: "", Content: content})
	}
	return out, preset
}

// powerLevels returns the new room's power levels: the old room's,
// adjusted to the new version (integers; from version 12, creators are
// not listed). first is what the room is created with; when the upgrader
// needs more power than theirs to copy the state, first raises them and
// final (nil otherwise) is sent afterwards to bring them back.
func (s *Service) powerLevels(req Request, info event.RoomVersionInfo, levels *authrules.PowerLevels, oldPL *event.Event) (final, first map[string]json.RawMessage) {
	if oldPL == nil {
		return nil, nil // the new room gets the defaults
	}
	var content map[string]json.RawMessage
	if json.Unmarshal(oldPL.Content(), &content) != nil {
		return nil, nil
	}
	pl := map[string]json.RawMessage{}
	for k, v := range content {
		switch k {
		case "users", "events", "notifications":
			pl[k] = mustJSON(intMap(v))
		default:
			if n, ok := toInt(v); ok {
				pl[k] = mustJSON(n)
			} else {
				pl[k] = v
			}
		}
	}
	users := intMap(content["users"])
	if info.PrivilegedCreators {
		// Creators have infinite power and must not be listed.
		delete(users, req.UserID)
		for _, u := range req.AdditionalCreators {
			delete(users, u)
		}
		pl["users"] = mustJSON(users)
		return nil, pl
	}
	mine := levels.UserLevel(req.UserID)
	if mine == authrules.CreatorPowerLevel {
		mine = 100 // a version 12 creator moving to an older version
	}
	users[req.UserID] = max(users[req.UserID], mine)
	pl["users"] = mustJSON(users)
	needed := levels.EventLevel("m.room.power_levels", true)
	for _, t := range copiedState {
		needed = max(needed, levels.EventLevel(t, true))
	}
	if users[req.UserID] >= needed {
		return nil, pl
	}
	raised := map[string]int64{}
	for u, l := range users {
		raised[u] = l
	}
	raised[req.UserID] = needed
	first = map[string]json.RawMessage{}
	for k, v := range pl {
		first[k] = v
	}
	first["users"] = mustJSON(raised)
	return pl, first
}

// restrictOldRoom raises events_default and invite in the old room, as the
// spec suggests, so that it falls silent; without the power to, it stays
// as it is.
func (s *Service) restrictOldRoom(ctx context.Context, log logrus.FieldLogger, req Request, oldPL *event.Event) {
	content := map[string]json.RawMessage{}
	if oldPL != nil {
		_ = json.Unmarshal(oldPL.Content(), &content)
	}
	usersDefault, _ := toInt(content["users_default"])
	restricted := max(50, usersDefault+1)
	changed := false
	for _, k := range []string{"events_default", "invite"} {
		if cur, ok := toInt(content[k]); !ok || cur < restricted {
			content[k] = mustJSON(restricted)
			changed = true
		}
	}
	if !changed {
		return
	}
	if _, err := s.rooms.Send(ctx, req.RoomID, rooms.Proto{Type: "m.room.power_levels", StateKey: strp(""),
		Sender: req.UserID, Content: mustJSON(content)}); err != nil {
		log.WithError(err).Info("room upgrade: could not restrict the old room's power levels")
	}
}

// intMap reads a power levels map, turning the numeric strings older room
// versions allowed into integers and dropping anything else.
func intMap(raw json.RawMessage) map[string]int64 {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	out := make(map[string]int64, len(m))
	for k, v := range m {
		if n, ok := toInt(v); ok {
			out[k] = n
		}
	}
	return out
}

// toInt reads a power level: a JSON integer, or a string holding one.
func toInt(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil && f == math.Trunc(f) && math.Abs(f) <= 1<<53 {
		return int64(f), true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, true
		}
	}
	return 0, false
}

func strp(s string) *string { return &s }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of plain values
	}
	return b
}
