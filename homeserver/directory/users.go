package directory

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"github.com/parley-chat/parley/storage"
)

// The user directory finds, by user ID or display name, the users who
// share a room with the searcher and the members of rooms with a public
// join rule or world_readable history (and, when so configured, every
// local user). Profiles come from the member events the index reads;
// local users' own profiles fill the gaps.

// UserResult is a user directory search result.
type UserResult struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// maxUserResults bounds one search's limit; maxCandidates the matches
// ranked to pick them.
const (
	maxUserResults = 50
	maxCandidates  = 500
)

// SearchUsers finds up to limit users matching term; limited reports that
// more matched.
func (s *Service) SearchUsers(ctx context.Context, searcher, term string, limit int) (results []UserResult, limited bool, err error) {
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, maxUserResults)
	words := strings.Fields(strings.ToLower(term))
	if len(words) == 0 {
		return []UserResult{}, false, nil
	}
	if len(words) > 5 {
		words = words[:5]
	}
	if s.catchUp != nil {
		_ = s.catchUp(ctx) // behind after the wait: search what is indexed
	}
	patterns := make([]string, len(words))
	for i, w := range words {
		patterns[i] = "%" + escapeLike(w) + "%"
	}
	found, err := s.db.SearchUserDirectory(ctx, storage.UserSearch{Searcher: searcher, Patterns: patterns,
		AllLocal: s.cfg.SearchAllLocalUsers, ServerName: s.cfg.ServerName, Limit: maxCandidates})
	if err != nil {
		return nil, false, err
	}
	suffix := ":" + s.cfg.ServerName
	out := make([]UserResult, 0, len(found))
	for _, p := range found {
		r := UserResult{UserID: p.UserID, DisplayName: p.DisplayName, AvatarURL: p.AvatarURL}
		if r.DisplayName == "" && strings.HasSuffix(r.UserID, suffix) {
			// A local user seen in no room yet: their own profile.
			if prof, err := s.db.GetProfile(ctx, strings.TrimSuffix(r.UserID[1:], suffix)); err == nil {
				r.DisplayName, r.AvatarURL = prof.DisplayName, prof.AvatarURL
			}
		}
		out = append(out, r)
	}
	rank := func(r UserResult) int { return score(r, words) }
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra > rb
		}
		if (a.DisplayName != "") != (b.DisplayName != "") {
			return a.DisplayName != ""
		}
		if (a.AvatarURL != "") != (b.AvatarURL != "") {
			return a.AvatarURL != ""
		}
		return a.UserID < b.UserID
	})
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, len(found) == maxCandidates, nil
}

// score ranks a result: exact matches of the localpart or display name
// first, then matches at the start of a word, then anywhere.
func score(r UserResult, words []string) int {
	localpart, _, _ := strings.Cut(strings.TrimPrefix(strings.ToLower(r.UserID), "@"), ":")
	name := strings.ToLower(r.DisplayName)
	total := 0
	for _, w := range words {
		switch {
		case localpart == w || name == w:
			total += 4
		case strings.HasPrefix(localpart, w) || wordPrefix(name, w):
			total += 2
		default:
			total++
		}
	}
	return total
}

func wordPrefix(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, w) {
			return true
		}
	}
	return false
}

// escapeLike escapes LIKE's wildcards (the queries use ESCAPE '\').
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// searchText is what searches match a profile against.
func searchText(p storage.DirectoryProfile) string {
	return strings.ToLower(p.UserID + " " + p.DisplayName)
}

// Index is the indexer function of the user directory: it records the
// profiles of joining members and which rooms are public or world
// readable.
func (s *Service) Index(ctx context.Context, rows []*storage.EventRow) error {
	var profiles []storage.DirectoryProfile
	// Rooms to look at, and whether their join rule or history visibility
	// may have changed.
	touched := map[string]bool{}
	var order []string
	touch := func(roomID string, flags bool) {
		if _, seen := touched[roomID]; !seen {
			order = append(order, roomID)
		}
		touched[roomID] = touched[roomID] || flags
	}
	for _, row := range rows {
		if row.StateKey == nil {
			continue
		}
		switch row.Type {
		case "m.room.member":
			if row.RedactedBy != "" {
				continue
			}
			if p, ok := memberProfile(*row.StateKey, row.JSON); ok {
				profiles = append(profiles, p)
				touch(row.RoomID, false) // a room seen for the first time (a remote join) is read whole
			}
		case "m.room.create", "m.room.join_rules", "m.room.history_visibility":
			if *row.StateKey == "" {
				touch(row.RoomID, true)
			}
		}
	}
	if err := s.db.UpsertDirectoryProfiles(ctx, profiles, searchText); err != nil {
		return err
	}
	for _, roomID := range order {
		if err := s.refreshRoom(ctx, roomID, touched[roomID]); err != nil {
			return err
		}
	}
	return nil
}

// memberProfile is the profile in a join event's JSON.
func memberProfile(userID, raw string) (storage.DirectoryProfile, bool) {
	var ev struct {
		Content struct {
			Membership  string `json:"membership"`
			DisplayName any    `json:"displayname"`
			AvatarURL   any    `json:"avatar_url"`
		} `json:"content"`
	}
	if json.Unmarshal([]byte(raw), &ev) != nil || ev.Content.Membership != "join" {
		return storage.DirectoryProfile{}, false
	}
	name, _ := ev.Content.DisplayName.(string)
	avatar, _ := ev.Content.AvatarURL.(string)
	return storage.DirectoryProfile{UserID: userID, DisplayName: name, AvatarURL: avatar}, true
}

// refreshRoom records a room's flags from its current state when they may
// have changed. The first time it sees a room, it also records the
// profiles of its joined members, which for a room joined over federation
// arrived as state rather than timeline. It reads the state from the
// database, so that indexing old rooms does not load them all into the
// room engine.
func (s *Service) refreshRoom(ctx context.Context, roomID string, flagsChanged bool) error {
	known, err := s.db.HasRoomDirectoryFlags(ctx, roomID)
	if err != nil || (known && !flagsChanged) {
		return err
	}
	room, err := s.db.GetRoom(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	state, err := s.db.LoadSnapshot(ctx, room.CurrentSnapshot)
	if err != nil {
		return err
	}
	field := func(eventType, key string) string {
		id, ok := state[storage.StateKey{Type: eventType}]
		if !ok {
			return ""
		}
		row, err := s.db.GetAnyEvent(ctx, id)
		if err != nil {
			return ""
		}
		var ev struct {
			Content map[string]any `json:"content"`
		}
		_ = json.Unmarshal([]byte(row.JSON), &ev)
		v, _ := ev.Content[key].(string)
		return v
	}
	public := field("m.room.join_rules", "join_rule") == "public"
	worldReadable := field("m.room.history_visibility", "history_visibility") == "world_readable"
	if err := s.db.SetRoomDirectoryFlags(ctx, roomID, public, worldReadable); err != nil {
		return err
	}
	if known {
		return nil
	}
	var ids []string
	for k, id := range state {
		if k.Type == "m.room.member" {
			ids = append(ids, id)
		}
	}
	rows, err := s.db.GetEvents(ctx, ids)
	if err != nil {
		return err
	}
	var profiles []storage.DirectoryProfile
	for _, row := range rows {
		if row.StateKey != nil && row.RedactedBy == "" {
			if p, ok := memberProfile(*row.StateKey, row.JSON); ok {
				profiles = append(profiles, p)
			}
		}
	}
	return s.db.UpsertDirectoryProfiles(ctx, profiles, searchText)
}
