package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// StreamPushCounts orders changes of unread notification counts, which
// /sync reports for rooms whose counts changed.
const StreamPushCounts = "push_counts"

// ThreadMain is the thread ID of the main timeline in notification counts
// and read markers; ThreadAll is that of an unthreaded read marker, which
// covers the main timeline and every thread.
const (
	ThreadMain = "main"
	ThreadAll  = ""
)

// PushNotification is one event a user was notified about.
type PushNotification struct {
	UserID    string
	RoomID    string
	EventID   string
	ThreadID  string // ThreadMain or a thread root's event ID
	StreamPos int64  // the event's stream position
	TS        int64  // when the notification was made (milliseconds)
	Actions   string // the JSON array of the rule's actions
	Highlight bool
}

// PushRead moves a user's read marker in a room forward to StreamPos:
// ThreadID is ThreadAll for an unthreaded receipt, ThreadMain or a thread
// root for a threaded one.
type PushRead struct {
	UserID    string
	RoomID    string
	ThreadID  string
	StreamPos int64
}

// UnreadCount is a user's unread counts in one thread of a room.
type UnreadCount struct {
	RoomID        string
	ThreadID      string
	Notifications int64
	Highlights    int64
	// StreamPos is where on the push_counts stream the row last changed.
	StreamPos int64
}

// PushRecorded is what RecordPush changed.
type PushRecorded struct {
	// Changed are the users whose counts changed.
	Changed []string
	// Inserted are the notifications that were new (not written before),
	// the ones to push to gateways.
	Inserted []PushNotification
}

// RecordPush writes what evaluating a batch of events produced, in one
// transaction: first the read markers of reads (the senders' own events
// count as read), then the notifications, each of which raises the counts
// unless the user has already read past it. Writing the same notification
// twice has no effect, so that events may be evaluated again after a
// restart.
//
// The push_counts stream lock is taken first: it serialises every writer
// of counts and markers, so that a count recomputed after a receipt cannot
// miss a notification written at the same time.
func (db *DB) RecordPush(ctx context.Context, notifs []PushNotification, reads []PushRead) (PushRecorded, error) {
	var out PushRecorded
	if len(notifs) == 0 && len(reads) == 0 {
		return out, nil
	}
	changed := map[string]bool{}
	err := db.WithTx(ctx, func(tx *sql.Tx) error {
		clear(changed)
		out.Inserted = nil
		pos, err := streamPos(ctx, tx, StreamPushCounts)
		if err != nil {
			return err
		}
		for _, r := range reads {
			ok, err := markRead(ctx, tx, r, pos)
			if err != nil {
				return err
			}
			if ok {
				changed[r.UserID] = true
			}
		}
		byRoom := map[string][]PushNotification{}
		var roomIDs []string
		for _, n := range notifs {
			if _, ok := byRoom[n.RoomID]; !ok {
				roomIDs = append(roomIDs, n.RoomID)
			}
			byRoom[n.RoomID] = append(byRoom[n.RoomID], n)
		}
		for _, roomID := range roomIDs {
			users, inserted, err := db.addNotifications(ctx, tx, roomID, byRoom[roomID], pos)
			if err != nil {
				return err
			}
			for _, u := range users {
				changed[u] = true
			}
			out.Inserted = append(out.Inserted, inserted...)
		}
		return nil
	})
	if err != nil {
		return PushRecorded{}, err
	}
	out.Changed = make([]string, 0, len(changed))
	for u := range changed {
		out.Changed = append(out.Changed, u)
	}
	sort.Strings(out.Changed)
	return out, nil
}

// MarkPushRead moves a read marker forward (never back) and recounts the
// notifications after it. It reports whether any count changed.
func (db *DB) MarkPushRead(ctx context.Context, r PushRead) (bool, error) {
	rec, err := db.RecordPush(ctx, nil, []PushRead{r})
	return len(rec.Changed) > 0, err
}

// markRead applies one read inside RecordPush's transaction.
func markRead(ctx context.Context, tx *sql.Tx, r PushRead, pos int64) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO push_read_markers (room_id, user_id, thread_id, stream_pos)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id, user_id, thread_id) DO UPDATE SET stream_pos = excluded.stream_pos
		WHERE push_read_markers.stream_pos < excluded.stream_pos`, r.RoomID, r.UserID, r.ThreadID, r.StreamPos)
	if err != nil {
		return false, fmt.Errorf("storage: move read marker: %w", err)
	}
	if rowsAffected(res) == 0 {
		return false, nil // not a step forward
	}
	// Only counts above zero can change: a marker moving forward never
	// makes more unread.
	q := `SELECT thread_id, notification_count, highlight_count FROM push_unread_counts
		WHERE user_id = $1 AND room_id = $2 AND (notification_count > 0 OR highlight_count > 0)`
	args := []any{r.UserID, r.RoomID}
	if r.ThreadID != ThreadAll {
		q += ` AND thread_id = $3`
		args = append(args, r.ThreadID)
	}
	type row struct {
		thread      string
		notif, high int64
	}
	var rows []row
	if err := queryPushRows(ctx, tx, q, args, func(s pushRowScanner) error {
		var x row
		if err := s.Scan(&x.thread, &x.notif, &x.high); err != nil {
			return err
		}
		rows = append(rows, x)
		return nil
	}); err != nil {
		return false, fmt.Errorf("storage: read unread counts: %w", err)
	}
	if len(rows) == 0 {
		return false, nil
	}
	markers, err := readMarkers(ctx, tx, r.RoomID, r.UserID)
	if err != nil {
		return false, err
	}
	changed := false
	for _, x := range rows {
		after := max(markers[markerKey{r.UserID, ThreadAll}], markers[markerKey{r.UserID, x.thread}])
		var notif, high int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN highlight THEN 1 ELSE 0 END), 0)
			FROM push_notifications WHERE user_id = $1 AND room_id = $2 AND thread_id = $3 AND stream_pos > $4`,
			r.UserID, r.RoomID, x.thread, after).Scan(&notif, &high); err != nil {
			return false, fmt.Errorf("storage: count notifications: %w", err)
		}
		if notif == x.notif && high == x.high {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE push_unread_counts SET notification_count = $4, highlight_count = $5, stream_pos = $6
			WHERE user_id = $1 AND room_id = $2 AND thread_id = $3`, r.UserID, r.RoomID, x.thread, notif, high, pos); err != nil {
			return false, fmt.Errorf("storage: update unread counts: %w", err)
		}
		changed = true
	}
	return changed, nil
}

type markerKey struct{ user, thread string }

// readMarkers loads the read markers of a room: of one user, or of every
// user when userID is "".
func readMarkers(ctx context.Context, q Execer, roomID, userID string) (map[markerKey]int64, error) {
	query := `SELECT user_id, thread_id, stream_pos FROM push_read_markers WHERE room_id = $1`
	args := []any{roomID}
	if userID != "" {
		query += ` AND user_id = $2`
		args = append(args, userID)
	}
	out := map[markerKey]int64{}
	err := queryPushRows(ctx, q, query, args, func(s pushRowScanner) error {
		var k markerKey
		var p int64
		if err := s.Scan(&k.user, &k.thread, &p); err != nil {
			return err
		}
		out[k] = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: read markers: %w", err)
	}
	return out, nil
}

// numberedPlaceholders is placeholders for the multi-row statements of
// this file. SQLite takes "$N" for a named parameter, which its parser
// looks up by a linear scan of the names seen so far, so a statement with
// hundreds of them costs their square; "?N" is numbered, read in order at
// no cost, and bound by the same ordinal. PostgreSQL only knows "$N".
func (db *DB) numberedPlaceholders(start, n int) string {
	if db.dialect.name != "sqlite" {
		return placeholders(start, n)
	}
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "?%d", start+i)
	}
	return b.String()
}

// pushChunk is how many rows one multi-row statement writes.
const pushChunk = 500

type countKey struct{ user, thread string }

type countDelta struct{ notif, high int64 }

// addNotifications inserts one room's notifications and raises the counts
// of those not yet read; it returns the users whose counts rose and the
// notifications that were new.
func (db *DB) addNotifications(ctx context.Context, tx *sql.Tx, roomID string, ns []PushNotification, pos int64) ([]string, []PushNotification, error) {
	ph := db.numberedPlaceholders
	markers, err := readMarkers(ctx, tx, roomID, "")
	if err != nil {
		return nil, nil, err
	}
	// The notifications of one event share everything but the user, the
	// actions and the highlight flag: those go in a VALUES list, the rest
	// are given once. Fewer parameters matter: the SQLite driver's cost
	// grows with the square of a statement's parameter count.
	inserted := map[[2]any]bool{}
	for start := 0; start < len(ns); {
		end := start + 1
		for end < len(ns) && ns[end].StreamPos == ns[start].StreamPos {
			end++
		}
		first := ns[start]
		for rest := ns[start:end]; len(rest) > 0; {
			n := min(len(rest), pushChunk)
			var q strings.Builder
			q.WriteString(`INSERT INTO push_notifications (user_id, stream_pos, room_id, event_id, thread_id, ts, actions, highlight)
				SELECT v.column1, CAST(` + ph(1, 1) + ` AS BIGINT), ` + ph(2, 3) + `, CAST(` + ph(5, 1) + ` AS BIGINT), v.column2, CAST(v.column3 AS BOOLEAN) FROM (VALUES `)
			args := make([]any, 0, 5+n*3)
			args = append(args, first.StreamPos, first.RoomID, first.EventID, first.ThreadID, first.TS)
			for i, x := range rest[:n] {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(" + ph(6+i*3, 3) + ")")
				highlight := 0
				if x.Highlight {
					highlight = 1
				}
				args = append(args, x.UserID, x.Actions, highlight)
			}
			// WHERE true: without it SQLite would read ON CONFLICT as a
			// join's ON.
			q.WriteString(`) AS v WHERE true ON CONFLICT (user_id, stream_pos) DO NOTHING RETURNING user_id, stream_pos`)
			if err := queryPushRows(ctx, tx, q.String(), args, func(s pushRowScanner) error {
				var u string
				var p int64
				if err := s.Scan(&u, &p); err != nil {
					return err
				}
				inserted[[2]any{u, p}] = true
				return nil
			}); err != nil {
				return nil, nil, fmt.Errorf("storage: insert notifications: %w", err)
			}
			rest = rest[n:]
		}
		start = end
	}
	deltas := map[countKey]*countDelta{}
	var order []countKey
	var fresh []PushNotification
	for _, x := range ns {
		if !inserted[[2]any{x.UserID, x.StreamPos}] {
			continue
		}
		fresh = append(fresh, x)
		after := max(markers[markerKey{x.UserID, ThreadAll}], markers[markerKey{x.UserID, x.ThreadID}])
		if x.StreamPos <= after {
			continue // read already (the receipt overtook the evaluation)
		}
		k := countKey{x.UserID, x.ThreadID}
		d := deltas[k]
		if d == nil {
			d = &countDelta{}
			deltas[k] = d
			order = append(order, k)
		}
		d.notif++
		if x.Highlight {
			d.high++
		}
	}
	for rest := order; len(rest) > 0; {
		n := min(len(rest), pushChunk)
		var q strings.Builder
		q.WriteString(`INSERT INTO push_unread_counts (user_id, room_id, thread_id, notification_count, highlight_count, stream_pos)
			SELECT v.column1, ` + ph(1, 1) + `, v.column2, CAST(v.column3 AS BIGINT), CAST(v.column4 AS BIGINT), CAST(` + ph(2, 1) + ` AS BIGINT) FROM (VALUES `)
		args := make([]any, 0, 2+n*4)
		args = append(args, roomID, pos)
		for i, k := range rest[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + ph(3+i*4, 4) + ")")
			d := deltas[k]
			args = append(args, k.user, k.thread, d.notif, d.high)
		}
		q.WriteString(`) AS v WHERE true ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET
			notification_count = push_unread_counts.notification_count + excluded.notification_count,
			highlight_count = push_unread_counts.highlight_count + excluded.highlight_count,
			stream_pos = excluded.stream_pos`)
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return nil, nil, fmt.Errorf("storage: raise unread counts: %w", err)
		}
		rest = rest[n:]
	}
	users := make([]string, 0, len(order))
	seen := map[string]bool{}
	for _, k := range order {
		if !seen[k.user] {
			seen[k.user] = true
			users = append(users, k.user)
		}
	}
	return users, fresh, nil
}

// UnreadCounts returns a user's count rows that are above zero or changed
// after stream position since (on the push_counts stream).
func (db *DB) UnreadCounts(ctx context.Context, userID string, since int64) ([]UnreadCount, error) {
	var out []UnreadCount
	err := queryPushRows(ctx, db, `SELECT room_id, thread_id, notification_count, highlight_count, stream_pos FROM push_unread_counts
		WHERE user_id = $1 AND (notification_count > 0 OR highlight_count > 0 OR stream_pos > $2)`, []any{userID, since},
		func(s pushRowScanner) error {
			var c UnreadCount
			if err := s.Scan(&c.RoomID, &c.ThreadID, &c.Notifications, &c.Highlights, &c.StreamPos); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("storage: unread counts: %w", err)
	}
	return out, nil
}

// TotalUnread sums each user's notification counts over all their rooms
// (the badge number push gateways show).
func (db *DB) TotalUnread(ctx context.Context, userIDs []string) (map[string]int64, error) {
	out := make(map[string]int64, len(userIDs))
	for rest := userIDs; len(rest) > 0; {
		n := min(len(rest), 500)
		args := make([]any, n)
		for i := range args {
			args[i] = rest[i]
		}
		err := queryPushRows(ctx, db, `SELECT user_id, SUM(notification_count) FROM push_unread_counts
			WHERE user_id IN (`+placeholders(1, n)+`) GROUP BY user_id`, args, func(s pushRowScanner) error {
			var u string
			var c int64
			if err := s.Scan(&u, &c); err != nil {
				return err
			}
			out[u] = c
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("storage: total unread: %w", err)
		}
		rest = rest[n:]
	}
	return out, nil
}

// PushNotifications lists a user's notifications before stream position
// before (0: from the newest), newest first, at most limit of them.
func (db *DB) PushNotifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]PushNotification, error) {
	q := `SELECT user_id, stream_pos, room_id, event_id, thread_id, ts, actions, highlight FROM push_notifications WHERE user_id = $1`
	args := []any{userID}
	if before > 0 {
		args = append(args, before)
		q += fmt.Sprintf(` AND stream_pos < $%d`, len(args))
	}
	if onlyHighlight {
		q += ` AND highlight`
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY stream_pos DESC LIMIT $%d`, len(args))
	var out []PushNotification
	err := queryPushRows(ctx, db, q, args, func(s pushRowScanner) error {
		var n PushNotification
		if err := s.Scan(&n.UserID, &n.StreamPos, &n.RoomID, &n.EventID, &n.ThreadID, &n.TS, &n.Actions, &n.Highlight); err != nil {
			return err
		}
		out = append(out, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list notifications: %w", err)
	}
	return out, nil
}

// ReadUpTo returns, for each of the rooms, the user's read markers by
// thread ID (ThreadAll, ThreadMain or a thread root).
func (db *DB) ReadUpTo(ctx context.Context, userID string, roomIDs []string) (map[string]map[string]int64, error) {
	out := map[string]map[string]int64{}
	for _, roomID := range roomIDs {
		if _, done := out[roomID]; done {
			continue
		}
		m, err := readMarkers(ctx, db, roomID, userID)
		if err != nil {
			return nil, err
		}
		byThread := make(map[string]int64, len(m))
		for k, p := range m {
			byThread[k.thread] = p
		}
		out[roomID] = byThread
	}
	return out, nil
}

// PrunePushNotifications deletes notifications made before ts
// (milliseconds) and returns how many it deleted. Counts are not touched:
// they are recounted from what remains only when a receipt moves.
func (db *DB) PrunePushNotifications(ctx context.Context, ts int64) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM push_notifications WHERE ts < $1`, ts)
	if err != nil {
		return 0, fmt.Errorf("storage: prune notifications: %w", err)
	}
	return rowsAffected(res), nil
}

// StreamPushEvaluated is not a stream but a watermark in the same table:
// every timeline event at or below it has been evaluated for push. Events
// after it are evaluated again at start-up (which is harmless: recording
// a notification twice changes nothing).
const StreamPushEvaluated = "push_evaluated"

// SetPushEvaluated moves the evaluation watermark forward to pos.
func (db *DB) SetPushEvaluated(ctx context.Context, pos int64) error {
	if _, err := db.ExecContext(ctx, `UPDATE stream_positions SET pos = $2 WHERE stream = $1 AND pos < $2`, StreamPushEvaluated, pos); err != nil {
		return fmt.Errorf("storage: push watermark: %w", err)
	}
	return nil
}

// EventsAfter lists up to limit timeline events after stream position
// after, in stream order.
func (db *DB) EventsAfter(ctx context.Context, after int64, limit int) ([]*EventRow, error) {
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2`, after, limit)
}

// pushRowScanner is a row being scanned.
type pushRowScanner interface{ Scan(...any) error }

// queryPushRows runs a query and calls fn for each row.
func queryPushRows(ctx context.Context, q Execer, query string, args []any, fn func(pushRowScanner) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
