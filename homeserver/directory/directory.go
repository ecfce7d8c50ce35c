// Package directory is room and user discovery: the published room
// directory (/publicRooms, /directory/list/room) and the user directory
// (/user_directory/search), with the index the latter reads.
package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/storage"
)

// Errors the client API maps to Matrix errors.
var (
	// ErrBadRequest: a malformed request (a bad token).
	ErrBadRequest = errors.New("bad directory request")
	// ErrForbidden: the user may not change the room's visibility.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: the room is unknown.
	ErrNotFound = errors.New("room not found")
	// ErrUnknownNetwork: no application service bridges the third-party
	// network a directory request names.
	ErrUnknownNetwork = errors.New("unknown third-party network")
)

// Config configures the directories.
type Config struct {
	ServerName string
	// SearchAllLocalUsers makes every local user findable in the user
	// directory, not only those sharing a room with the searcher or in
	// public rooms.
	SearchAllLocalUsers bool
	// NetworkRooms, when set, lists the rooms application services
	// published in the directory of a third-party network (by instance
	// ID), or of all their networks for "". It returns ErrUnknownNetwork
	// for an instance ID no service has.
	NetworkRooms func(ctx context.Context, instanceID string) ([]string, error)
	Log          logrus.FieldLogger
}

// Service serves the directories.
type Service struct {
	cfg     Config
	db      *storage.DB
	rooms   *rooms.Engine
	catchUp func(ctx context.Context) error
	// remote fetches other servers' directories (SetRemote).
	remote atomic.Pointer[RemoteDirectory]
	// remoteHierarchy asks other servers about spaces (SetRemoteHierarchy);
	// hierarchies caches their answers.
	remoteHierarchy atomic.Pointer[RemoteHierarchy]
	hierarchies     hierarchyCache
}

// New returns the directory service.
func New(cfg Config, db *storage.DB, engine *rooms.Engine) *Service {
	return &Service{cfg: cfg, db: db, rooms: engine}
}

// SetCatchUp installs the function user searches call first to wait for
// the index.
func (s *Service) SetCatchUp(f func(ctx context.Context) error) { s.catchUp = f }

// Visibility is a room's visibility in the published room directory:
// "public" or "private".
func (s *Service) Visibility(ctx context.Context, roomID string) (string, error) {
	room, err := s.db.GetRoom(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, roomID)
	}
	if err != nil {
		return "", err
	}
	if room.Published {
		return "public", nil
	}
	return "private", nil
}

// SetVisibility publishes or unpublishes a room. Server admins may, and
// so may members whose power level lets them set the room's canonical
// alias (the state closest to how the room is found).
func (s *Service) SetVisibility(ctx context.Context, userID string, isAdmin bool, roomID, visibility string) error {
	if visibility != "public" && visibility != "private" {
		return fmt.Errorf("%w: visibility must be public or private", ErrBadRequest)
	}
	if _, err := s.Visibility(ctx, roomID); err != nil {
		return err
	}
	if !isAdmin {
		ok, err := s.mayPublish(ctx, userID, roomID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: you need the power to change the room's canonical alias", ErrForbidden)
		}
	}
	return s.db.SetRoomPublished(ctx, roomID, visibility == "public")
}

func (s *Service) mayPublish(ctx context.Context, userID, roomID string) (bool, error) {
	if m, err := s.rooms.Membership(ctx, roomID, userID); err != nil || m != "join" {
		return false, err
	}
	create, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.create", "")
	if err != nil {
		return false, err
	}
	pl, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.power_levels", "")
	if err != nil {
		return false, err
	}
	levels, err := authrules.NewPowerLevels(create, pl)
	if err != nil {
		return false, nil
	}
	return levels.UserLevel(userID) >= levels.EventLevel("m.room.canonical_alias", true), nil
}

// PublicRoom is an entry of the published room directory.
type PublicRoom struct {
	RoomID           string `json:"room_id"`
	Name             string `json:"name,omitempty"`
	Topic            string `json:"topic,omitempty"`
	CanonicalAlias   string `json:"canonical_alias,omitempty"`
	NumJoinedMembers int    `json:"num_joined_members"`
	WorldReadable    bool   `json:"world_readable"`
	GuestCanJoin     bool   `json:"guest_can_join"`
	JoinRule         string `json:"join_rule,omitempty"`
	AvatarURL        string `json:"avatar_url,omitempty"`
	RoomType         string `json:"room_type,omitempty"`
}

// PublicRoomsRequest is a /publicRooms request.
type PublicRoomsRequest struct {
	Limit int    // 0: all
	Since string // a next_batch or prev_batch token
	// Term filters by name, topic, canonical alias and room ID,
	// case-insensitively.
	Term string
	// RoomTypes, when not nil, keeps rooms of these types; "" stands for
	// rooms without a type (null in the request).
	RoomTypes []string
	// ThirdPartyInstanceID lists a bridged network's directory instead of
	// this server's; IncludeAllNetworks lists every bridged network's too.
	ThirdPartyInstanceID string
	IncludeAllNetworks   bool
}

// PublicRoomsPage is a page of the directory.
type PublicRoomsPage struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	Total     int          `json:"total_room_count_estimate"`
}

// PublicRooms lists the published rooms, largest first.
func (s *Service) PublicRooms(ctx context.Context, req PublicRoomsRequest) (*PublicRoomsPage, error) {
	offset := 0
	if req.Since != "" {
		var err error
		if offset, err = decodeOffset(req.Since); err != nil {
			return nil, err
		}
	}
	ids, err := s.listed(ctx, req)
	if err != nil {
		return nil, err
	}
	counts, err := s.db.JoinedMemberCounts(ctx, ids)
	if err != nil {
		return nil, err
	}
	term := strings.ToLower(strings.TrimSpace(req.Term))
	all := make([]PublicRoom, 0, len(ids))
	for _, id := range ids {
		r, err := s.publicRoom(ctx, id)
		if errors.Is(err, rooms.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r.NumJoinedMembers = counts[id]
		if !matchesTerm(r, term) || !matchesType(r, req.RoomTypes) {
			continue
		}
		all = append(all, r)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].NumJoinedMembers != all[j].NumJoinedMembers {
			return all[i].NumJoinedMembers > all[j].NumJoinedMembers
		}
		return all[i].RoomID < all[j].RoomID
	})
	page := &PublicRoomsPage{Chunk: []PublicRoom{}, Total: len(all)}
	offset = min(offset, len(all))
	end := len(all)
	if req.Limit > 0 {
		end = min(offset+req.Limit, len(all))
		if offset > 0 {
			page.PrevBatch = encodeOffset(max(offset-req.Limit, 0))
		}
	} else if offset > 0 {
		page.PrevBatch = encodeOffset(0)
	}
	if end < len(all) {
		page.NextBatch = encodeOffset(end)
	}
	page.Chunk = append(page.Chunk, all[offset:end]...)
	return page, nil
}

// listed are the IDs of the rooms the request lists: this server's
// directory, a bridged network's, or both with all networks.
func (s *Service) listed(ctx context.Context, req PublicRoomsRequest) ([]string, error) {
	if req.ThirdPartyInstanceID != "" && req.IncludeAllNetworks {
		return nil, fmt.Errorf("%w: third_party_instance_id cannot be used with include_all_networks", ErrBadRequest)
	}
	var ids []string
	if req.ThirdPartyInstanceID == "" {
		var err error
		if ids, err = s.db.PublishedRooms(ctx); err != nil {
			return nil, err
		}
	}
	if req.ThirdPartyInstanceID == "" && !req.IncludeAllNetworks {
		return ids, nil
	}
	if s.cfg.NetworkRooms == nil {
		if req.ThirdPartyInstanceID != "" {
			return nil, fmt.Errorf("%w: %q (no application service bridges networks here)", ErrUnknownNetwork, req.ThirdPartyInstanceID)
		}
		return ids, nil
	}
	more, err := s.cfg.NetworkRooms(ctx, req.ThirdPartyInstanceID)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
	}
	for _, id := range more {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// publicRoom reads a room's directory entry from its current state.
func (s *Service) publicRoom(ctx context.Context, roomID string) (PublicRoom, error) {
	r := PublicRoom{RoomID: roomID, JoinRule: "public"}
	get := func(eventType string) (map[string]any, error) {
		ev, err := s.rooms.CurrentStateEvent(ctx, roomID, eventType, "")
		if err != nil || ev == nil {
			return nil, err
		}
		var c map[string]any
		_ = json.Unmarshal(ev.Content(), &c)
		return c, nil
	}
	str := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
	var err error
	var c map[string]any
	if c, err = get("m.room.name"); err != nil {
		return r, err
	}
	r.Name = str(c, "name")
	if c, err = get("m.room.topic"); err != nil {
		return r, err
	}
	r.Topic = plainTopic(c)
	if c, err = get("m.room.canonical_alias"); err != nil {
		return r, err
	}
	r.CanonicalAlias = str(c, "alias")
	if c, err = get("m.room.avatar"); err != nil {
		return r, err
	}
	r.AvatarURL = str(c, "url")
	if c, err = get("m.room.join_rules"); err != nil {
		return r, err
	}
	if jr := str(c, "join_rule"); jr != "" {
		r.JoinRule = jr
	}
	if c, err = get("m.room.history_visibility"); err != nil {
		return r, err
	}
	r.WorldReadable = str(c, "history_visibility") == "world_readable"
	if c, err = get("m.room.guest_access"); err != nil {
		return r, err
	}
	r.GuestCanJoin = str(c, "guest_access") == "can_join"
	if c, err = get("m.room.create"); err != nil {
		return r, err
	}
	r.RoomType = str(c, "type")
	return r, nil
}

// plainTopic is the plain-text topic: the text/plain representation of
// m.topic when there is one, else topic.
func plainTopic(c map[string]any) string {
	if mt, ok := c["m.topic"].(map[string]any); ok {
		reps, _ := mt["m.text"].([]any)
		for _, rep := range reps {
			m, _ := rep.(map[string]any)
			mime, _ := m["mimetype"].(string)
			if body, ok := m["body"].(string); ok && (mime == "" || mime == "text/plain") {
				return body
			}
		}
	}
	t, _ := c["topic"].(string)
	return t
}

func matchesTerm(r PublicRoom, term string) bool {
	if term == "" {
		return true
	}
	for _, f := range []string{r.Name, r.Topic, r.CanonicalAlias, r.RoomID} {
		if strings.Contains(strings.ToLower(f), term) {
			return true
		}
	}
	return false
}

func matchesType(r PublicRoom, types []string) bool {
	if types == nil {
		return true
	}
	for _, t := range types {
		if t == r.RoomType {
			return true
		}
	}
	return false
}

// Tokens are offsets into the sorted directory, opaque to clients.
func encodeOffset(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(n)))
}

func decodeOffset(s string) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil && len(raw) > 1 && raw[0] == 'o' {
		if n, err := strconv.Atoi(string(raw[1:])); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: invalid since token", ErrBadRequest)
}
