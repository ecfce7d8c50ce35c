package federation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mevent "maunium.net/go/mautrix/event"
	mid "maunium.net/go/mautrix/id"

	"github.com/parley-chat/parley/federation/xmatrix"
	"github.com/parley-chat/parley/homeserver/hstest"
	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/event"
	"github.com/parley-chat/parley/storage"
)

// forger builds events as a server whose signing key the test holds,
// on top of what the target server holds of a room.
type forger struct {
	t      *testing.T
	target *hstest.Server
	roomID string
	origin string
	keyID  string
	key    ed25519.PrivateKey
}

// build makes an event sent by sender, with prev_events (nil: the target's
// forward extremities) and auth events chosen from state (nil: the
// target's current state).
func (f *forger) build(sender, typ string, stateKey *string, content any, prev []string, state map[storage.StateKey]*event.Event) *event.Event {
	f.t.Helper()
	ctx := context.Background()
	version, err := f.target.Rooms.RoomVersion(ctx, f.roomID)
	if err != nil {
		f.t.Fatal(err)
	}
	info, _ := version.Info()
	if prev == nil {
		if prev, err = f.target.DB.ForwardExtremities(ctx, f.roomID); err != nil {
			f.t.Fatal(err)
		}
	}
	if state == nil {
		if state, err = f.target.Rooms.CurrentState(ctx, f.roomID); err != nil {
			f.t.Fatal(err)
		}
	}
	depth := int64(0)
	for _, p := range prev {
		row, err := f.target.DB.GetEvent(ctx, p)
		if err != nil {
			f.t.Fatal(err)
		}
		depth = max(depth, row.Depth)
	}
	raw, _ := json.Marshal(content)
	var auth []string
	for _, k := range authrules.AuthEventsNeeded(info, typ, stateKey, sender, raw) {
		if ev := state[storage.StateKey{Type: k.EventType, StateKey: k.StateKey}]; ev != nil {
			auth = append(auth, ev.EventID())
		}
	}
	ev, err := event.ProtoEvent{Type: typ, StateKey: stateKey, Sender: sender, RoomID: f.roomID, Content: raw,
		PrevEvents: prev, AuthEvents: auth, Depth: depth + 1, OriginServerTS: time.Now().UnixMilli(),
	}.Build(version, f.origin, f.keyID, f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func (f *forger) message(sender, body string) *event.Event {
	return f.build(sender, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": body}, nil, nil)
}

// txnResult is a /send answer.
type txnResult struct {
	PDUs map[string]struct {
		Error string `json:"error"`
	} `json:"pdus"`
}

// sendTxn sends a transaction from the attacker's server (a real one, so
// its requests are correctly signed) to the target.
func sendTxn(t testing.TB, from *hstest.Server, to, txnID string, pdus ...json.RawMessage) (*txnResult, error) {
	t.Helper()
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	body := map[string]any{"origin": from.Config.ServerName, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus, "edus": []any{}}
	var res txnResult
	err := from.Federation.Client().Do(context.Background(), to, "PUT", "/_matrix/federation/v1/send/"+txnID, body, &res)
	return &res, err
}

func raws(evs ...*event.Event) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		out[i] = ev.JSON()
	}
	return out
}

// knowledge is what the server holds of an event.
func knowledge(t *testing.T, srv *hstest.Server, eventID string) storage.EventKnowledge {
	t.Helper()
	_, _, k, err := srv.DB.AnyEventJSON(context.Background(), eventID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// neverShown checks that a client of the server sees the event neither in
// /messages nor in an initial /sync nor through /event.
func neverShown(t *testing.T, cli *mautrix.Client, roomID mid.RoomID, eventID string) {
	t.Helper()
	for _, ev := range history(t, cli, roomID, 1000) {
		if ev.ID.String() == eventID {
			t.Fatalf("%s is in /messages", eventID)
		}
	}
	resp, err := cli.SyncRequest(context.Background(), 0, "", "", true, mevent.PresenceOnline)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range resp.Rooms.Join[roomID].Timeline.Events {
		if ev.ID.String() == eventID {
			t.Fatalf("%s is in /sync", eventID)
		}
	}
	if _, err := cli.GetEvent(context.Background(), roomID, mid.EventID(eventID)); err == nil {
		t.Fatalf("%s is served by /event", eventID)
	}
}

// Attacks on a server through federation: forged requests and events,
// events that break the rules, replays and oversized transactions. hs3 is
// the attacker: a real server whose signing key the test uses to forge.
func TestFederationAttacks(t *testing.T) {
	n := newTestNet(t, "hs1.test", "hs2.test", "hs3.test")
	hs1 := n.start(t, "hs1.test", noLimits)
	hs2 := n.start(t, "hs2.test", noLimits)
	hs3 := n.start(t, "hs3.test", noLimits)
	ctx := context.Background()
	alice := fedUser(t, hs1, "alice")
	bob := fedUser(t, hs2, "bob")
	mallory := fedUser(t, hs3, "mallory")
	room := sharedRoom(t, alice, bob, "hs1.test")
	if _, err := mallory.JoinRoom(ctx, room.String(), &mautrix.ReqJoinRoom{Via: []string{"hs1.test"}}); err != nil {
		t.Fatal(err)
	}
	waitMembership(t, bob, room, mallory.UserID, "join")
	roomID := room.String()
	malloryID := mallory.UserID.String()
	f := &forger{t: t, target: hs2, roomID: roomID, origin: "hs3.test", keyID: hs3.SigningKey.KeyID, key: hs3.SigningKey.Key}

	// The attacker's server may send genuine events: the baseline.
	genuine := f.message(malloryID, "a genuine message")
	if res, err := sendTxn(t, hs3, "hs2.test", "genuine", raws(genuine)...); err != nil || res.PDUs[genuine.EventID()].Error != "" {
		t.Fatalf("a genuine event: %+v %v", res, err)
	}
	if k := knowledge(t, hs2, genuine.EventID()); k != storage.InTimeline {
		t.Fatalf("the genuine event is not in the timeline (%d)", k)
	}

	t.Run("forged origin", func(t *testing.T) {
		// A /send claiming to come from hs1, signed with hs3's key.
		ev := f.message(malloryID, "sent under a false name")
		body, _ := json.Marshal(map[string]any{"origin": "hs1.test", "origin_server_ts": time.Now().UnixMilli(), "pdus": raws(ev)})
		uri := "/_matrix/federation/v1/send/forged-origin"
		auth, err := xmatrix.Sign(xmatrix.Request{Method: "PUT", URI: uri, Origin: "hs1.test", Destination: "hs2.test", Content: body},
			hs3.SigningKey.KeyID, hs3.SigningKey.Key)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("PUT", "https://"+n.Addrs["hs2.test"]+uri, strings.NewReader(string(body)))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := rawClient(n, "hs2.test").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(data), "M_UNAUTHORIZED") {
			t.Fatalf("forged /send: %d %s", resp.StatusCode, data)
		}
		// Correctly signed by hs3 but naming hs1 as the transaction's origin.
		body2 := map[string]any{"origin": "hs1.test", "origin_server_ts": time.Now().UnixMilli(), "pdus": raws(ev), "edus": []any{}}
		if err := hs3.Federation.Client().Do(ctx, "hs2.test", "PUT", "/_matrix/federation/v1/send/forged-body", body2, nil); err == nil {
			t.Fatal("a transaction naming another origin was accepted")
		}
		if k := knowledge(t, hs2, ev.EventID()); k != storage.Unknown {
			t.Fatalf("the forged transaction's event was stored (%d)", k)
		}
	})

	t.Run("bad signatures", func(t *testing.T) {
		// Signed with a key that is not hs3's, under hs3's key ID.
		_, wrongKey, _ := ed25519.GenerateKey(rand.Reader)
		badSig := (&forger{t: t, target: hs2, roomID: roomID, origin: "hs3.test", keyID: hs3.SigningKey.KeyID, key: wrongKey}).
			message(malloryID, "badly signed")
		// A user of hs1 speaking, signed by hs3 only.
		impostor := f.message(alice.UserID.String(), "alice did not say this")
		res, err := sendTxn(t, hs3, "hs2.test", "bad-signatures", raws(badSig, impostor)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range []*event.Event{badSig, impostor} {
			if r, ok := res.PDUs[ev.EventID()]; !ok || r.Error == "" {
				t.Errorf("%s: result %+v, want an error", ev.EventID(), res.PDUs)
			}
			if k := knowledge(t, hs2, ev.EventID()); k != storage.Unknown {
				t.Errorf("a badly signed event was stored (%d)", k)
			}
		}
	})

	t.Run("tampered content", func(t *testing.T) {
		// Signatures cover the redacted event, so changing the content
		// keeps them valid and breaks only the content hash: the event
		// must be kept, redacted.
		ev := f.message(malloryID, "the original words")
		var obj map[string]any
		if err := json.Unmarshal(ev.JSON(), &obj); err != nil {
			t.Fatal(err)
		}
		obj["content"] = map[string]any{"msgtype": "m.text", "body": "words put in mallory's mouth"}
		tampered, err := canonicaljson.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		res, err := sendTxn(t, hs3, "hs2.test", "tampered", tampered)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := res.PDUs[ev.EventID()]; !ok || r.Error != "" {
			t.Fatalf("tampered event: %+v", res.PDUs)
		}
		row, err := hs2.DB.GetEvent(ctx, ev.EventID())
		if err != nil {
			t.Fatalf("the tampered event was not stored: %v", err)
		}
		if strings.Contains(row.JSON, "words") {
			t.Fatalf("stored with its content: %s", row.JSON)
		}
		got, err := bob.GetEvent(ctx, room, mid.EventID(ev.EventID()))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Content.Raw) != 0 {
			t.Fatalf("bob sees content %v", got.Content.Raw)
		}
	})

	t.Run("events that fail the authorization rules", func(t *testing.T) {
		// A user of hs3 who never joined speaks in the room.
		outsider := f.message("@eve:hs3.test", "I am not in this room")
		// Mallory, without power, gives herself the highest power level.
		state, err := hs2.Rooms.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		var pl map[string]any
		_ = json.Unmarshal(state[storage.StateKey{Type: "m.room.power_levels"}].Content(), &pl)
		users, _ := pl["users"].(map[string]any)
		users[malloryID] = 100
		empty := ""
		escalation := f.build(malloryID, "m.room.power_levels", &empty, pl, nil, nil)
		// Mallory renames the room without the power to.
		rename := f.build(malloryID, "m.room.name", &empty, map[string]any{"name": "pwned"}, nil, nil)
		res, err := sendTxn(t, hs3, "hs2.test", "unauthorised", raws(outsider, escalation, rename)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range []*event.Event{outsider, escalation, rename} {
			if r, ok := res.PDUs[ev.EventID()]; !ok || r.Error == "" {
				t.Errorf("%s (%s): result %+v, want an error", ev.EventID(), ev.Type(), res.PDUs[ev.EventID()])
			}
			if k := knowledge(t, hs2, ev.EventID()); k != storage.Rejected {
				t.Errorf("%s (%s) is not recorded as rejected (%d)", ev.EventID(), ev.Type(), k)
			}
			neverShown(t, bob, room, ev.EventID())
		}
		after, _ := hs2.Rooms.CurrentStateEvent(ctx, roomID, "m.room.power_levels", "")
		if after.EventID() != state[storage.StateKey{Type: "m.room.power_levels"}].EventID() {
			t.Fatal("the power levels changed")
		}
		if name, _ := hs2.Rooms.CurrentStateEvent(ctx, roomID, "m.room.name", ""); name != nil {
			t.Fatal("the room was renamed")
		}
		// An event that cites a rejected event as its auth event is
		// rejected in turn.
		onRejected := f.build(malloryID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "x"}, nil,
			map[storage.StateKey]*event.Event{
				{Type: "m.room.create"}:                      state[storage.StateKey{Type: "m.room.create"}],
				{Type: "m.room.power_levels"}:                escalation,
				{Type: "m.room.member", StateKey: malloryID}: state[storage.StateKey{Type: "m.room.member", StateKey: malloryID}],
			})
		if res, err := sendTxn(t, hs3, "hs2.test", "on-rejected", raws(onRejected)...); err != nil || res.PDUs[onRejected.EventID()].Error == "" {
			t.Fatalf("an event authorised by a rejected event: %+v %v", res, err)
		}
	})

	t.Run("soft fail", func(t *testing.T) {
		// hs3 pretends it never heard of mallory's ban: it sends a message
		// built on the room as it was before the ban.
		before, err := hs2.DB.ForwardExtremities(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		stateBefore, err := hs2.Rooms.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.BanUser(ctx, room, &mautrix.ReqBanUser{UserID: mallory.UserID, Reason: "forging"}); err != nil {
			t.Fatal(err)
		}
		waitMembership(t, bob, room, mallory.UserID, "ban")
		sneaky := f.build(malloryID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "I was never banned"}, before, stateBefore)
		res, err := sendTxn(t, hs3, "hs2.test", "soft-fail", raws(sneaky)...)
		if err != nil {
			t.Fatal(err)
		}
		// Allowed by the state before it, so not an error: kept, but
		// outside the timeline.
		if r, ok := res.PDUs[sneaky.EventID()]; !ok || r.Error != "" {
			t.Fatalf("soft-failed event: %+v", res.PDUs)
		}
		if k := knowledge(t, hs2, sneaky.EventID()); k != storage.Outlier {
			t.Fatalf("the soft-failed event is not held as an outlier (%d)", k)
		}
		neverShown(t, bob, room, sneaky.EventID())
		// Never a prev event of what comes next.
		ext, _ := hs2.DB.ForwardExtremities(ctx, roomID)
		for _, id := range ext {
			if id == sneaky.EventID() {
				t.Fatal("the soft-failed event is a forward extremity")
			}
		}
		sent, err := bob.SendText(ctx, room, "after the sneaky message")
		if err != nil {
			t.Fatal(err)
		}
		row, err := hs2.DB.GetEvent(ctx, sent.EventID.String())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(row.JSON, sneaky.EventID()) {
			t.Fatalf("bob's next event cites the soft-failed one: %s", row.JSON)
		}
		// The other servers never got it either.
		eventually(t, 20*time.Second, "bob's message on hs1", func() error {
			return hasBodies(bodies(history(t, alice, room, 100)), []string{"after the sneaky message"})
		})
		neverShown(t, alice, room, sneaky.EventID())
	})

	t.Run("replayed transaction", func(t *testing.T) {
		// Mallory is banned by now: another user of hs3 joins (the room is
		// public). A replayed transaction ID is answered from what was
		// stored and not processed again, whatever the body carries now.
		first := f.build("@trudy:hs3.test", "m.room.member", strPtr("@trudy:hs3.test"), map[string]any{"membership": "join"}, nil, nil)
		res1, err := sendTxn(t, hs3, "hs2.test", "replay", raws(first)...)
		if err != nil {
			t.Fatal(err)
		}
		second := f.message("@trudy:hs3.test", "sent in a replayed transaction")
		res2, err := sendTxn(t, hs3, "hs2.test", "replay", raws(second)...)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(res1.PDUs) != fmt.Sprint(res2.PDUs) {
			t.Fatalf("the replay got a different answer: %+v, then %+v", res1.PDUs, res2.PDUs)
		}
		if k := knowledge(t, hs2, second.EventID()); k != storage.Unknown {
			t.Fatalf("the replayed transaction's new event was processed (%d)", k)
		}
		// The same ID from another origin is another transaction.
		if _, err := sendTxn(t, hs1, "hs2.test", "replay"); err != nil {
			t.Fatal(err)
		}
	})

	for _, c := range []struct {
		name, joiner string
		limit        int // events a batch holds before it is written
	}{{"in one write", "carol", 0}, {"in several writes", "dan", 2}} {
		t.Run("events of one transaction build on each other "+c.name, func(t *testing.T) {
			// The PDUs of a transaction are persisted together, each checked
			// on the room as the ones before it leave it: a join, then the
			// new member speaking, a refused power grab in between, a repeat
			// and an outsider. A batch too large to hold is written in
			// several steps, with the same outcome.
			if c.limit > 0 {
				defer rooms.SetRemoteBatchLimits(c.limit, 1<<30)()
			}
			version, _ := hs2.Rooms.RoomVersion(ctx, roomID)
			state, err := hs2.Rooms.CurrentState(ctx, roomID)
			if err != nil {
				t.Fatal(err)
			}
			prev, _ := hs2.DB.ForwardExtremities(ctx, roomID)
			var depth int64
			for _, p := range prev {
				row, _ := hs2.DB.GetEvent(ctx, p)
				depth = max(depth, row.Depth)
			}
			carol := "@" + c.joiner + ":hs3.test"
			authOf := func(sender, typ string, stateKey *string, content []byte) []string {
				info, _ := version.Info()
				var ids []string
				for _, k := range authrules.AuthEventsNeeded(info, typ, stateKey, sender, content) {
					if ev := state[storage.StateKey{Type: k.EventType, StateKey: k.StateKey}]; ev != nil {
						ids = append(ids, ev.EventID())
					}
				}
				return ids
			}
			next := func(sender, typ string, stateKey *string, content any, prev []string, depth int64) *event.Event {
				raw, _ := json.Marshal(content)
				ev, err := event.ProtoEvent{Type: typ, StateKey: stateKey, Sender: sender, RoomID: roomID, Content: raw,
					PrevEvents: prev, AuthEvents: authOf(sender, typ, stateKey, raw), Depth: depth, OriginServerTS: time.Now().UnixMilli(),
				}.Build(version, "hs3.test", hs3.SigningKey.KeyID, hs3.SigningKey.Key)
				if err != nil {
					t.Fatal(err)
				}
				if sk := ev.StateKey(); sk != nil {
					state[storage.StateKey{Type: typ, StateKey: *sk}] = ev
				}
				return ev
			}
			join := next(carol, "m.room.member", &carol, map[string]any{"membership": "join"}, prev, depth+1)
			hello := next(carol, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": c.joiner + " says hello"}, []string{join.EventID()}, depth+2)
			var pl map[string]any
			_ = json.Unmarshal(state[storage.StateKey{Type: "m.room.power_levels"}].Content(), &pl)
			plBefore := state[storage.StateKey{Type: "m.room.power_levels"}]
			pl["users"].(map[string]any)[carol] = 100
			empty := ""
			grab := next(carol, "m.room.power_levels", &empty, pl, []string{hello.EventID()}, depth+3)
			state[storage.StateKey{Type: "m.room.power_levels"}] = plBefore // refused: not a base for what follows
			again := next(carol, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": c.joiner + " again"}, []string{hello.EventID()}, depth+3)
			outsider := next("@eve:hs3.test", "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "eve"}, []string{again.EventID()}, depth+4)
			res, err := sendTxn(t, hs3, "hs2.test", "chained-"+c.joiner, raws(join, hello, grab, again, again, outsider)...)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range []*event.Event{join, hello, again} {
				if r, ok := res.PDUs[ev.EventID()]; !ok || r.Error != "" {
					t.Errorf("%s (%s): %+v, want accepted", ev.EventID(), ev.Type(), res.PDUs[ev.EventID()])
				}
				if k := knowledge(t, hs2, ev.EventID()); k != storage.InTimeline {
					t.Errorf("%s (%s) is not in the timeline (%d)", ev.EventID(), ev.Type(), k)
				}
			}
			for _, ev := range []*event.Event{grab, outsider} {
				if r, ok := res.PDUs[ev.EventID()]; !ok || r.Error == "" {
					t.Errorf("%s (%s): %+v, want an error", ev.EventID(), ev.Type(), res.PDUs[ev.EventID()])
				}
				if k := knowledge(t, hs2, ev.EventID()); k != storage.Rejected {
					t.Errorf("%s (%s) is not recorded as rejected (%d)", ev.EventID(), ev.Type(), k)
				}
			}
			// In order, in the timeline and in the room's state.
			var positions []int64
			for _, ev := range []*event.Event{join, hello, again} {
				row, err := hs2.DB.GetEvent(ctx, ev.EventID())
				if err != nil {
					t.Fatal(err)
				}
				positions = append(positions, row.StreamPos)
			}
			if positions[0] >= positions[1] || positions[1] >= positions[2] {
				t.Fatalf("stream positions %v are not in the order sent", positions)
			}
			if m, _ := hs2.Rooms.CurrentStateEvent(ctx, roomID, "m.room.member", carol); m == nil || m.EventID() != join.EventID() {
				t.Fatal("carol's join is not the room's state")
			}
			if pl, _ := hs2.Rooms.CurrentStateEvent(ctx, roomID, "m.room.power_levels", ""); pl.EventID() != plBefore.EventID() {
				t.Fatal("the power levels changed")
			}
			if ext, _ := hs2.DB.ForwardExtremities(ctx, roomID); len(ext) != 1 || ext[0] != again.EventID() {
				t.Fatalf("forward extremities %v, want only %s", ext, again.EventID())
			}
			eventually(t, 10*time.Second, c.joiner+"'s messages in bob's history", func() error {
				return hasBodies(bodies(history(t, bob, room, 100)), []string{c.joiner + " says hello", c.joiner + " again"})
			})
		})
	}

	t.Run("malformed and oversized PDUs", func(t *testing.T) {
		// Each bad PDU gets an error of its own; nothing of it is stored
		// and the good PDU of the same transaction goes in.
		// Mallory is banned by now; trudy joined in the replay test.
		good := f.message("@trudy:hs3.test", "between the bad ones")
		var obj map[string]any
		_ = json.Unmarshal(f.message("@trudy:hs3.test", "x").JSON(), &obj)
		obj["content"] = map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 70_000)}
		huge, _ := json.Marshal(obj)
		pdus := []json.RawMessage{json.RawMessage(`"not an object"`), huge, good.JSON(), json.RawMessage(`{"type":"m.room.message"}`)}
		res, err := sendTxn(t, hs3, "hs2.test", "malformed", pdus...)
		if err != nil {
			t.Fatalf("a transaction with bad PDUs: %v", err)
		}
		if r, ok := res.PDUs[good.EventID()]; !ok || r.Error != "" {
			t.Fatalf("the good PDU: %+v", res.PDUs)
		}
		for id, r := range res.PDUs {
			if id != good.EventID() && (r.Error == "" || knowledge(t, hs2, id) != storage.Unknown) {
				t.Errorf("bad PDU %s: %+v, held as %d", id, r, knowledge(t, hs2, id))
			}
		}
		if k := knowledge(t, hs2, good.EventID()); k != storage.InTimeline {
			t.Fatalf("the good PDU is not in the timeline (%d)", k)
		}
		// A body nested deeper than any canonical JSON we read cannot
		// even have its signature checked: refused as a whole, with a
		// Matrix error.
		body := `{"origin":"hs3.test","pdus":[],"edus":[` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `]}`
		uri := "/_matrix/federation/v1/send/deep"
		auth, err := xmatrix.Sign(xmatrix.Request{Method: "PUT", URI: uri, Origin: "hs3.test", Destination: "hs2.test",
			Content: []byte(`{"origin":"hs3.test"}`)}, hs3.SigningKey.KeyID, hs3.SigningKey.Key)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("PUT", "https://"+n.Addrs["hs2.test"]+uri, strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := rawClient(n, "hs2.test").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(string(data), `"errcode":"M_`) {
			t.Fatalf("a body nested 20,000 deep: %d %s", resp.StatusCode, data)
		}
		if _, err := bob.SendText(ctx, room, "still standing"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("oversized transaction", func(t *testing.T) {
		var evs []*event.Event
		for i := 0; i < 51; i++ {
			evs = append(evs, f.message("@trudy:hs3.test", fmt.Sprintf("flood %d", i)))
		}
		if _, err := sendTxn(t, hs3, "hs2.test", "oversized", raws(evs...)...); err == nil {
			t.Fatal("a transaction of 51 PDUs was accepted")
		}
		for _, ev := range evs {
			if k := knowledge(t, hs2, ev.EventID()); k != storage.Unknown {
				t.Fatalf("an event of an oversized transaction was processed (%d)", k)
			}
		}
		// 50 is fine.
		res, err := sendTxn(t, hs3, "hs2.test", "fifty", raws(evs[:50]...)...)
		if err != nil || len(res.PDUs) != 50 {
			t.Fatalf("a transaction of 50 PDUs: %d results, %v", len(res.PDUs), err)
		}
	})

}

func strPtr(s string) *string { return &s }
