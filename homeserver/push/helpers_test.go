package push

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

const testRoom = "!room:example.org"

var eventCounter atomic.Int64

// mkEvent builds an event of room version 11 from its fields.
func mkEvent(t testing.TB, fields map[string]any) *event.Event {
	t.Helper()
	ev := map[string]any{
		"room_id": testRoom, "sender": "@sender:example.org", "type": "m.room.message",
		"content": map[string]any{}, "depth": 1, "origin_server_ts": 1, "prev_events": []string{}, "auth_events": []string{},
	}
	for k, v := range fields {
		if v == nil {
			delete(ev, k)
			continue
		}
		ev[k] = v
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.NewEventFromTrustedJSONWithEventID(fmt.Sprintf("$ev%d", eventCounter.Add(1)), raw, "11")
	if err != nil {
		t.Fatalf("building event %s: %v", raw, err)
	}
	return e
}

func message(t testing.TB, sender string, content map[string]any) *event.Event {
	if content == nil {
		content = map[string]any{}
	}
	return mkEvent(t, map[string]any{"sender": sender, "content": content})
}

// powerLevels builds the power levels of a room created by creator with
// the given m.room.power_levels content (nil: no such event).
func powerLevels(t testing.TB, creator string, content map[string]any) *authrules.PowerLevels {
	t.Helper()
	create := mkEvent(t, map[string]any{"type": "m.room.create", "state_key": "", "sender": creator,
		"content": map[string]any{"room_version": "11"}})
	var pl *event.Event
	if content != nil {
		pl = mkEvent(t, map[string]any{"type": "m.room.power_levels", "state_key": "", "sender": creator, "content": content})
	}
	p, err := authrules.NewPowerLevels(create, pl)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// evalRules compiles rs for user and evaluates ev in room.
func evalRules(ev *event.Event, room *RoomContext, user string, rs *Ruleset) *Outcome {
	e := NewEvaluator()
	c := e.Compile(user, rs)
	return e.Evaluate(e.Prepare(ev, room), c)
}

func strp(s string) *string { return &s }

func raw(s string) json.RawMessage { return json.RawMessage(s) }
