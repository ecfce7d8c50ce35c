package stateres

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// Bridges to github.com/matrix-org/gomatrixserverlib, used two ways: its
// auth rules stand in for ours while the resolver is tested on its own, and
// its state resolution is the other side of the differential tests.

var pduCache sync.Map // *event.Event -> gmsl.PDU

// toPDU converts one of our events to gomatrixserverlib's, from the same
// JSON and event ID.
func toPDU(t testing.TB, ev *event.Event) gmsl.PDU {
	if p, ok := pduCache.Load(ev); ok {
		return p.(gmsl.PDU)
	}
	verImpl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(ev.Version().ID))
	if err != nil {
		t.Fatal(err)
	}
	p, err := verImpl.NewEventFromTrustedJSONWithEventID(ev.EventID(), ev.JSON(), false)
	if err != nil {
		t.Fatalf("gomatrixserverlib cannot read %s: %v", ev.EventID(), err)
	}
	pduCache.Store(ev, p)
	return p
}

func userIDForSender(_ spec.RoomID, senderID spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(senderID), true)
}

// gmslAuthEvents presents our AuthEvents as gomatrixserverlib's provider.
type gmslAuthEvents struct {
	t    testing.TB
	auth authrules.AuthEvents
}

func (a gmslAuthEvents) get(typ, sk string) (gmsl.PDU, error) {
	ev := a.auth.Get(typ, sk)
	if ev == nil {
		return nil, nil
	}
	return toPDU(a.t, ev), nil
}

func (a gmslAuthEvents) Create() (gmsl.PDU, error)      { return a.get("m.room.create", "") }
func (a gmslAuthEvents) JoinRules() (gmsl.PDU, error)   { return a.get("m.room.join_rules", "") }
func (a gmslAuthEvents) PowerLevels() (gmsl.PDU, error) { return a.get("m.room.power_levels", "") }
func (a gmslAuthEvents) Member(k spec.SenderID) (gmsl.PDU, error) {
	return a.get("m.room.member", string(k))
}
func (a gmslAuthEvents) ThirdPartyInvite(k string) (gmsl.PDU, error) {
	return a.get("m.room.third_party_invite", k)
}
func (a gmslAuthEvents) Valid() bool { return true }

// gmslAllowed is an AllowedFunc that applies gomatrixserverlib's auth rules.
func gmslAllowed(t testing.TB) AllowedFunc {
	return func(ev *event.Event, auth authrules.AuthEvents) (err error) {
		defer func() {
			// It panics on some inputs it considers impossible (such as a
			// missing create event); that is a refusal.
			if p := recover(); p != nil {
				err = fmt.Errorf("gomatrixserverlib panicked: %v", p)
			}
		}()
		return gmsl.Allowed(toPDU(t, ev), gmslAuthEvents{t: t, auth: auth}, userIDForSender)
	}
}

// gmslResolve runs gomatrixserverlib's state resolution (ResolveConflictsNew,
// the one that takes state sets) on the same input.
func gmslResolve(t testing.TB, r *testRoom, algo event.StateResAlgorithm, states []StateMap) (out StateMap, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("gomatrixserverlib panicked: %v", p)
		}
	}()
	return gmslResolveNoRecover(t, r, algo, states)
}

func gmslResolveNoRecover(t testing.TB, r *testRoom, algo event.StateResAlgorithm, states []StateMap) (out StateMap, err error) {
	sets := make([][]gmsl.PDU, len(states))
	union := StateMap{}
	for i, s := range states {
		for k, id := range s {
			sets[i] = append(sets[i], toPDU(t, r.events[id]))
			union[StateKey{k.Type, k.StateKey + "\x00" + id}] = id
		}
	}
	// Its v2.1 code looks up the conflicted events themselves in the auth
	// events it is given, so they go in too (which changes nothing else).
	ids := r.fullAuthChain(union)
	for _, id := range union {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var authEvents []gmsl.PDU
	for _, id := range slices.Compact(ids) {
		authEvents = append(authEvents, toPDU(t, r.events[id]))
	}
	isRejected := func(id string) bool { return r.rejected[id] }
	var res []gmsl.PDU
	if algo == event.StateResV2_1 && !r.info.PrivilegedCreators {
		// Its v2.1 on events of an older room version: the entry point for
		// room versions has no such combination.
		if len(sets) < 2 {
			return nil, fmt.Errorf("gomatrixserverlib needs 2 state sets")
		}
		res = gmsl.ResolveStateConflictsV2New(gmsl.StateResV2_1, sets, authEvents, userIDForSender, isRejected)
	} else {
		res, err = gmsl.ResolveConflictsNew(gmsl.RoomVersion(r.version), sets, authEvents, userIDForSender, isRejected)
		if err != nil {
			return nil, err
		}
	}
	out = StateMap{}
	for _, p := range res {
		out[StateKey{p.Type(), *p.StateKey()}] = p.EventID()
	}
	return out, nil
}

// TestGMSLBridge checks the stand-in auth rules on a tiny room: the tests
// that rely on them would prove nothing if they allowed everything.
func TestGMSLBridge(t *testing.T) {
	for _, v := range []event.RoomVersion{"1", "2", "10", "11", "12"} {
		t.Run("v"+string(v), func(t *testing.T) {
			r, b := newRoom(t, v, nil)
			allowed := gmslAllowed(t)
			state := func(s StateMap) authrules.AuthEvents { return &v1State{g: newGraph(r.info, r, 0), state: s} }
			ok := b.build("$bob-join", bob, "m.room.member", ptr(bob), member("join"))
			if err := allowed(ok, state(b.state)); err != nil {
				t.Errorf("bob joining a public room: %v", err)
			}
			bad := b.build("$bob-topic", bob, "m.room.topic", ptr(""), map[string]any{"topic": "x"})
			if err := allowed(bad, state(b.state)); err == nil {
				t.Errorf("a non-member's topic was allowed")
			}
		})
	}
}

func ptr(s string) *string { return &s }
