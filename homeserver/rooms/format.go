package rooms

import (
	"context"
	"encoding/json"

	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// ClientEvent is an event in the client-server API's format.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       *Unsigned       `json:"unsigned,omitempty"`

	// Stored is the row the event was read from, for callers that need its
	// stream position; never serialised.
	Stored *storage.EventRow `json:"-"`
}

// Unsigned is the unsigned data the server adds for clients.
type Unsigned struct {
	Age             *int64          `json:"age,omitempty"`
	TransactionID   string          `json:"transaction_id,omitempty"`
	PrevContent     json.RawMessage `json:"prev_content,omitempty"`
	PrevSender      string          `json:"prev_sender,omitempty"`
	ReplacesState   string          `json:"replaces_state,omitempty"`
	RedactedBecause *ClientEvent    `json:"redacted_because,omitempty"`
	Membership      string          `json:"membership,omitempty"`
	// Relations holds the bundled aggregations (edits, threads,
	// references) that an Aggregator adds.
	Relations json.RawMessage `json:"m.relations,omitempty"`
}

// Aggregator adds bundled aggregations to events about to be served to a
// viewer (relations are indexed elsewhere; the engine only calls it).
type Aggregator func(ctx context.Context, viewer Viewer, evs []*ClientEvent) error

// SetAggregator installs the aggregator; set it before serving.
func (e *Engine) SetAggregator(a Aggregator) { e.aggregator = a }

// Viewer is who a formatted event is for: the sender's own device sees the
// transaction ID of its request.
type Viewer struct {
	UserID, DeviceID string
}

// FormatRows parses stored rows and formats them for viewer, applying
// redactions and adding unsigned data.
func (e *Engine) FormatRows(ctx context.Context, rows []*storage.EventRow, viewer Viewer) ([]*ClientEvent, error) {
	out := make([]*ClientEvent, 0, len(rows))
	for _, row := range rows {
		ce, err := e.formatRow(ctx, row, viewer, true)
		if err != nil {
			return nil, err
		}
		out = append(out, ce)
	}
	if e.aggregator != nil && len(out) > 0 {
		if err := e.aggregator(ctx, viewer, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (e *Engine) formatRow(ctx context.Context, row *storage.EventRow, viewer Viewer, withRelated bool) (*ClientEvent, error) {
	ev, err := e.parseRow(row)
	if err != nil {
		return nil, err
	}
	ce := &ClientEvent{
		Content: ev.Content(), EventID: ev.EventID(), OriginServerTS: ev.OriginServerTS(), RoomID: row.RoomID,
		Sender: ev.Sender(), StateKey: ev.StateKey(), Type: ev.Type(), Stored: row,
	}
	// Before room version 11 redacts is a top-level key; clients of every
	// version read it there, and from v11 also in content.
	ce.Redacts = ev.Redacts()
	u := &Unsigned{}
	age := e.now().UnixMilli() - ev.OriginServerTS()
	u.Age = &age
	if row.TxnID != "" && row.TxnUser == viewer.UserID && row.TxnDevice == viewer.DeviceID {
		u.TransactionID = row.TxnID
	}
	if row.RedactedBy != "" {
		red, err := ev.Redacted()
		if err != nil {
			return nil, err
		}
		ce.Content = red.Content()
		if withRelated {
			if rrow, err := e.db.GetEvent(ctx, row.RedactedBy); err == nil {
				u.RedactedBecause, _ = e.formatRow(ctx, rrow, viewer, false)
			}
		}
	}
	if ev.StateKey() != nil && withRelated {
		snap, err := e.db.LoadSnapshot(ctx, row.StateBefore)
		if err != nil {
			return nil, err
		}
		if prevID, ok := snap[storage.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}]; ok {
			u.ReplacesState = prevID
			if prow, err := e.db.GetAnyEvent(ctx, prevID); err == nil {
				if pce, err := e.formatRow(ctx, prow, viewer, false); err == nil {
					u.PrevContent, u.PrevSender = pce.Content, pce.Sender
				}
			}
		}
	}
	ce.Unsigned = u
	return ce, nil
}

// FormatEvent formats an event that is not (yet) read from storage, such as
// one just built; it has no redaction or previous state to report.
func FormatEvent(ev *event.Event) *ClientEvent {
	return &ClientEvent{
		Content: ev.Content(), EventID: ev.EventID(), OriginServerTS: ev.OriginServerTS(), RoomID: ev.RoomID(),
		Sender: ev.Sender(), StateKey: ev.StateKey(), Type: ev.Type(), Redacts: ev.Redacts(),
	}
}
