package stateres

import (
	"fmt"

	"github.com/parley-chat/parley/matrix/event"
)

// graph is the part of the auth DAG that one resolution touches. Event IDs
// are interned as int32 indices into nodes so that the walks, sets and
// orderings work on small integers and slices instead of string-keyed maps,
// and every event is fetched from the provider at most once.
type graph struct {
	version    event.RoomVersionInfo
	provider   EventProvider
	rejections RejectionProvider // nil: nothing is rejected
	hooks      *hooks            // tests only

	index map[string]int32
	nodes []node
	epoch uint32 // current walk; node.mark == epoch means visited
}

// node flags.
const (
	flagConflicted    uint16 = 1 << iota // in the conflicted state set
	flagFullConf                         // in the full conflicted set
	flagPower                            // in X, the power events and their conflicted auth ancestry
	flagUChain                           // in the auth chain of the unconflicted state
	flagInZ                              // in the graph sorted by the power ordering
	flagSubDesc                          // reachable from a conflicted event (v2.1 subgraph walk)
	flagSubDone                          // canReach computed (v2.1 subgraph walk)
	flagSubReach                         // reaches a conflicted event (v2.1 subgraph walk)
	flagPowerKnown                       // power holds the sender's power level
	flagMainlineKnown                    // mainline holds the mainline position
	flagAuthDiff                         // in the auth difference
	flagSubgraph                         // in the conflicted state subgraph (v2.1)
)

type node struct {
	id     string
	ev     *event.Event // nil until loaded
	auth   []int32      // interned auth events, once loaded
	loaded bool

	mark  uint32
	flags uint16
	count int32 // state sets whose auth chain holds the node (auth difference)
	local int32 // index in the power ordering's working arrays

	power    int64        // sender's power level, for the power ordering
	mainline int          // mainline position, for the mainline ordering
	pl       *powerLevels // parsed content, for m.room.power_levels events
}

// newGraph starts an empty graph; sizeHint is the number of events the
// resolution is expected to touch, to spare the index and node slice their
// regrowth in large rooms.
func newGraph(version event.RoomVersionInfo, provider EventProvider, sizeHint int) *graph {
	g := &graph{
		version:  version,
		provider: provider,
		index:    make(map[string]int32, sizeHint),
		nodes:    make([]node, 0, sizeHint),
	}
	if r, ok := provider.(RejectionProvider); ok {
		g.rejections = r
	}
	return g
}

// intern returns the index of an event ID, adding a node that is not loaded
// yet if the ID is new.
func (g *graph) intern(id string) int32 {
	if i, ok := g.index[id]; ok {
		return i
	}
	i := int32(len(g.nodes))
	g.nodes = append(g.nodes, node{id: id})
	g.index[id] = i
	return i
}

// load fetches the node's event if needed and interns its auth events.
func (g *graph) load(i int32) error {
	if g.nodes[i].loaded {
		return nil
	}
	id := g.nodes[i].id
	ev, err := g.provider.Event(id)
	if err != nil {
		return fmt.Errorf("stateres: event %s: %w", id, err)
	}
	if ev == nil {
		return fmt.Errorf("%w: %s", ErrMissingEvent, id)
	}
	ids := ev.AuthEventIDs()
	auth := make([]int32, 0, len(ids)+1)
	if c := g.implicitCreate(ev); c != "" {
		// Room version 12 events do not list the create event: their room
		// ID names it. It is still what authorises them, so the resolver
		// treats it as an auth event, as other implementations do: it is in
		// every auth chain and available to the iterative auth checks.
		auth = append(auth, g.intern(c))
	}
	for _, a := range ids {
		auth = append(auth, g.intern(a))
	}
	n := &g.nodes[i]
	n.ev, n.auth, n.loaded = ev, auth, true
	return nil
}

// implicitCreate returns the ID of the create event that a room version 12
// event cites through its room ID, or "" for other versions and for the
// create event itself.
func (g *graph) implicitCreate(ev *event.Event) string {
	if !g.version.CreateEventIsRoomID || (ev.Type() == "m.room.create" && ev.StateKeyEquals("")) {
		return ""
	}
	room := ev.RoomID()
	if len(room) < 2 || room[0] != '!' {
		return ""
	}
	return "$" + room[1:]
}

// ev returns the loaded event of a node.
func (g *graph) ev(i int32) *event.Event { return g.nodes[i].ev }

// rejected reports whether the caller's store marks the event rejected.
func (g *graph) rejected(i int32) bool {
	return g.rejections != nil && g.rejections.IsRejected(g.nodes[i].id)
}

// newWalk starts a walk: nodes marked with the returned epoch are visited.
func (g *graph) newWalk() uint32 {
	g.epoch++
	return g.epoch
}

// walkAuth visits every event of the auth chains of starts (each once; a
// start is visited only if another start's chain holds it), loading events as
// it goes. visit returns whether to continue below the node: a caller that
// knows the node's whole chain is already accounted for stops there.
func (g *graph) walkAuth(starts []int32, visit func(i int32) bool) error {
	epoch := g.newWalk()
	var stack []int32
	push := func(i int32) error {
		if err := g.load(i); err != nil {
			return err
		}
		for _, a := range g.nodes[i].auth {
			if g.nodes[a].mark != epoch {
				g.nodes[a].mark = epoch
				stack = append(stack, a)
			}
		}
		return nil
	}
	for _, s := range starts {
		if err := push(s); err != nil {
			return err
		}
	}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if err := g.load(i); err != nil {
			return err
		}
		if !visit(i) {
			continue
		}
		if err := push(i); err != nil {
			return err
		}
	}
	return nil
}

// stateKeyOf returns the key an event occupies in the state, or false for a
// non-state event.
func stateKeyOf(ev *event.Event) (StateKey, bool) {
	sk := ev.StateKey()
	if sk == nil {
		return StateKey{}, false
	}
	return StateKey{Type: ev.Type(), StateKey: *sk}, true
}

// authEventOf returns the node's auth event of this type and state key that
// is not rejected, or -1. Duplicates (which the auth rules forbid) resolve to
// the first listed.
func (g *graph) authEventOf(i int32, eventType, stateKey string, skipRejected bool) (int32, error) {
	for _, a := range g.nodes[i].auth {
		if err := g.load(a); err != nil {
			return -1, err
		}
		ev := g.nodes[a].ev
		if ev.Type() == eventType && ev.StateKeyEquals(stateKey) {
			if skipRejected && g.rejected(a) {
				continue
			}
			return a, nil
		}
	}
	return -1, nil
}
