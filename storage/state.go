package storage

import (
	"context"
	"fmt"
	"sync"
)

// StateKey is a (type, state_key) pair.
type StateKey struct {
	Type, StateKey string
}

// StateMap maps state keys to event IDs. Maps returned by LoadSnapshot are
// shared through a cache and must not be modified.
type StateMap map[StateKey]string

// maxChainLen bounds how many delta snapshots a read walks before it
// reaches a full one.
const maxChainLen = 16

// InsertSnapshot stores the state parent + changes (an empty event ID in
// changes removes a key) and returns its ID. parent 0 means no parent: the
// changes are the whole state. Every maxChainLen levels a full copy is
// written instead of a delta, so reads stay bounded.
func (db *DB) InsertSnapshot(ctx context.Context, tx Execer, roomID string, parent int64, changes StateMap) (int64, error) {
	chain := 0
	if parent != 0 {
		if err := tx.QueryRowContext(ctx, `SELECT chain_len FROM state_snapshots WHERE snapshot_nid = $1`, parent).Scan(&chain); err != nil {
			return 0, notFound(err, "state snapshot")
		}
		chain++
	}
	entries := changes
	var parentArg any = parent
	if parent == 0 || chain >= maxChainLen {
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
		for k, v := range changes {
			if v == "" {
				delete(full, k)
			} else {
				full[k] = v
			}
		}
		entries, chain, parentArg = full, 0, nil
	}
	var nid int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO state_snapshots (room_id, parent_nid, chain_len) VALUES ($1, $2, $3) RETURNING snapshot_nid`,
		roomID, parentArg, chain).Scan(&nid); err != nil {
		return 0, fmt.Errorf("storage: insert snapshot: %w", err)
	}
	for k, v := range entries {
		if _, err := tx.ExecContext(ctx, `INSERT INTO state_snapshot_entries (snapshot_nid, type, state_key, event_id) VALUES ($1, $2, $3, $4)`,
			nid, k.Type, k.StateKey, v); err != nil {
			return 0, fmt.Errorf("storage: insert snapshot entries: %w", err)
		}
	}
	return nid, nil
}

// snapshotCache keeps resolved snapshots; they never change once written.
type snapshotCache struct {
	mu sync.Mutex
	m  map[int64]StateMap
}

const snapshotCacheSize = 4096

func (c *snapshotCache) get(nid int64) (StateMap, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[nid]
	return s, ok
}

func (c *snapshotCache) put(nid int64, s StateMap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= snapshotCacheSize {
		c.m = make(map[int64]StateMap) // crude but bounded; hot snapshots come back quickly
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
	// Walk up to the nearest full or cached snapshot, then apply the
	// deltas from the top down.
	var chain []int64
	var base StateMap
	for cur := nid; cur != 0; {
		if s, ok := db.snapshots.get(cur); ok {
			base = s
			break
		}
		chain = append(chain, cur)
		var parent *int64
		if err := q.QueryRowContext(ctx, `SELECT parent_nid FROM state_snapshots WHERE snapshot_nid = $1`, cur).Scan(&parent); err != nil {
			return nil, notFound(err, "state snapshot")
		}
		if parent == nil {
			break
		}
		cur = *parent
	}
	full := StateMap{}
	for k, v := range base {
		full[k] = v
	}
	for i := len(chain) - 1; i >= 0; i-- {
		rows, err := q.QueryContext(ctx, `SELECT type, state_key, event_id FROM state_snapshot_entries WHERE snapshot_nid = $1`, chain[i])
		if err != nil {
			return nil, fmt.Errorf("storage: load snapshot: %w", err)
		}
		for rows.Next() {
			var k StateKey
			var v string
			if err := rows.Scan(&k.Type, &k.StateKey, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("storage: load snapshot: %w", err)
			}
			if v == "" {
				delete(full, k)
			} else {
				full[k] = v
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	// Only cache what was read outside a transaction that may still roll back.
	if q == Execer(db) {
		db.snapshots.put(nid, full)
	}
	return full, nil
}
