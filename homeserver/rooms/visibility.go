package rooms

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/parley-chat/parley/storage"
)

// History visibility, as the spec's "Room History Visibility" module
// defines it: whether a user may see an event depends on the room's state
// at that event.

type atEvent struct {
	visibility string
	membership string
}

// visibilityChecker decides for many events of one room and one user,
// reading each state snapshot once.
type visibilityChecker struct {
	e             *Engine
	userID        string
	currentlyJoin bool
	memo          map[int64]atEvent
}

func (e *Engine) newVisibilityChecker(ctx context.Context, roomID, userID string) (*visibilityChecker, error) {
	// The room's current state is in memory: no query for the membership.
	m := ""
	ev, err := e.CurrentStateEvent(ctx, roomID, "m.room.member", userID)
	if err != nil {
		if m, err = e.Membership(ctx, roomID, userID); err != nil {
			return nil, err
		}
	} else if ev != nil {
		m, _ = ev.Membership()
	}
	return &visibilityChecker{e: e, userID: userID, currentlyJoin: m == "join", memo: map[int64]atEvent{}}, nil
}

func (c *visibilityChecker) at(ctx context.Context, snapshot int64) (atEvent, error) {
	if a, ok := c.memo[snapshot]; ok {
		return a, nil
	}
	st, err := c.e.db.LoadSnapshot(ctx, snapshot)
	if err != nil {
		return atEvent{}, err
	}
	a := atEvent{visibility: "shared"}
	if id, ok := st[storage.StateKey{Type: "m.room.history_visibility"}]; ok {
		if v := c.e.contentString(ctx, id, "history_visibility"); isKnownVisibility(v) {
			a.visibility = v
		}
	}
	if id, ok := st[storage.StateKey{Type: "m.room.member", StateKey: c.userID}]; ok {
		a.membership = c.e.contentString(ctx, id, "membership")
	}
	c.memo[snapshot] = a
	return a, nil
}

func isKnownVisibility(v string) bool {
	switch v {
	case "world_readable", "shared", "invited", "joined":
		return true
	}
	return false
}

func (c *visibilityChecker) allows(a atEvent) bool {
	switch {
	case a.visibility == "world_readable":
		return true
	case a.membership == "join":
		return true
	case a.visibility == "shared" && c.currentlyJoin:
		// The spec allows a user who joined at any point after the event;
		// a currently joined user has. Users who joined and left again are
		// not given these events: stricter than the spec, never leakier.
		return true
	case a.membership == "invite" && a.visibility == "invited":
		return true
	}
	return false
}

// visible reports whether the user may see the stored event.
func (c *visibilityChecker) visible(ctx context.Context, row *storage.EventRow) (bool, error) {
	before, err := c.at(ctx, row.StateBefore)
	if err != nil {
		return false, err
	}
	if c.allows(before) {
		return true, nil
	}
	// The user's own membership events and history visibility changes are
	// visible if the state before or after them allows it.
	ownMember := row.Type == "m.room.member" && row.StateKey != nil && *row.StateKey == c.userID
	if ownMember || (row.Type == "m.room.history_visibility" && row.StateKey != nil && *row.StateKey == "") {
		after := before
		if ownMember {
			after.membership = c.e.contentString(ctx, row.EventID, "membership")
		} else if v := c.e.contentString(ctx, row.EventID, "history_visibility"); isKnownVisibility(v) {
			after.visibility = v
		}
		return c.allows(after), nil
	}
	return false, nil
}

// filter keeps the rows the user may see.
func (c *visibilityChecker) filter(ctx context.Context, rows []*storage.EventRow) ([]*storage.EventRow, error) {
	out := rows[:0:0]
	for _, row := range rows {
		ok, err := c.visible(ctx, row)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, row)
		}
	}
	return out, nil
}

// contentString reads a string field of a stored event's content ("" when
// absent or unreadable). Redacted events keep the fields the visibility
// rules need.
func (e *Engine) contentString(ctx context.Context, eventID, field string) string {
	key := eventID + "\x00" + field
	if s, ok := e.contentCache.get(key); ok {
		return s
	}
	row, err := e.db.GetAnyEvent(ctx, eventID)
	if err != nil {
		return ""
	}
	var ev struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if json.Unmarshal([]byte(row.JSON), &ev) != nil {
		return ""
	}
	var s string
	_ = json.Unmarshal(ev.Content[field], &s)
	// Safe to cache: events never change, and the fields read here
	// (membership, history_visibility) survive redaction.
	e.contentCache.put(key, s)
	return s
}

// stringCache is a bounded map; when full it starts again, which is
// crude but keeps hot entries coming back quickly.
type stringCache struct {
	mu sync.Mutex
	m  map[string]string
}

const stringCacheSize = 100000

func (c *stringCache) get(k string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *stringCache) put(k, v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= stringCacheSize {
		c.m = make(map[string]string)
	}
	c.m[k] = v
}
