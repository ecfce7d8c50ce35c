package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// DirectoryProfile is a user's entry in the user directory.
type DirectoryProfile struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// UpsertDirectoryProfiles records the profiles users last showed in a
// room. searchText is computed by the caller (lower-cased user ID and
// display name), because SQLite's lower() knows only ASCII.
func (db *DB) UpsertDirectoryProfiles(ctx context.Context, profiles []DirectoryProfile, searchText func(DirectoryProfile) string) error {
	if len(profiles) == 0 {
		return nil
	}
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		for _, p := range profiles {
			_, err := tx.ExecContext(ctx, `INSERT INTO user_directory (user_id, display_name, avatar_url, search_text)
				VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,
				avatar_url = excluded.avatar_url, search_text = excluded.search_text`,
				p.UserID, p.DisplayName, p.AvatarURL, searchText(p))
			if err != nil {
				return fmt.Errorf("storage: user directory: %w", err)
			}
		}
		return nil
	})
}

// SetRoomDirectoryFlags records whether a room's members are visible to
// everyone in the user directory.
func (db *DB) SetRoomDirectoryFlags(ctx context.Context, roomID string, publicJoin, worldReadable bool) error {
	_, err := db.ExecContext(ctx, `INSERT INTO room_directory_flags (room_id, public_join, world_readable) VALUES ($1, $2, $3)
		ON CONFLICT (room_id) DO UPDATE SET public_join = excluded.public_join, world_readable = excluded.world_readable`,
		roomID, publicJoin, worldReadable)
	if err != nil {
		return fmt.Errorf("storage: room directory flags: %w", err)
	}
	return nil
}

// HasRoomDirectoryFlags reports whether the room's flags were recorded.
func (db *DB) HasRoomDirectoryFlags(ctx context.Context, roomID string) (bool, error) {
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM room_directory_flags WHERE room_id = $1`, roomID).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: room directory flags: %w", err)
	}
	return true, nil
}

// UserSearch is a user directory search.
type UserSearch struct {
	// Searcher finds the users they share a room with and the members of
	// rooms with a public join rule or world_readable history.
	Searcher string
	// Patterns are LIKE patterns (lower case, escaped with \) that the
	// lower-cased user ID or display name must all match.
	Patterns []string
	// AllLocal also finds every active local user of ServerName.
	AllLocal   bool
	ServerName string
	Limit      int
}

// SearchUserDirectory returns up to Limit users the searcher may find
// whose user ID or display name matches every pattern, in no particular
// order.
func (db *DB) SearchUserDirectory(ctx context.Context, s UserSearch) ([]DirectoryProfile, error) {
	args := []any{s.Searcher}
	candidates := `SELECT m.user_id FROM room_memberships m WHERE m.membership = 'join' AND m.room_id IN (
			SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = 'join'
			UNION SELECT room_id FROM room_directory_flags WHERE public_join OR world_readable)`
	if s.AllLocal {
		args = append(args, s.ServerName)
		candidates += fmt.Sprintf(` UNION SELECT '@' || localpart || ':' || $%d FROM accounts WHERE NOT deactivated`, len(args))
	}
	var match []string
	for _, p := range s.Patterns {
		args = append(args, p)
		match = append(match, fmt.Sprintf(`COALESCE(d.search_text, LOWER(c.user_id)) LIKE $%d ESCAPE '\'`, len(args)))
	}
	if len(match) == 0 {
		match = []string{"1 = 1"}
	}
	args = append(args, max(s.Limit, 1))
	q := `SELECT c.user_id, COALESCE(d.display_name, ''), COALESCE(d.avatar_url, '')
		FROM (` + candidates + `) c LEFT JOIN user_directory d ON d.user_id = c.user_id
		WHERE ` + strings.Join(match, " AND ") + fmt.Sprintf(` LIMIT $%d`, len(args))
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: user directory search: %w", err)
	}
	defer rows.Close()
	var out []DirectoryProfile
	for rows.Next() {
		var p DirectoryProfile
		if err := rows.Scan(&p.UserID, &p.DisplayName, &p.AvatarURL); err != nil {
			return nil, fmt.Errorf("storage: user directory search: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// JoinedMemberCounts counts the joined members of each room.
func (db *DB) JoinedMemberCounts(ctx context.Context, roomIDs []string) (map[string]int, error) {
	out := make(map[string]int, len(roomIDs))
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), 500)
		var args []any
		rows, err := db.QueryContext(ctx, `SELECT room_id, COUNT(*) FROM room_memberships
			WHERE membership = 'join' AND room_id IN (`+inList(&args, roomIDs[:n])+`) GROUP BY room_id`, args...)
		if err != nil {
			return nil, fmt.Errorf("storage: member counts: %w", err)
		}
		for rows.Next() {
			var id string
			var c int
			if err := rows.Scan(&id, &c); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: member counts: %w", err)
			}
			out[id] = c
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("storage: member counts: %w", err)
		}
		roomIDs = roomIDs[n:]
	}
	return out, nil
}

// MoveAliases points every local alias of one room at another (a room
// upgrade) and returns the aliases moved.
func (db *DB) MoveAliases(ctx context.Context, fromRoom, toRoom string) ([]string, error) {
	aliases, err := db.RoomAliases(ctx, fromRoom)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `UPDATE room_aliases SET room_id = $2 WHERE room_id = $1`, fromRoom, toRoom); err != nil {
		return nil, fmt.Errorf("storage: move aliases: %w", err)
	}
	return aliases, nil
}
