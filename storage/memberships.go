package storage

import (
	"context"
	"fmt"
)

// Membership is a user's current membership of a room.
type Membership struct {
	RoomID     string
	UserID     string
	Membership string
	EventID    string
	StreamPos  int64
	Forgotten  bool
}

// SetMembership records a user's new membership of a room. A new membership
// event un-forgets the room.
func SetMembership(ctx context.Context, tx Execer, m Membership) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos, forgotten)
		VALUES ($1, $2, $3, $4, $5, FALSE)
		ON CONFLICT (room_id, user_id) DO UPDATE SET membership = EXCLUDED.membership, event_id = EXCLUDED.event_id,
			stream_pos = EXCLUDED.stream_pos, forgotten = FALSE`,
		m.RoomID, m.UserID, m.Membership, m.EventID, m.StreamPos)
	if err != nil {
		return fmt.Errorf("storage: set membership: %w", err)
	}
	return nil
}

// GetMembership is a user's current membership of a room, or ErrNotFound.
func (db *DB) GetMembership(ctx context.Context, roomID, userID string) (*Membership, error) {
	m := &Membership{}
	err := db.QueryRowContext(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten
		FROM room_memberships WHERE room_id = $1 AND user_id = $2`, roomID, userID).
		Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.StreamPos, &m.Forgotten)
	if err != nil {
		return nil, notFound(err, "membership")
	}
	return m, nil
}

// UserMemberships lists a user's rooms (forgotten ones excluded) whose
// membership is one of the given ones (all when none are given).
func (db *DB) UserMemberships(ctx context.Context, userID string, memberships ...string) ([]Membership, error) {
	q := `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_memberships WHERE user_id = $1 AND NOT forgotten`
	args := []any{userID}
	if len(memberships) > 0 {
		q += ` AND membership IN (` + placeholders(2, len(memberships)) + `)`
		for _, m := range memberships {
			args = append(args, m)
		}
	}
	return db.queryMemberships(ctx, q+` ORDER BY stream_pos`, args...)
}

// MembershipChanges lists the user's memberships set at a stream position
// in (from, to].
func (db *DB) MembershipChanges(ctx context.Context, userID string, from, to int64) ([]Membership, error) {
	return db.queryMemberships(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_memberships
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, userID, from, to)
}

// RoomMembers lists the current members of a room with the given membership.
func (db *DB) RoomMembers(ctx context.Context, roomID, membership string) ([]Membership, error) {
	return db.queryMemberships(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_memberships
		WHERE room_id = $1 AND membership = $2 ORDER BY user_id`, roomID, membership)
}

// RoomMembersOf lists the members of a room with the given membership
// whose user IDs are of server: a room's local members, say, without
// reading the thousands of others of a large room.
func (db *DB) RoomMembersOf(ctx context.Context, roomID, membership, server string) ([]Membership, error) {
	// Server names hold no LIKE wildcards (letters, digits, '-', '.', ':'
	// and the brackets of IPv6 literals); the ':' before it anchors the
	// match to the whole server part.
	return db.queryMemberships(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_memberships
		WHERE room_id = $1 AND membership = $2 AND user_id LIKE $3 ORDER BY user_id`, roomID, membership, "%:"+server)
}

// ForgetRoom hides a room the user has left from their room lists.
func (db *DB) ForgetRoom(ctx context.Context, roomID, userID string) error {
	_, err := db.ExecContext(ctx, `UPDATE room_memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	return err
}

func (db *DB) queryMemberships(ctx context.Context, q string, args ...any) ([]Membership, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.StreamPos, &m.Forgotten); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
