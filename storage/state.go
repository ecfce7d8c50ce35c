package storage

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// StateKey is a (type, state_key) pair.
type StateKey struct {
	Type, StateKey string
}

// StateMap maps state keys to event IDs. Maps returned by LoadSnapshot are
// shared through a cache and must not be modified.
type StateMap map[StateKey]string

// A snapshot is stored as a delta on its parent (only the entries that
// changed) while the chain of deltas since the last full copy holds fewer
// rows than that copy; then a full copy is written. Reading a snapshot thus
// reads at most about twice its size, and a room that grows to N state
// events writes O(N) rows in all, the full copies doubling in size (a full
// copy every few levels would write O(N²): 3 million rows for a room of
// 10,000 members).
const (
	// minChainRows lets small rooms chain a few deltas before copying.
	minChainRows = 64
	// maxChainLen bounds the depth of a chain whatever its rows.
	maxChainLen = 1024
	// snapshotChunk is how many entries one INSERT writes.
	snapshotChunk = 250
)

// InsertSnapshot stores the state parent + changes (an empty event ID in
// changes removes a key) and returns its ID. parent 0 means no parent: the
// changes are the whole state.
func (db *DB) InsertSnapshot(ctx context.Context, tx Execer, roomID string, parent int64, changes StateMap) (int64, error) {
	var chainLen, chainRows, baseRows int64
	if parent != 0 {
		if err := tx.QueryRowContext(ctx, `SELECT chain_len, chain_rows, base_rows FROM state_snapshots WHERE snapshot_nid = $1`,
			parent).Scan(&chainLen, &chainRows, &baseRows); err != nil {
			return 0, notFound(err, "state snapshot")
		}
	}
	entries := changes
	var parentArg any = parent
	chainLen, chainRows = chainLen+1, chainRows+int64(len(changes))
	if parent == 0 || chainLen >= maxChainLen || chainRows > max(minChainRows, baseRows) {
		full := StateMap{}
		if parent != 0 {
			base, err := db.loadSnapshot(ctx, tx, parent)
			if err != nil {
				return 0, err
			}
			for k, v := range base {
				full[k] = v
			}
		}
		applyDelta(full, changes)
		entries, parentArg = full, nil
		chainLen, chainRows, baseRows = 0, 0, int64(len(full))
	}
	var nid int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO state_snapshots (room_id, parent_nid, chain_len, chain_rows, base_rows)
		VALUES ($1, $2, $3, $4, $5) RETURNING snapshot_nid`, roomID, parentArg, chainLen, chainRows, baseRows).Scan(&nid); err != nil {
		return 0, fmt.Errorf("storage: insert snapshot: %w", err)
	}
	return nid, db.insertSnapshotEntries(ctx, tx, nid, entries)
}

// applyDelta applies a snapshot's entries to a state: an empty event ID
// removes the key.
func applyDelta(state, delta StateMap) {
	for k, v := range delta {
		if v == "" {
			delete(state, k)
		} else {
			state[k] = v
		}
	}
}

// insertSnapshotEntries writes a snapshot's entries, many per statement.
func (db *DB) insertSnapshotEntries(ctx context.Context, tx Execer, nid int64, entries StateMap) error {
	const cols = 4
	args := make([]any, 0, min(len(entries), snapshotChunk)*cols)
	var q strings.Builder
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO state_snapshot_entries (snapshot_nid, type, state_key, event_id) VALUES `+q.String(), args...)
		args, q = args[:0], strings.Builder{}
		if err != nil {
			return fmt.Errorf("storage: insert snapshot entries: %w", err)
		}
		return nil
	}
	for k, v := range entries {
		if len(args) > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(" + db.numberedPlaceholders(len(args)+1, cols) + ")")
		args = append(args, nid, k.Type, k.StateKey, v)
		if len(args) == snapshotChunk*cols {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// snapshotCache keeps resolved snapshots; they never change once written.
// It is bounded by the entries it holds, not only by the snapshots: the
// snapshots of a large room hold tens of thousands each.
type snapshotCache struct {
	mu      sync.Mutex
	m       map[int64]StateMap
	entries int
}

const (
	snapshotCacheSize    = 4096
	snapshotCacheEntries = 1 << 21 // a few hundred MB at most
)

func (c *snapshotCache) get(nid int64) (StateMap, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[nid]
	return s, ok
}

func (c *snapshotCache) put(nid int64, s StateMap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= snapshotCacheSize || c.entries+len(s) > snapshotCacheEntries {
		// Crude but bounded; hot snapshots come back quickly.
		c.m, c.entries = make(map[int64]StateMap), 0
	}
	if _, ok := c.m[nid]; !ok {
		c.entries += len(s)
	}
	c.m[nid] = s
}

// LoadSnapshot returns the full state of a snapshot. 0 is the empty state.
func (db *DB) LoadSnapshot(ctx context.Context, nid int64) (StateMap, error) {
	return db.loadSnapshot(ctx, db, nid)
}

func (db *DB) loadSnapshot(ctx context.Context, q Execer, nid int64) (StateMap, error) {
	if nid == 0 {
		return StateMap{}, nil
	}
	if s, ok := db.snapshots.get(nid); ok {
		return s, nil
	}
	// The chain from nid up to its full copy, nearest first, in one query;
	// then the entries of the part below the nearest cached snapshot.
	chain, err := snapshotChain(ctx, q, nid)
	if err != nil {
		return nil, err
	}
	var base StateMap
	for i, id := range chain {
		if s, ok := db.snapshots.get(id); ok {
			base, chain = s, chain[:i]
			break
		}
	}
	deltas, err := db.snapshotEntries(ctx, q, chain)
	if err != nil {
		return nil, err
	}
	full := make(StateMap, len(base))
	for k, v := range base {
		full[k] = v
	}
	for i := len(chain) - 1; i >= 0; i-- { // from the top down
		applyDelta(full, deltas[chain[i]])
	}
	// Only cache what was read outside a transaction that may still roll back.
	if q == Execer(db) {
		db.snapshots.put(nid, full)
	}
	return full, nil
}

// snapshotChain lists nid and its ancestors up to the nearest full copy,
// nearest first.
func snapshotChain(ctx context.Context, q Execer, nid int64) ([]int64, error) {
	rows, err := q.QueryContext(ctx, `WITH RECURSIVE chain (nid, parent, depth) AS (
			SELECT snapshot_nid, parent_nid, 0 FROM state_snapshots WHERE snapshot_nid = $1
			UNION ALL
			SELECT s.snapshot_nid, s.parent_nid, c.depth + 1 FROM state_snapshots s JOIN chain c ON s.snapshot_nid = c.parent
		) SELECT nid FROM chain ORDER BY depth`, nid)
	if err != nil {
		return nil, fmt.Errorf("storage: load snapshot: %w", err)
	}
	defer rows.Close()
	var chain []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("storage: load snapshot: %w", err)
		}
		chain = append(chain, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: load snapshot: %w", err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: state snapshot %d", ErrNotFound, nid)
	}
	return chain, nil
}

// snapshotEntries reads the stored entries of snapshots, by snapshot.
func (db *DB) snapshotEntries(ctx context.Context, q Execer, nids []int64) (map[int64]StateMap, error) {
	out := make(map[int64]StateMap, len(nids))
	for len(nids) > 0 {
		n := min(len(nids), 500)
		args := make([]any, n)
		for i, id := range nids[:n] {
			args[i] = id
		}
		rows, err := q.QueryContext(ctx, `SELECT snapshot_nid, type, state_key, event_id FROM state_snapshot_entries
			WHERE snapshot_nid IN (`+db.numberedPlaceholders(1, n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("storage: load snapshot: %w", err)
		}
		for rows.Next() {
			var id int64
			var k StateKey
			var v string
			if err := rows.Scan(&id, &k.Type, &k.StateKey, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: load snapshot: %w", err)
			}
			m := out[id]
			if m == nil {
				m = StateMap{}
				out[id] = m
			}
			m[k] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("storage: load snapshot: %w", err)
		}
		nids = nids[n:]
	}
	return out, nil
}
