package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// StreamPresence orders presence changes.
const StreamPresence = "presence"

// Presence is a user's presence as last recorded.
type Presence struct {
	UserID string
	// Presence is online, unavailable or offline.
	Presence string
	// StatusMsg is "" when the user set none.
	StatusMsg       string
	LastActiveTS    int64 // milliseconds since 1970
	CurrentlyActive bool
	StreamPos       int64
}

const presenceColumns = `p.user_id, p.presence, p.status_msg, p.last_active_ts, p.currently_active, p.stream_pos`

// sharesRoomWith is a condition on p.user_id: the user is $1 or shares a
// room with $1 (both joined).
const sharesRoomWith = `(p.user_id = $1 OR EXISTS (SELECT 1 FROM room_memberships me
	JOIN room_memberships o ON o.room_id = me.room_id
	WHERE me.user_id = $1 AND me.membership = 'join' AND o.user_id = p.user_id AND o.membership = 'join'))`

// PutPresence stores p as its user's presence at a new presence stream
// position, which it returns.
func (db *DB) PutPresence(ctx context.Context, p Presence) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		var err error
		if pos, err = streamPos(ctx, tx, StreamPresence); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO presence (user_id, presence, status_msg, last_active_ts, currently_active, stream_pos)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg,
				last_active_ts = excluded.last_active_ts, currently_active = excluded.currently_active, stream_pos = excluded.stream_pos`,
			p.UserID, p.Presence, p.StatusMsg, p.LastActiveTS, p.CurrentlyActive, pos)
		if err != nil {
			return fmt.Errorf("storage: write presence: %w", err)
		}
		return nil
	})
	return pos, err
}

// GetPresence is the user's recorded presence, or ErrNotFound.
func (db *DB) GetPresence(ctx context.Context, userID string) (*Presence, error) {
	ps, err := db.queryPresence(ctx, `SELECT `+presenceColumns+` FROM presence p WHERE p.user_id = $1`, userID)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w: presence", ErrNotFound)
	}
	return &ps[0], nil
}

// PresenceChanged lists the presence written at presence stream positions
// in (from, to] of userID and of the users who share a room with userID.
// The range scan of the stream index comes first, so that the cost follows
// the number of changes.
func (db *DB) PresenceChanged(ctx context.Context, userID string, from, to int64) ([]Presence, error) {
	return db.queryPresence(ctx, `SELECT `+presenceColumns+` FROM presence p
		WHERE p.stream_pos > $2 AND p.stream_pos <= $3 AND `+sharesRoomWith+`
		ORDER BY p.stream_pos`, userID, from, to)
}

// RoommatesPresence lists the presence, up to presence stream position to,
// of userID and of the users who share a room with userID, leaving out
// users who are offline without a status message (what clients assume of
// anyone they have no presence for): what an initial /sync shows.
func (db *DB) RoommatesPresence(ctx context.Context, userID string, to int64) ([]Presence, error) {
	return db.queryPresence(ctx, `SELECT `+presenceColumns+` FROM presence p
		WHERE (p.user_id = $1 OR p.user_id IN (SELECT o.user_id FROM room_memberships me
				JOIN room_memberships o ON o.room_id = me.room_id
				WHERE me.user_id = $1 AND me.membership = 'join' AND o.membership = 'join'))
		AND p.stream_pos <= $2 AND (p.presence <> 'offline' OR p.status_msg <> '' OR p.user_id = $1)
		ORDER BY p.stream_pos`, userID, to)
}

// NewRoommatesPresence lists the presence, up to presence stream position
// to, of the users who came to share a room with userID through a
// membership change at an event stream position in (evFrom, evTo]: their
// joins to userID's rooms, and userID's joins to theirs. Like
// SharedRoomChanges, it starts from the range's membership events and
// userID's own membership changes.
func (db *DB) NewRoommatesPresence(ctx context.Context, userID string, evFrom, evTo, to int64) ([]Presence, error) {
	return db.queryPresence(ctx, `SELECT `+presenceColumns+` FROM presence p
		WHERE p.user_id IN (
			SELECT o.user_id FROM events e
				JOIN room_memberships me ON me.room_id = e.room_id AND me.user_id = $1 AND me.membership = 'join'
				JOIN room_memberships o ON o.room_id = e.room_id AND o.user_id = e.state_key AND o.membership = 'join'
				WHERE e.stream_pos > $2 AND e.stream_pos <= $3 AND e.type = 'm.room.member' AND e.state_key <> $1
			UNION
			SELECT o.user_id FROM room_memberships me
				JOIN room_memberships o ON o.room_id = me.room_id AND o.membership = 'join' AND o.user_id <> $1
				WHERE me.user_id = $1 AND me.membership = 'join' AND me.stream_pos > $2 AND me.stream_pos <= $3)
		AND p.stream_pos <= $4
		ORDER BY p.stream_pos`, userID, evFrom, evTo, to)
}

// PresenceNotOffline lists every recorded presence that is not offline,
// for the server to time out the local users who stopped syncing while
// it was down.
func (db *DB) PresenceNotOffline(ctx context.Context) ([]Presence, error) {
	return db.queryPresence(ctx, `SELECT `+presenceColumns+` FROM presence p WHERE p.presence <> 'offline'`)
}

// ShareRoom reports whether two users are joined to a common room.
func (db *DB) ShareRoom(ctx context.Context, a, b string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM room_memberships x
		JOIN room_memberships y ON y.room_id = x.room_id
		WHERE x.user_id = $1 AND x.membership = 'join' AND y.user_id = $2 AND y.membership = 'join' LIMIT 1) s`, a, b).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("storage: shared rooms: %w", err)
	}
	return n > 0, nil
}

func (db *DB) queryPresence(ctx context.Context, q string, args ...any) ([]Presence, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: presence: %w", err)
	}
	defer rows.Close()
	var out []Presence
	for rows.Next() {
		var p Presence
		if err := rows.Scan(&p.UserID, &p.Presence, &p.StatusMsg, &p.LastActiveTS, &p.CurrentlyActive, &p.StreamPos); err != nil {
			return nil, fmt.Errorf("storage: presence: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: presence: %w", err)
	}
	return out, nil
}
