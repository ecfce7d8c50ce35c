// Package relations indexes the relationships between events (m.relates_to)
// and serves them: the bundled aggregations added to events served to
// clients (edits, threads, references), GET /relations and GET /threads.
package relations

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Relation types the server aggregates or checks.
const (
	RelReplace    = "m.replace"
	RelThread     = "m.thread"
	RelReference  = "m.reference"
	RelAnnotation = "m.annotation"
)

// Service indexes and serves relations.
type Service struct {
	db         *storage.DB
	rooms      *rooms.Engine
	serverName string
	log        logrus.FieldLogger
	// catchUp, when set, waits until the index holds every committed
	// event, so that a client reads what it just sent.
	catchUp func(ctx context.Context) error
}

// New returns the relations service.
func New(db *storage.DB, engine *rooms.Engine, serverName string, log logrus.FieldLogger) *Service {
	return &Service{db: db, rooms: engine, serverName: serverName, log: log}
}

// SetCatchUp installs the function readers call to wait for the index.
func (s *Service) SetCatchUp(f func(ctx context.Context) error) { s.catchUp = f }

func (s *Service) waitIndex(ctx context.Context) {
	if s.catchUp != nil {
		// Behind after the wait: serve what there is rather than fail.
		_ = s.catchUp(ctx)
	}
}

// relatesTo is an event content's m.relates_to.
type relatesTo struct {
	RelType string `json:"rel_type"`
	EventID string `json:"event_id"`
	Key     string `json:"key"`
}

// parseRelation reads the relation of an event's content; ok is false when
// it has none the server indexes (no rel_type or event_id, or an
// annotation without a key).
func parseRelation(content []byte) (relatesTo, bool) {
	if !bytes.Contains(content, []byte(`"m.relates_to"`)) {
		return relatesTo{}, false
	}
	var c struct {
		RelatesTo json.RawMessage `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.RelatesTo) == 0 {
		return relatesTo{}, false
	}
	var rt relatesTo
	if json.Unmarshal(c.RelatesTo, &rt) != nil || rt.RelType == "" || len(rt.EventID) < 2 || rt.EventID[0] != '$' {
		return relatesTo{}, false
	}
	if rt.RelType == RelAnnotation && rt.Key == "" {
		return relatesTo{}, false
	}
	if rt.RelType != RelAnnotation {
		rt.Key = ""
	}
	return rt, true
}

// OnEvent is a room listener: it indexes a new event's relation at once,
// so that the send path's duplicate-annotation check sees it. The indexer
// (Index) covers anything this misses, such as events committed just
// before a crash.
func (s *Service) OnEvent(ev *event.Event, pos int64) {
	rt, ok := parseRelation(ev.Content())
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rel := storage.Relation{EventID: ev.EventID(), RoomID: ev.RoomID(), RelatesTo: rt.EventID, RelType: rt.RelType,
		Type: ev.Type(), Sender: ev.Sender(), Key: rt.Key, StreamPos: pos, OriginServerTS: ev.OriginServerTS()}
	if err := s.db.InsertRelations(ctx, []storage.Relation{rel}); err != nil {
		s.log.WithError(err).WithField("event_id", ev.EventID()).Warn("indexing a relation failed; the indexer will retry")
	}
}

// Index is the indexer function: it records the relations of committed
// events.
func (s *Service) Index(ctx context.Context, rows []*storage.EventRow) error {
	var rels []storage.Relation
	for _, row := range rows {
		if row.RedactedBy != "" {
			continue // a redacted event relates to nothing
		}
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(row.JSON), &ev) != nil {
			continue
		}
		rt, ok := parseRelation(ev.Content)
		if !ok {
			continue
		}
		rels = append(rels, storage.Relation{EventID: row.EventID, RoomID: row.RoomID, RelatesTo: rt.EventID, RelType: rt.RelType,
			Type: row.Type, Sender: row.Sender, Key: rt.Key, StreamPos: row.StreamPos, OriginServerTS: row.OriginServerTS})
	}
	return s.db.InsertRelations(ctx, rels)
}
