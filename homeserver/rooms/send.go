package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// Send persists one event from a local user and returns it. With a Txn, a
// repeated request returns the event of the first one (also across
// restarts) instead of sending again.
// The transaction check happens in the sequencer, for a whole batch at once.
func (e *Engine) Send(ctx context.Context, roomID string, p Proto) (*event.Event, error) {
	r, err := e.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	evs, _, err := r.submit(ctx, []Proto{p}, e.clientChecks)
	if err != nil {
		// Two identical requests may race into the same batch: the unique
		// index refuses the second, whose answer is the first's event.
		if p.Txn != nil {
			if ev, err2 := e.eventByTxn(ctx, roomID, p.Txn); err2 == nil && ev != nil {
				return ev, nil
			}
		}
		return nil, err
	}
	return evs[0], nil
}

func (e *Engine) eventByTxn(ctx context.Context, roomID string, t *Txn) (*event.Event, error) {
	row, err := e.db.EventByTxn(ctx, t.UserID, t.DeviceID, t.TxnID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if row.RoomID != roomID {
		return nil, wrapf(ErrBadRequest, "transaction ID %q was already used in another room", t.TxnID)
	}
	return e.parseRow(row)
}

// parseRow parses a stored event.
func (e *Engine) parseRow(row *storage.EventRow) (*event.Event, error) {
	version, err := e.RoomVersion(context.Background(), row.RoomID)
	if err != nil {
		return nil, err
	}
	return event.NewEventFromTrustedJSONWithEventID(row.EventID, []byte(row.JSON), version)
}

// clientChecks are the rules a local client's event must follow beyond the
// authorization rules, checked against the state it is built on.
func (e *Engine) clientChecks(p Proto, st stateView) error {
	if p.Type == "m.room.redaction" {
		return e.checkRedaction(p, st)
	}
	if p.Type == "m.room.create" {
		return wrapf(ErrForbidden, "a room has exactly one m.room.create event")
	}
	return e.checkRelation(context.Background(), p, st)
}

// checkRedaction: without the power to redact, a user may redact only
// their own events (the authorization rules leave this check to the
// receiving servers from room version 3 on, so the sending server must do
// it for its own users).
func (e *Engine) checkRedaction(p Proto, st stateView) error {
	if p.Redacts == "" {
		return wrapf(ErrBadRequest, "redaction without an event to redact")
	}
	target, err := e.db.GetEvent(context.Background(), p.Redacts)
	if errors.Is(err, storage.ErrNotFound) {
		return wrapf(ErrNotFound, "unknown event %s", p.Redacts)
	}
	if err != nil {
		return err
	}
	if target.Sender == p.Sender {
		return nil
	}
	pl, err := authrules.NewPowerLevels(st.Get("m.room.create", ""), st.Get("m.room.power_levels", ""))
	if err != nil {
		return err
	}
	if pl.UserLevel(p.Sender) < pl.RedactLevel() {
		return wrapf(ErrForbidden, "you may only redact your own events")
	}
	return nil
}

// Redact redacts an event of the room.
func (e *Engine) Redact(ctx context.Context, roomID, sender, eventID, reason string, txn *Txn) (*event.Event, error) {
	row, err := e.db.GetEvent(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && row.RoomID != roomID) {
		return nil, wrapf(ErrNotFound, "unknown event %s", eventID)
	}
	if err != nil {
		return nil, err
	}
	version, err := e.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	info, _ := version.Info()
	content := map[string]any{}
	if reason != "" {
		content["reason"] = reason
	}
	if info.RedactsInContent {
		content["redacts"] = eventID
	}
	return e.Send(ctx, roomID, Proto{Type: "m.room.redaction", Sender: sender, Content: mustJSON(content), Redacts: eventID, Txn: txn})
}

// validateContent refuses content that is not a JSON object.
func validateContent(c json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(c, &m); err != nil || m == nil {
		return wrapf(ErrBadRequest, "content must be a JSON object")
	}
	return nil
}
