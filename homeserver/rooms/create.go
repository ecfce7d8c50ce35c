package rooms

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/matrix/id"
	"github.com/parley-chat/parley/storage"
)

// CreateRequest is a /createRoom request, already parsed.
type CreateRequest struct {
	Creator                   string
	Visibility                string // "public" or "private"
	Preset                    string
	Name                      *string
	Topic                     *string
	RoomAliasName             string
	Invite                    []string
	IsDirect                  bool
	InitialState              []StateEvent
	CreationContent           map[string]json.RawMessage
	PowerLevelContentOverride map[string]json.RawMessage
	RoomVersion               event.RoomVersion
}

// StateEvent is an entry of initial_state.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

func strp(s string) *string { return &s }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of plain values
	}
	return b
}

// CreateRoom creates a room as the spec's /createRoom describes: create
// event, the creator's join, power levels, alias, preset state, initial
// state, name, topic and invites, all in one transaction.
func (e *Engine) CreateRoom(ctx context.Context, req CreateRequest) (roomID string, err error) {
	version := req.RoomVersion
	if version == "" {
		version = e.cfg.DefaultRoomVersion
	}
	info, err := version.Info()
	if err != nil {
		return "", wrapf(ErrUnsupportedRoomVersion, "room version %q is not supported", version)
	}
	preset := req.Preset
	if preset == "" {
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	}
	var joinRule, history, guest string
	switch preset {
	case "public_chat":
		joinRule, history, guest = "public", "shared", "forbidden"
	case "private_chat", "trusted_private_chat":
		joinRule, history, guest = "invite", "shared", "can_join"
	default:
		return "", wrapf(ErrBadRequest, "unknown preset %q", preset)
	}
	for _, u := range req.Invite {
		if _, err := id.ParseUserID(u); err != nil {
			return "", wrapf(ErrBadRequest, "invalid user ID in invite: %q", u)
		}
	}

	var alias string
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# \t") {
			return "", wrapf(ErrBadRequest, "room_alias_name must be a bare localpart")
		}
		alias = "#" + req.RoomAliasName + ":" + e.cfg.ServerName
		if _, err := id.ParseRoomAlias(alias); err != nil {
			return "", wrapf(ErrBadRequest, "invalid room_alias_name: %v", err)
		}
		if _, _, err := e.db.ResolveAlias(ctx, alias); err == nil {
			return "", wrapf(ErrRoomInUse, "room alias %s already exists", alias)
		}
		if err := e.checkAliasCreation(ctx, alias, req.Creator); err != nil {
			return "", err
		}
	}
	// Bridges may have to create the users they represent first.
	for _, u := range req.Invite {
		e.queryUser(ctx, u)
	}

	creator := req.Creator
	createContent := map[string]json.RawMessage{}
	for k, v := range req.CreationContent {
		createContent[k] = v
	}
	createContent["room_version"] = mustJSON(string(version))
	if !info.CreatorFromSender {
		createContent["creator"] = mustJSON(creator)
	}

	// Power levels: the spec's defaults, the creator at 100 (in room
	// version 12 creators have infinite power and must not be listed), and
	// trusted_private_chat invitees as powerful as the creator.
	users := map[string]int64{}
	if !info.PrivilegedCreators {
		users[creator] = 100
	}
	if preset == "trusted_private_chat" {
		for _, u := range req.Invite {
			users[u] = 100
		}
	}
	pl := map[string]json.RawMessage{
		"users":          mustJSON(users),
		"users_default":  mustJSON(0),
		"events_default": mustJSON(0),
		"state_default":  mustJSON(50),
		"ban":            mustJSON(50),
		"kick":           mustJSON(50),
		"redact":         mustJSON(50),
		"invite":         mustJSON(0),
		"events": mustJSON(map[string]int64{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		}),
		"notifications": mustJSON(map[string]int64{"room": 50}),
	}
	if preset == "public_chat" {
		pl["invite"] = mustJSON(50)
	}
	for k, v := range req.PowerLevelContentOverride {
		pl[k] = v
	}

	profileName, profileAvatar := e.cfg.Profiles(ctx, creator)
	protos := []Proto{
		{Type: "m.room.create", StateKey: strp(""), Sender: creator, Content: mustJSON(createContent)},
		{Type: "m.room.member", StateKey: strp(creator), Sender: creator, Content: memberContent("join", profileName, profileAvatar, "", false)},
		{Type: "m.room.power_levels", StateKey: strp(""), Sender: creator, Content: mustJSON(pl)},
	}
	if alias != "" {
		protos = append(protos, Proto{Type: "m.room.canonical_alias", StateKey: strp(""), Sender: creator, Content: mustJSON(map[string]string{"alias": alias})})
	}
	protos = append(protos,
		Proto{Type: "m.room.join_rules", StateKey: strp(""), Sender: creator, Content: mustJSON(map[string]string{"join_rule": joinRule})},
		Proto{Type: "m.room.history_visibility", StateKey: strp(""), Sender: creator, Content: mustJSON(map[string]string{"history_visibility": history})},
		Proto{Type: "m.room.guest_access", StateKey: strp(""), Sender: creator, Content: mustJSON(map[string]string{"guest_access": guest})},
	)
	if e.cfg.EncryptPrivateRooms && preset != "public_chat" {
		protos = append(protos, Proto{Type: "m.room.encryption", StateKey: strp(""), Sender: creator,
			Content: mustJSON(map[string]string{"algorithm": "m.megolm.v1.aes-sha2"})})
	}
	// initial_state overrides the preset's events of the same type and key.
	for _, s := range req.InitialState {
		if s.Type == "" || s.Type == "m.room.create" || s.Type == "m.room.member" || s.Type == "m.room.power_levels" {
			return "", wrapf(ErrBadRequest, "initial_state may not set %q", s.Type)
		}
		replaced := false
		for i := range protos {
			if protos[i].Type == s.Type && protos[i].StateKey != nil && *protos[i].StateKey == s.StateKey && i >= 3 {
				protos[i].Content, replaced = s.Content, true
			}
		}
		if !replaced {
			protos = append(protos, Proto{Type: s.Type, StateKey: strp(s.StateKey), Sender: creator, Content: s.Content})
		}
	}
	if req.Name != nil {
		protos = append(protos, Proto{Type: "m.room.name", StateKey: strp(""), Sender: creator, Content: mustJSON(map[string]string{"name": *req.Name})})
	}
	if req.Topic != nil {
		protos = append(protos, Proto{Type: "m.room.topic", StateKey: strp(""), Sender: creator, Content: mustJSON(map[string]string{"topic": *req.Topic})})
	}
	for _, u := range req.Invite {
		protos = append(protos, Proto{Type: "m.room.member", StateKey: strp(u), Sender: creator, Content: memberContent("invite", "", "", "", req.IsDirect)})
	}

	// The room ID: random before room version 12; from version 12 the
	// create event's reference hash, known only once it is built.
	if !info.CreateEventIsRoomID {
		roomID = "!" + randomString(18) + ":" + e.cfg.ServerName
	}
	r := newRoom(e, roomID, version, info)
	h := head{view: stateView{base: r.state, overlay: map[storage.StateKey]*event.Event{}}}
	req0 := &request{ctx: ctx}
	var all []built
	for i, p := range protos {
		b, err := r.buildOne(req0, p, &h)
		if err != nil {
			return "", err
		}
		if i == 0 && info.CreateEventIsRoomID {
			r.id = b.ev.RoomID()
			roomID = r.id
		}
		all = append(all, b)
	}
	// The alias is claimed before anything is persisted, so that of two
	// creators racing for it exactly one gets it and the other gets
	// M_ROOM_IN_USE with no room left behind.
	if alias != "" {
		if err := e.db.CreateAlias(ctx, alias, roomID, creator); errors.Is(err, storage.ErrAliasExists) {
			return "", wrapf(ErrRoomInUse, "room alias %s already exists", alias)
		} else if err != nil {
			return "", err
		}
	}
	pos, err := r.persist(all, h)
	if err != nil {
		if alias != "" {
			_ = e.db.DeleteAlias(context.Background(), alias)
		}
		return "", err
	}
	for k, ev := range h.view.overlay {
		r.state[k] = ev
	}
	r.stateGen++ // nothing derived from the state while it was built counts
	r.depth, r.extremities = h.depth, h.extremities

	e.mu.Lock()
	e.rooms[roomID] = r
	e.mu.Unlock()
	go r.run()
	for i, b := range all {
		e.emit(b.ev, pos-int64(len(all))+1+int64(i))
	}
	r.notify(all, pos)

	if req.Visibility == "public" {
		if err := e.db.SetRoomPublished(ctx, roomID, true); err != nil {
			return roomID, err
		}
	}
	return roomID, nil
}

// memberContent builds m.room.member content.
func memberContent(membership, displayName, avatarURL, reason string, isDirect bool) json.RawMessage {
	c := map[string]any{"membership": membership}
	if displayName != "" {
		c["displayname"] = displayName
	}
	if avatarURL != "" {
		c["avatar_url"] = avatarURL
	}
	if reason != "" {
		c["reason"] = reason
	}
	if isDirect {
		c["is_direct"] = true
	}
	return mustJSON(c)
}

func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
