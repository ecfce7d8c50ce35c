package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"github.com/parley-chat/parley/storage"
)

// Rules for relations that the send path checks (clientChecks): the
// relations index itself is the relations service's.

// ErrDuplicateAnnotation: the user already sent this annotation
// (M_DUPLICATE_ANNOTATION).
var ErrDuplicateAnnotation = errors.New("duplicate annotation")

// ErrInvalidRelation: the relation breaks a rule of its rel_type, such as
// a thread started from an event that itself relates to another
// (M_UNKNOWN, as the spec asks).
var ErrInvalidRelation = errors.New("invalid relation")

// relatesTo is the m.relates_to of an event's content.
type relatesTo struct {
	RelType string `json:"rel_type"`
	EventID string `json:"event_id"`
	Key     string `json:"key"`
}

// parseRelatesTo reads content's m.relates_to; ok is false when there is
// none with a rel_type and an event_id.
func parseRelatesTo(content json.RawMessage) (relatesTo, bool) {
	if !bytes.Contains(content, []byte(`"m.relates_to"`)) {
		return relatesTo{}, false // the common case, without parsing
	}
	var c struct {
		RelatesTo json.RawMessage `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.RelatesTo) == 0 {
		return relatesTo{}, false
	}
	var rt relatesTo
	if json.Unmarshal(c.RelatesTo, &rt) != nil || rt.RelType == "" || rt.EventID == "" {
		return relatesTo{}, false
	}
	return rt, true
}

// checkRelation applies the rules the spec gives servers for relations
// sent by their own users: no second identical annotation of an event by
// the same user (unless the first was redacted), and no thread started from
// an event that itself has a relation.
//
// Annotations are looked up in the relations index, which the relations
// listener writes as each event is committed (before its sender has an
// answer), and, in case that write failed and the indexer has not caught
// up yet, among the sender's events committed since the room's last
// indexed annotation. Two identical annotations sent at the same instant,
// built into one batch, may still both pass.
func (e *Engine) checkRelation(ctx context.Context, p Proto, st stateView) error {
	rt, ok := parseRelatesTo(p.Content)
	if !ok {
		return nil
	}
	switch rt.RelType {
	case "m.annotation":
		if rt.Key == "" {
			return nil
		}
		// Not yet indexed first, then indexed: an annotation indexed in
		// between is found by the second look.
		dup, err := e.unindexedAnnotation(ctx, p, st, rt)
		if err != nil {
			return err
		}
		if !dup {
			if dup, err = e.db.AnnotationExists(ctx, rt.EventID, p.Sender, p.Type, rt.Key); err != nil {
				return err
			}
		}
		if dup {
			return wrapf(ErrDuplicateAnnotation, "you already sent this annotation")
		}
	case "m.thread":
		target, err := e.db.GetEvent(ctx, rt.EventID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // an unknown root: the relation is simply not aggregated
		}
		if err != nil {
			return err
		}
		var c struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(target.JSON), &c) == nil && target.RedactedBy == "" {
			if _, has := parseRelatesTo(c.Content); has {
				return wrapf(ErrInvalidRelation, "cannot start a thread from an event that has a relation")
			}
		}
	}
	return nil
}

// unindexedAnnotation looks for the same annotation among the sender's
// events of the room that the relations index does not hold yet.
func (e *Engine) unindexedAnnotation(ctx context.Context, p Proto, st stateView, rt relatesTo) (bool, error) {
	create := st.Get("m.room.create", "")
	if create == nil {
		return false, nil
	}
	rows, err := e.db.UnindexedAnnotations(ctx, create.RoomID(), p.Sender, p.Type, 50)
	if err != nil {
		return false, err
	}
	for _, row := range rows {
		var c struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(row.JSON), &c) != nil {
			continue
		}
		if other, ok := parseRelatesTo(c.Content); ok && other.RelType == rt.RelType && other.EventID == rt.EventID && other.Key == rt.Key {
			return true, nil
		}
	}
	return false, nil
}
