package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Report is a user's report of a room, an event or a user.
type Report struct {
	ID         int64
	ReceivedTS int64
	Reporter   string
	RoomID     string // "" for user reports
	EventID    string // "" for room and user reports
	// TargetUser is the reported user, or the reported event's sender.
	TargetUser string
	Reason     string
}

// InsertReport stores a report and returns its ID.
func (db *DB) InsertReport(ctx context.Context, r Report) (int64, error) {
	var id int64
	err := db.QueryRowContext(ctx, `INSERT INTO content_reports (received_ts, reporter, room_id, event_id, target_user, reason)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING report_nid`,
		r.ReceivedTS, r.Reporter, r.RoomID, r.EventID, r.TargetUser, r.Reason).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("storage: insert report: %w", err)
	}
	return id, nil
}

// Reports lists reports newest first, those with an ID below before (0:
// from the newest), at most limit, and the total number of reports.
func (db *DB) Reports(ctx context.Context, before int64, limit int) ([]Report, int, error) {
	var total int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM content_reports`).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("storage: reports: %w", err)
	}
	q := `SELECT report_nid, received_ts, reporter, room_id, event_id, target_user, reason FROM content_reports`
	args := []any{max(limit, 1)}
	if before > 0 {
		q += ` WHERE report_nid < $2`
		args = append(args, before)
	}
	rows, err := db.QueryContext(ctx, q+` ORDER BY report_nid DESC LIMIT $1`, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("storage: reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		if err := rows.Scan(&r.ID, &r.ReceivedTS, &r.Reporter, &r.RoomID, &r.EventID, &r.TargetUser, &r.Reason); err != nil {
			return nil, 0, fmt.Errorf("storage: reports: %w", err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

// ServerNoticeRoom is the user's server notices room, or "" when there is
// none yet.
func (db *DB) ServerNoticeRoom(ctx context.Context, userID string) (string, error) {
	var roomID string
	err := db.QueryRowContext(ctx, `SELECT room_id FROM server_notice_rooms WHERE user_id = $1`, userID).Scan(&roomID)
	if err == sql.ErrNoRows {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("storage: server notice room: %w", err)
	}
	return roomID, nil
}

// SetServerNoticeRoom records the user's server notices room.
func (db *DB) SetServerNoticeRoom(ctx context.Context, userID, roomID string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id`, userID, roomID)
	if err != nil {
		return fmt.Errorf("storage: server notice room: %w", err)
	}
	return nil
}
