package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// InsertOutlier stores an event outside the timeline; an event already held
// (as outlier or in the timeline) is left as it is.
func InsertOutlier(ctx context.Context, tx Execer, eventID, roomID, json string, softFailed bool) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO outlier_events (event_id, room_id, json, soft_failed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`, eventID, roomID, json, softFailed)
	if err != nil {
		return fmt.Errorf("storage: insert outlier: %w", err)
	}
	return nil
}

// InsertRejected records that an event failed the authorization rules.
func InsertRejected(ctx context.Context, tx Execer, eventID, roomID, reason string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO rejected_events (event_id, room_id, reason) VALUES ($1, $2, $3)
		ON CONFLICT (event_id) DO NOTHING`, eventID, roomID, reason)
	if err != nil {
		return fmt.Errorf("storage: insert rejected: %w", err)
	}
	return nil
}

// EventKnowledge is what the server knows of an event ID.
type EventKnowledge int

const (
	// Unknown: never seen.
	Unknown EventKnowledge = iota
	// InTimeline: in the room's timeline, with its state.
	InTimeline
	// Outlier: held without state (auth chains, soft-failed events).
	Outlier
	// Rejected: failed the authorization rules.
	Rejected
)

// AnyEventJSON returns an event's JSON whether it is in the timeline or an
// outlier, with what is known of it; Unknown (and no error) when neither.
func (db *DB) AnyEventJSON(ctx context.Context, eventID string) (roomID, json string, k EventKnowledge, err error) {
	err = db.QueryRowContext(ctx, `SELECT room_id, json FROM events WHERE event_id = $1`, eventID).Scan(&roomID, &json)
	if err == nil {
		return roomID, json, InTimeline, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", Unknown, fmt.Errorf("storage: %w", err)
	}
	err = db.QueryRowContext(ctx, `SELECT room_id, json FROM outlier_events WHERE event_id = $1`, eventID).Scan(&roomID, &json)
	if err == nil {
		return roomID, json, Outlier, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", Unknown, fmt.Errorf("storage: %w", err)
	}
	err = db.QueryRowContext(ctx, `SELECT room_id FROM rejected_events WHERE event_id = $1`, eventID).Scan(&roomID)
	if err == nil {
		return roomID, "", Rejected, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", "", Unknown, fmt.Errorf("storage: %w", err)
	}
	return "", "", Unknown, nil
}

// EventsKnowledge is what is known of each of a set of event IDs, in one
// query (AnyEventJSON asks up to three); IDs never seen are left out.
func (db *DB) EventsKnowledge(ctx context.Context, eventIDs []string) (map[string]EventKnowledge, error) {
	out := map[string]EventKnowledge{}
	if len(eventIDs) == 0 {
		return out, nil
	}
	var args []any
	in := inList(&args, eventIDs)
	rows, err := db.QueryContext(ctx, `SELECT event_id, 1 FROM events WHERE event_id IN (`+in+`)
		UNION ALL SELECT event_id, 2 FROM outlier_events WHERE event_id IN (`+in+`)
		UNION ALL SELECT event_id, 3 FROM rejected_events WHERE event_id IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var k EventKnowledge
		if err := rows.Scan(&id, &k); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		// As AnyEventJSON: the timeline first, then outliers.
		if old, ok := out[id]; !ok || k < old {
			out[id] = k
		}
	}
	return out, rows.Err()
}

// IsRejected reports whether an event was rejected.
func (db *DB) IsRejected(ctx context.Context, eventID string) bool {
	var n int
	_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM rejected_events WHERE event_id = $1`, eventID).Scan(&n)
	return n > 0
}

// IsSoftFailed reports whether an event is held as a soft-failed outlier:
// kept, but never to be shown or built upon.
func (db *DB) IsSoftFailed(ctx context.Context, eventID string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outlier_events WHERE event_id = $1 AND soft_failed`, eventID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("storage: %w", err)
	}
	return n > 0, nil
}

// RemoteInvite is an invite of a local user to a room we are not in.
type RemoteInvite struct {
	RoomID, UserID, EventID, RoomVersion, Sender string
	// InviteState is a JSON array of stripped state events.
	InviteState string
}

// PutRemoteInvite stores (or replaces) a remote invite.
func PutRemoteInvite(ctx context.Context, tx Execer, inv RemoteInvite) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO remote_invites (room_id, user_id, event_id, room_version, sender, invite_state)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, user_id) DO UPDATE SET event_id = EXCLUDED.event_id,
		room_version = EXCLUDED.room_version, sender = EXCLUDED.sender, invite_state = EXCLUDED.invite_state`,
		inv.RoomID, inv.UserID, inv.EventID, inv.RoomVersion, inv.Sender, inv.InviteState)
	if err != nil {
		return fmt.Errorf("storage: put remote invite: %w", err)
	}
	return nil
}

// GetRemoteInvite loads a remote invite, or ErrNotFound.
func (db *DB) GetRemoteInvite(ctx context.Context, roomID, userID string) (*RemoteInvite, error) {
	inv := &RemoteInvite{}
	err := db.QueryRowContext(ctx, `SELECT room_id, user_id, event_id, room_version, sender, invite_state FROM remote_invites
		WHERE room_id = $1 AND user_id = $2`, roomID, userID).Scan(&inv.RoomID, &inv.UserID, &inv.EventID, &inv.RoomVersion, &inv.Sender, &inv.InviteState)
	if err != nil {
		return nil, notFound(err, "remote invite")
	}
	return inv, nil
}

// DeleteRemoteInvite forgets a remote invite once answered.
func DeleteRemoteInvite(ctx context.Context, tx Execer, roomID, userID string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM remote_invites WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	return err
}

// outlierRow reads an outlier into an EventRow: no stream position and no
// state snapshot, which outliers do not have.
func outlierRow(eventID, roomID, js string) (*EventRow, error) {
	var f struct {
		Type           string  `json:"type"`
		StateKey       *string `json:"state_key"`
		Sender         string  `json:"sender"`
		Depth          int64   `json:"depth"`
		OriginServerTS int64   `json:"origin_server_ts"`
	}
	if err := json.Unmarshal([]byte(js), &f); err != nil {
		return nil, fmt.Errorf("storage: outlier %s: %w", eventID, err)
	}
	return &EventRow{EventID: eventID, RoomID: roomID, Type: f.Type, StateKey: f.StateKey, Sender: f.Sender,
		Depth: f.Depth, OriginServerTS: f.OriginServerTS, JSON: js}, nil
}

// GetAnyEvent loads an event from the timeline or, failing that, from the
// outliers; ErrNotFound when neither holds it.
func (db *DB) GetAnyEvent(ctx context.Context, eventID string) (*EventRow, error) {
	row, err := db.GetEvent(ctx, eventID)
	if !errors.Is(err, ErrNotFound) {
		return row, err
	}
	var roomID, js string
	err = db.QueryRowContext(ctx, `SELECT room_id, json FROM outlier_events WHERE event_id = $1`, eventID).Scan(&roomID, &js)
	if err != nil {
		return nil, notFound(err, "event")
	}
	return outlierRow(eventID, roomID, js)
}

// outliersAmong loads the outliers among ids.
func (db *DB) outliersAmong(ctx context.Context, ids []string) ([]*EventRow, error) {
	var out []*EventRow
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i := range args {
			args[i] = ids[i]
		}
		rows, err := db.QueryContext(ctx, `SELECT event_id, room_id, json FROM outlier_events WHERE event_id IN (`+placeholders(1, n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		for rows.Next() {
			var id, roomID, js string
			if err := rows.Scan(&id, &roomID, &js); err != nil {
				rows.Close()
				return nil, err
			}
			r, err := outlierRow(id, roomID, js)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, r)
		}
		rows.Close()
		ids = ids[n:]
	}
	return out, nil
}
