package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Relation is one indexed relation: child EventID relates to RelatesTo
// with RelType.
type Relation struct {
	EventID        string
	RoomID         string
	RelatesTo      string
	RelType        string
	Type           string
	Sender         string
	Key            string // the m.annotation key, "" otherwise
	StreamPos      int64
	OriginServerTS int64
}

// InsertRelations indexes relations; ones already indexed are left as they
// are, so that indexing an event twice is harmless.
func (db *DB) InsertRelations(ctx context.Context, rels []Relation) error {
	const cols = 9
	for len(rels) > 0 {
		n := min(len(rels), 200)
		var q strings.Builder
		q.WriteString(`INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, type, sender, aggregation_key,
			stream_pos, origin_server_ts) VALUES `)
		args := make([]any, 0, n*cols)
		for i, r := range rels[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + placeholders(i*cols+1, cols) + ")")
			args = append(args, r.EventID, r.RoomID, r.RelatesTo, r.RelType, r.Type, r.Sender, r.Key, r.StreamPos, r.OriginServerTS)
		}
		q.WriteString(` ON CONFLICT (event_id) DO NOTHING`)
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("storage: insert relations: %w", err)
		}
		rels = rels[n:]
	}
	return nil
}

// AnnotationExists reports whether sender already annotated parent with an
// unredacted event of eventType and key.
func (db *DB) AnnotationExists(ctx context.Context, parent, sender, eventType, key string) (bool, error) {
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM event_relations r JOIN events e ON e.event_id = r.event_id
		WHERE r.relates_to = $1 AND r.rel_type = 'm.annotation' AND r.sender = $2 AND r.type = $3
			AND r.aggregation_key = $4 AND e.redacted_by IS NULL
		LIMIT 1`, parent, sender, eventType, key).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: annotation look-up: %w", err)
	}
	return true, nil
}

// UnindexedAnnotations lists the sender's unredacted events of eventType in
// the room that are newer than every annotation of the room in the
// relations index: annotations committed but not indexed yet, which the
// duplicate check must also consider. Newest first, at most limit.
func (db *DB) UnindexedAnnotations(ctx context.Context, roomID, sender, eventType string, limit int) ([]*EventRow, error) {
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events
		WHERE room_id = $1 AND sender = $2 AND type = $3 AND redacted_by IS NULL
			AND stream_pos > (SELECT COALESCE(MAX(stream_pos), $4) FROM event_relations WHERE room_id = $1 AND rel_type = 'm.annotation')
		ORDER BY stream_pos DESC LIMIT $5`, roomID, sender, eventType, int64(-1)<<62, limit)
}

// RelationCount summarises the unredacted children of one parent with one
// rel_type.
type RelationCount struct {
	Parent  string
	RelType string
	Count   int
	// ByViewer is true when the viewer sent one of the children.
	ByViewer bool
}

// RelationCounts counts the unredacted children, in the parent's room, of
// each of parents with one of relTypes, leaving out children sent by
// excluded users (ignored users).
func (db *DB) RelationCounts(ctx context.Context, parents, relTypes []string, viewer string, excluded []string) ([]RelationCount, error) {
	var out []RelationCount
	for len(parents) > 0 {
		n := min(len(parents), 200)
		args := []any{viewer}
		q := `SELECT r.relates_to, r.rel_type, COUNT(*), MAX(CASE WHEN r.sender = $1 THEN 1 ELSE 0 END)
			FROM event_relations r
			JOIN events e ON e.event_id = r.event_id
			JOIN events p ON p.event_id = r.relates_to AND p.room_id = r.room_id
			WHERE e.redacted_by IS NULL AND r.relates_to IN (` + inList(&args, parents[:n]) + `)
				AND r.rel_type IN (` + inList(&args, relTypes) + `)`
		if len(excluded) > 0 {
			q += ` AND r.sender NOT IN (` + inList(&args, excluded) + `)`
		}
		q += ` GROUP BY r.relates_to, r.rel_type`
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("storage: relation counts: %w", err)
		}
		for rows.Next() {
			var c RelationCount
			var by int
			if err := rows.Scan(&c.Parent, &c.RelType, &c.Count, &by); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: relation counts: %w", err)
			}
			c.ByViewer = by == 1
			out = append(out, c)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("storage: relation counts: %w", err)
		}
		parents = parents[n:]
	}
	return out, nil
}

// ChildQuery selects the children of an event, a page at a time. Stream
// bounds follow pagination tokens: a token T lies between positions T and
// T+1.
type ChildQuery struct {
	RoomID string
	Parent string
	// RelType and EventType, when set, keep only children with them (at
	// every level when recursing).
	RelType   string
	EventType string
	// Senders, when set, keeps only children sent by them; Excluded leaves
	// out children sent by them.
	Senders  []string
	Excluded []string
	// From is where the page starts (-1: at the newest child when
	// Backwards, the oldest otherwise); To, when not -1, is where it stops.
	// Other negative positions are backfilled history.
	From, To  int64
	Backwards bool
	Limit     int
	// Depth is how many levels of relations to follow: 1 for direct
	// children.
	Depth int
}

// RelationChildren returns a page of the unredacted children of an event
// (and, with Depth above 1, their children...), newest first when
// Backwards, oldest first otherwise.
func (db *DB) RelationChildren(ctx context.Context, q ChildQuery) ([]*EventRow, error) {
	args := []any{q.Parent, q.RoomID}
	filters := ""
	if q.RelType != "" {
		args = append(args, q.RelType)
		filters += fmt.Sprintf(` AND r.rel_type = $%d`, len(args))
	}
	if q.EventType != "" {
		args = append(args, q.EventType)
		filters += fmt.Sprintf(` AND r.type = $%d`, len(args))
	}
	if len(q.Senders) > 0 {
		filters += ` AND r.sender IN (` + inList(&args, q.Senders) + `)`
	}
	if len(q.Excluded) > 0 {
		filters += ` AND r.sender NOT IN (` + inList(&args, q.Excluded) + `)`
	}
	// Redacted children are left out while walking, so that their own
	// children, whose only link to the parent they broke, are too.
	direct := `SELECT r.event_id, r.stream_pos, 1 AS depth FROM event_relations r
		JOIN events x ON x.event_id = r.event_id AND x.redacted_by IS NULL
		WHERE r.relates_to = $1 AND r.room_id = $2` + filters
	var tree string
	if q.Depth > 1 {
		args = append(args, q.Depth)
		tree = `WITH RECURSIVE tree(event_id, stream_pos, depth) AS (` + direct + `
			UNION ALL
			SELECT r.event_id, r.stream_pos, t.depth + 1 FROM event_relations r
			JOIN tree t ON r.relates_to = t.event_id
			JOIN events x ON x.event_id = r.event_id AND x.redacted_by IS NULL
			WHERE t.depth < $` + fmt.Sprint(len(args)) + ` AND r.room_id = $2` + filters + `)
			SELECT event_id, stream_pos FROM tree`
	} else {
		tree = `SELECT event_id, stream_pos FROM (` + direct + `) d`
	}
	page := `SELECT event_id FROM (` + tree + `) c WHERE 1 = 1`
	order := "ASC"
	if q.Backwards {
		order = "DESC"
		if q.From != -1 {
			args = append(args, q.From)
			page += fmt.Sprintf(` AND stream_pos <= $%d`, len(args))
		}
		if q.To != -1 {
			args = append(args, q.To)
			page += fmt.Sprintf(` AND stream_pos > $%d`, len(args))
		}
	} else {
		if q.From != -1 {
			args = append(args, q.From)
			page += fmt.Sprintf(` AND stream_pos > $%d`, len(args))
		}
		if q.To != -1 {
			args = append(args, q.To)
			page += fmt.Sprintf(` AND stream_pos <= $%d`, len(args))
		}
	}
	args = append(args, max(q.Limit, 1))
	page += fmt.Sprintf(` ORDER BY stream_pos %s LIMIT $%d`, order, len(args))
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE event_id IN (`+page+`)
		ORDER BY stream_pos `+order, args...)
}

// ThreadRoot is a thread of a room: its root and the stream position of its
// latest reply.
type ThreadRoot struct {
	Root   *EventRow
	Latest int64
}

// ThreadRoots lists a room's threads by latest reply, newest first: those
// whose latest reply is at or before position before (-1: any), at most
// limit. With participant set, only threads they started or replied to.
// Replies from excluded users (ignored users) do not count.
func (db *DB) ThreadRoots(ctx context.Context, roomID, participant string, before int64, limit int, excluded []string) ([]ThreadRoot, error) {
	args := []any{roomID}
	q := `SELECT r.relates_to, MAX(r.stream_pos) FROM event_relations r
		JOIN events c ON c.event_id = r.event_id
		JOIN events root ON root.event_id = r.relates_to
		WHERE r.room_id = $1 AND r.rel_type = 'm.thread' AND c.redacted_by IS NULL AND root.room_id = $1`
	if len(excluded) > 0 {
		q += ` AND r.sender NOT IN (` + inList(&args, excluded) + `)`
	}
	q += ` GROUP BY r.relates_to HAVING 1 = 1`
	if before != -1 {
		args = append(args, before)
		q += fmt.Sprintf(` AND MAX(r.stream_pos) <= $%d`, len(args))
	}
	if participant != "" {
		args = append(args, participant)
		q += fmt.Sprintf(` AND MAX(CASE WHEN r.sender = $%d OR root.sender = $%d THEN 1 ELSE 0 END) = 1`, len(args), len(args))
	}
	args = append(args, max(limit, 1))
	q += fmt.Sprintf(` ORDER BY MAX(r.stream_pos) DESC LIMIT $%d`, len(args))
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: thread roots: %w", err)
	}
	var ids []string
	latest := map[string]int64{}
	for rows.Next() {
		var id string
		var pos int64
		if err := rows.Scan(&id, &pos); err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: thread roots: %w", err)
		}
		ids = append(ids, id)
		latest[id] = pos
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("storage: thread roots: %w", err)
	}
	evs, err := db.GetEventsOrdered(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]ThreadRoot, 0, len(evs))
	for _, e := range evs {
		out = append(out, ThreadRoot{Root: e, Latest: latest[e.EventID]})
	}
	return out, nil
}

// EventsInStreamRange lists the timeline events with from < stream_pos <=
// to, oldest first, at most limit: what the event indexes read.
func (db *DB) EventsInStreamRange(ctx context.Context, from, to int64, limit int) ([]*EventRow, error) {
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos LIMIT $3`, from, to, limit)
}

// EventsBelowStreamPos lists the timeline events with stream_pos below
// pos, newest first, at most limit: backfilled history, which takes
// positions below every one allocated before.
func (db *DB) EventsBelowStreamPos(ctx context.Context, pos int64, limit int) ([]*EventRow, error) {
	return db.queryEvents(ctx, `SELECT `+eventColumns+` FROM events
		WHERE stream_pos < $1 ORDER BY stream_pos DESC LIMIT $2`, pos, limit)
}

// IndexPosition is how far the named event index has read the timeline (0
// when it has not started).
func (db *DB) IndexPosition(ctx context.Context, name string) (int64, error) {
	var pos int64
	err := db.QueryRowContext(ctx, `SELECT pos FROM event_index_positions WHERE name = $1`, name).Scan(&pos)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: index position: %w", err)
	}
	return pos, nil
}

// SetIndexPosition records how far the named event index has read.
func (db *DB) SetIndexPosition(ctx context.Context, name string, pos int64) error {
	_, err := db.ExecContext(ctx, `INSERT INTO event_index_positions (name, pos) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET pos = excluded.pos`, name, pos)
	if err != nil {
		return fmt.Errorf("storage: set index position: %w", err)
	}
	return nil
}

// inList appends values to args and returns their placeholders.
func inList(args *[]any, values []string) string {
	start := len(*args) + 1
	for _, v := range values {
		*args = append(*args, v)
	}
	return placeholders(start, len(values))
}
