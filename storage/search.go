package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Full-text search over events. The table search_docs is common; the
// full-text index and its queries differ per engine, and every difference
// is in this file, behind db.dialect.name:
//
//   - PostgreSQL: a GIN index over to_tsvector('english', text); queries are
//     to_tsquery with each word as a prefix, ranked with ts_rank.
//   - SQLite: an FTS5 table (porter stemming, Unicode case folding and
//     diacritics removal) over search_docs as external content; queries are
//     FTS5 MATCH expressions, ranked with bm25.

// SearchDoc is the searchable text of one event.
type SearchDoc struct {
	EventID        string
	RoomID         string
	Sender         string
	Type           string
	Key            string // content.body, content.name or content.topic
	StreamPos      int64
	OriginServerTS int64
	Text           string
}

// IndexSearchDocs adds documents to the search index in one transaction;
// events already indexed are skipped, so indexing twice is harmless.
func (db *DB) IndexSearchDocs(ctx context.Context, docs []SearchDoc) error {
	if len(docs) == 0 {
		return nil
	}
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		for _, d := range docs {
			var nid int64
			err := tx.QueryRowContext(ctx, `INSERT INTO search_docs (event_id, room_id, sender, type, key, stream_pos, origin_server_ts, text)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING RETURNING doc_nid`,
				d.EventID, d.RoomID, d.Sender, d.Type, d.Key, d.StreamPos, d.OriginServerTS, d.Text).Scan(&nid)
			if errors.Is(err, sql.ErrNoRows) {
				continue // indexed before
			}
			if err != nil {
				return fmt.Errorf("storage: index search doc: %w", err)
			}
			if db.dialect.name == "sqlite" {
				// SQLite: an external-content FTS5 table is told of each row.
				if _, err := tx.ExecContext(ctx, `INSERT INTO search_fts (rowid, text) VALUES ($1, $2)`, nid, d.Text); err != nil {
					return fmt.Errorf("storage: index search doc: %w", err)
				}
			}
			// PostgreSQL: the GIN index follows the table by itself.
		}
		return nil
	})
}

// DeleteSearchDocs removes events from the search index (they were
// redacted).
func (db *DB) DeleteSearchDocs(ctx context.Context, eventIDs []string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	return db.WithTx(ctx, func(tx *sql.Tx) error {
		for _, id := range eventIDs {
			var nid int64
			var text string
			err := tx.QueryRowContext(ctx, `DELETE FROM search_docs WHERE event_id = $1 RETURNING doc_nid, text`, id).Scan(&nid, &text)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("storage: delete search doc: %w", err)
			}
			if db.dialect.name == "sqlite" {
				// SQLite: FTS5's delete command needs the indexed text back.
				if _, err := tx.ExecContext(ctx, `INSERT INTO search_fts (search_fts, rowid, text) VALUES ('delete', $1, $2)`, nid, text); err != nil {
					return fmt.Errorf("storage: delete search doc: %w", err)
				}
			}
		}
		return nil
	})
}

// SearchRoom is a room a search may look in, up to (and including) stream
// position MaxPos when it is not 0: the position of the searcher's leave.
type SearchRoom struct {
	RoomID string
	MaxPos int64
}

// SearchQuery is a full-text search over the indexed events of some rooms.
type SearchQuery struct {
	// Words are the search words: letters and digits only. Every word must
	// match, as a prefix.
	Words []string
	Rooms []SearchRoom
	// Keys, when set, keeps only documents from these keys.
	Keys []string
	// Recent orders by stream position, newest first; otherwise by rank.
	Recent bool
	// Before, when above 0, keeps only events below that stream position
	// (paging by recency).
	Before int64
	// Offset skips that many matches (paging by rank).
	Offset int
	Limit  int
}

// SearchHit is one matching event with its rank (higher is closer).
type SearchHit struct {
	Event *EventRow
	Rank  float64
}

// SearchEvents returns a page of the unredacted events matching q.
func (db *DB) SearchEvents(ctx context.Context, q SearchQuery) ([]SearchHit, error) {
	if len(q.Words) == 0 || len(q.Rooms) == 0 {
		return nil, nil
	}
	from, args := db.searchFrom(q)
	order := "rank DESC, d.stream_pos DESC"
	if q.Recent {
		order = "d.stream_pos DESC"
	}
	args = append(args, max(q.Limit, 1), max(q.Offset, 0))
	query := `SELECT d.event_id, rank FROM ` + from + ` ORDER BY ` + order +
		fmt.Sprintf(` LIMIT $%d OFFSET $%d`, len(args)-1, len(args))
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("storage: search: %w", err)
	}
	var ids []string
	ranks := map[string]float64{}
	for rows.Next() {
		var id string
		var rank float64
		if err := rows.Scan(&id, &rank); err != nil {
			rows.Close()
			return nil, fmt.Errorf("storage: search: %w", err)
		}
		ids = append(ids, id)
		ranks[id] = rank
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("storage: search: %w", err)
	}
	evs, err := db.GetEventsOrdered(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]SearchHit, 0, len(evs))
	for _, e := range evs {
		if e.RedactedBy == "" {
			out = append(out, SearchHit{Event: e, Rank: ranks[e.EventID]})
		}
	}
	return out, nil
}

// CountSearch counts the events matching q (Before, Offset and Limit
// aside).
func (db *DB) CountSearch(ctx context.Context, q SearchQuery) (int, error) {
	if len(q.Words) == 0 || len(q.Rooms) == 0 {
		return 0, nil
	}
	q.Before = 0
	from, args := db.searchFrom(q)
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+from, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: search count: %w", err)
	}
	return n, nil
}

// searchFrom builds the FROM and WHERE clauses of a search, selecting a
// column named rank.
func (db *DB) searchFrom(q SearchQuery) (string, []any) {
	var args []any
	var from string
	if db.dialect.name == "sqlite" {
		// SQLite: FTS5, every word a quoted prefix ("word"*), all required.
		terms := make([]string, len(q.Words))
		for i, w := range q.Words {
			terms[i] = `"` + w + `"*`
		}
		args = append(args, strings.Join(terms, " AND "))
		from = `(SELECT d.*, -bm25(search_fts) AS rank FROM search_fts JOIN search_docs d ON d.doc_nid = search_fts.rowid
			WHERE search_fts MATCH $1) d WHERE 1 = 1`
	} else {
		// PostgreSQL: to_tsquery over the same expression as the GIN index.
		terms := make([]string, len(q.Words))
		for i, w := range q.Words {
			terms[i] = w + ":*"
		}
		args = append(args, strings.Join(terms, " & "))
		from = `(SELECT d.*, ts_rank(to_tsvector('english', d.text), to_tsquery('english', $1)) AS rank FROM search_docs d
			WHERE to_tsvector('english', d.text) @@ to_tsquery('english', $1)) d WHERE 1 = 1`
	}
	// Rooms: those the searcher is in, and those they left up to their leave.
	var open []string
	var bounded []string
	for _, r := range q.Rooms {
		if r.MaxPos == 0 {
			open = append(open, r.RoomID)
			continue
		}
		args = append(args, r.RoomID, r.MaxPos)
		bounded = append(bounded, fmt.Sprintf(`(d.room_id = $%d AND d.stream_pos <= $%d)`, len(args)-1, len(args)))
	}
	if len(open) > 0 {
		bounded = append(bounded, `d.room_id IN (`+inList(&args, open)+`)`)
	}
	from += ` AND (` + strings.Join(bounded, " OR ") + `)`
	if len(q.Keys) > 0 {
		from += ` AND d.key IN (` + inList(&args, q.Keys) + `)`
	}
	if q.Before > 0 {
		args = append(args, q.Before)
		from += fmt.Sprintf(` AND d.stream_pos < $%d`, len(args))
	}
	return from, args
}
