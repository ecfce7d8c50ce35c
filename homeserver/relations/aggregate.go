package relations

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/parley-chat/parley/homeserver/ignored"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/storage"
)

// Bundled aggregations (the spec's "Aggregations of child events"): the
// server summarises, under unsigned.m.relations, the edits (m.replace),
// threads (m.thread) and references (m.reference) of each event it serves.
// Annotations are not aggregated: the spec leaves counting them to
// clients. Children sent by users the viewer ignores do not count, nor do
// redacted children, whose relation the redaction broke.
//
// Aggregation reads the relations index as it is: it does not wait for the
// indexer, as /relations and /threads do, because it runs on every /sync
// and /messages. The relations listener indexes each child before its
// sender gets an answer, so only a child whose listener write failed is
// missing until the indexer catches up.

// aggregatedTypes are the rel_types bundled with events.
var aggregatedTypes = []string{RelReplace, RelThread, RelReference}

// maxReferences bounds the m.reference chunk of one event.
const maxReferences = 100

// maxDepth bounds how deep events bundled inside aggregations (an edit, a
// thread's latest event) get aggregations of their own.
const maxDepth = 2

type depthKey struct{}

// threadSummary is the m.thread aggregation.
type threadSummary struct {
	LatestEvent             *rooms.ClientEvent `json:"latest_event"`
	Count                   int                `json:"count"`
	CurrentUserParticipated bool               `json:"current_user_participated"`
}

type referenceChunk struct {
	Chunk []eventRef `json:"chunk"`
}

type eventRef struct {
	EventID string `json:"event_id"`
}

// Aggregate is the room engine's Aggregator: it fills
// unsigned.m.relations of the events about to be served to viewer.
func (s *Service) Aggregate(ctx context.Context, viewer rooms.Viewer, evs []*rooms.ClientEvent) error {
	depth, _ := ctx.Value(depthKey{}).(int)
	if depth >= maxDepth {
		return nil
	}
	var parents []string
	byID := map[string][]*rooms.ClientEvent{}
	for _, ev := range evs {
		// State events do not receive bundled aggregations (see the spec's
		// warning).
		if ev == nil || ev.StateKey != nil || ev.Unsigned == nil {
			continue
		}
		if _, seen := byID[ev.EventID]; !seen {
			parents = append(parents, ev.EventID)
		}
		byID[ev.EventID] = append(byID[ev.EventID], ev)
	}
	if len(parents) == 0 {
		return nil
	}
	ign, err := ignored.Users(ctx, s.db, s.serverName, viewer.UserID)
	if err != nil {
		return err
	}
	counts, err := s.db.RelationCounts(ctx, parents, aggregatedTypes, viewer.UserID, ign.List())
	if err != nil || len(counts) == 0 {
		return err
	}
	inner := context.WithValue(ctx, depthKey{}, depth+1)
	bundles := map[string]map[string]any{}
	add := func(id, relType string, v any) {
		if bundles[id] == nil {
			bundles[id] = map[string]any{}
		}
		bundles[id][relType] = v
	}
	for _, c := range counts {
		parent := byID[c.Parent][0]
		switch c.RelType {
		case RelReplace:
			edit, err := s.latestEdit(inner, viewer, parent, ign)
			if err != nil {
				return err
			}
			if edit != nil {
				add(c.Parent, RelReplace, edit)
			}
		case RelThread:
			latest, err := s.latestChild(inner, viewer, parent, RelThread, ign)
			if err != nil {
				return err
			}
			if latest != nil {
				add(c.Parent, RelThread, threadSummary{LatestEvent: latest, Count: c.Count,
					CurrentUserParticipated: c.ByViewer || parent.Sender == viewer.UserID})
			}
		case RelReference:
			refs, err := s.references(ctx, viewer, parent, ign)
			if err != nil {
				return err
			}
			if len(refs) > 0 {
				add(c.Parent, RelReference, referenceChunk{Chunk: refs})
			}
		}
	}
	for id, b := range bundles {
		raw, err := json.Marshal(b)
		if err != nil {
			return err
		}
		for _, ev := range byID[id] {
			ev.Unsigned.Relations = raw
		}
	}
	return nil
}

// latestEdit is the most recent valid replacement of parent that the viewer
// may see, formatted as usual, or nil.
func (s *Service) latestEdit(ctx context.Context, viewer rooms.Viewer, parent *rooms.ClientEvent, ign ignored.Set) (*rooms.ClientEvent, error) {
	// A redacted original carries no edits, and an edit cannot be edited.
	if parent.Stored != nil && parent.Stored.RedactedBy != "" {
		return nil, nil
	}
	if rt, ok := parseRelation(parent.Content); ok && rt.RelType == RelReplace {
		return nil, nil
	}
	rows, err := s.db.RelationChildren(ctx, storage.ChildQuery{RoomID: parent.RoomID, Parent: parent.EventID,
		RelType: RelReplace, EventType: parent.Type, Senders: []string{parent.Sender}, Excluded: ign.List(),
		From: -1, To: -1, Backwards: true, Limit: 50, Depth: 1})
	if err != nil {
		return nil, err
	}
	valid := rows[:0:0]
	for _, row := range rows {
		if row.StateKey == nil && hasNewContent(row) {
			valid = append(valid, row)
		}
	}
	if valid, err = s.rooms.VisibleRows(ctx, viewer.UserID, parent.RoomID, valid); err != nil || len(valid) == 0 {
		return nil, err
	}
	// The most recent by origin_server_ts, then by the larger event ID.
	sort.Slice(valid, func(i, j int) bool {
		if valid[i].OriginServerTS != valid[j].OriginServerTS {
			return valid[i].OriginServerTS > valid[j].OriginServerTS
		}
		return valid[i].EventID > valid[j].EventID
	})
	return s.formatOne(ctx, viewer, valid[0])
}

// hasNewContent reports whether a replacement carries m.new_content. An
// encrypted replacement carries it inside the ciphertext, where the server
// cannot look, so it is given the benefit of the doubt.
func hasNewContent(row *storage.EventRow) bool {
	if row.Type == "m.room.encrypted" {
		return true
	}
	var ev struct {
		Content struct {
			NewContent json.RawMessage `json:"m.new_content"`
		} `json:"content"`
	}
	if json.Unmarshal([]byte(row.JSON), &ev) != nil {
		return false
	}
	var obj map[string]json.RawMessage
	return json.Unmarshal(ev.Content.NewContent, &obj) == nil && obj != nil
}

// latestChild is the newest child of parent with relType that the viewer
// may see (topologically, by stream position), formatted, or nil.
func (s *Service) latestChild(ctx context.Context, viewer rooms.Viewer, parent *rooms.ClientEvent, relType string, ign ignored.Set) (*rooms.ClientEvent, error) {
	from := int64(-1)
	for range 5 {
		rows, err := s.db.RelationChildren(ctx, storage.ChildQuery{RoomID: parent.RoomID, Parent: parent.EventID,
			RelType: relType, Excluded: ign.List(), From: from, To: -1, Backwards: true, Limit: 20, Depth: 1})
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		visible, err := s.rooms.VisibleRows(ctx, viewer.UserID, parent.RoomID, rows)
		if err != nil {
			return nil, err
		}
		if len(visible) > 0 {
			return s.formatOne(ctx, viewer, visible[0])
		}
		from = rows[len(rows)-1].StreamPos - 1
	}
	return nil, nil
}

// references lists the children referencing parent that the viewer may
// see, oldest first.
func (s *Service) references(ctx context.Context, viewer rooms.Viewer, parent *rooms.ClientEvent, ign ignored.Set) ([]eventRef, error) {
	rows, err := s.db.RelationChildren(ctx, storage.ChildQuery{RoomID: parent.RoomID, Parent: parent.EventID,
		RelType: RelReference, Excluded: ign.List(), From: -1, To: -1, Limit: maxReferences, Depth: 1})
	if err != nil {
		return nil, err
	}
	if rows, err = s.rooms.VisibleRows(ctx, viewer.UserID, parent.RoomID, rows); err != nil {
		return nil, err
	}
	out := make([]eventRef, len(rows))
	for i, row := range rows {
		out[i] = eventRef{EventID: row.EventID}
	}
	return out, nil
}

// formatOne formats a stored event for the viewer, with its own bundled
// aggregations (ctx carries the depth that stops the recursion).
func (s *Service) formatOne(ctx context.Context, viewer rooms.Viewer, row *storage.EventRow) (*rooms.ClientEvent, error) {
	evs, err := s.rooms.FormatRows(ctx, []*storage.EventRow{row}, viewer)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return evs[0], nil
}
