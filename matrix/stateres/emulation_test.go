package stateres

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// A model of how gomatrixserverlib's state resolution v2 departs from the
// spec, built from reading its source (stateresolutionv2.go at the version
// in go.mod). Each quirk swaps one step of our resolver for the behaviour
// gomatrixserverlib has instead. The differential test resolves every
// random case with the spec, and when gomatrixserverlib disagrees, with all
// quirks on (which must then agree), and with each quirk left out in turn,
// to name the differences that explain the disagreement. Each quirk has a
// named test (differences_test.go) with the spec text that decides it.

type quirk uint

const (
	// quirkUnconflictedNotFull: events of the unconflicted state map are
	// left out of the full conflicted set even when they are in the auth
	// difference.
	quirkUnconflictedNotFull quirk = 1 << iota
	// quirkPowerSetThroughConflicted: X is enlarged only through auth events
	// that are in the conflicted state set (not the full conflicted set),
	// and only along paths of such events. A power event reachable that way
	// from another one is listed twice, which matters to quirkReverseKahn.
	quirkPowerSetThroughConflicted
	// quirkReverseKahn: Kahn's algorithm run from the latest events
	// (those no other event of X cites), taking the greatest each time and
	// prepending it, which is not the lexicographically smallest order;
	// events whose in-degree never reaches zero (auth events of an event
	// listed twice) are put first in tie-break order.
	quirkReverseKahn
	// quirkMainline: an event with no power levels event in its auth
	// events, or none leading to the mainline, gets the position of the
	// oldest mainline event instead of infinity, and ties are broken by the
	// number of power levels events walked before the mainline first.
	quirkMainline
	// quirkNoCreatorPower: with no power levels event among its auth events
	// the sender's power level is 0, also for the room creator.
	quirkNoCreatorPower
	// quirkBrokenAuthFallback: when a key the auth rules need is not in the
	// partially resolved state and the event has an auth event for it, the
	// event itself is put in the auth state at its own key instead of that
	// auth event (authAndApplyEvents adds `event`, not `authEv`), so the key
	// stays missing.
	quirkBrokenAuthFallback

	quirkCount = iota
)

var quirkNames = []string{"unconflicted-not-full", "power-set-through-conflicted", "reverse-kahn", "mainline", "no-creator-power", "broken-auth-fallback"}

func (q quirk) String() string {
	var names []string
	for i := range quirkCount {
		if q&(1<<i) != 0 {
			names = append(names, quirkNames[i])
		}
	}
	return strings.Join(names, "+")
}

const allQuirks quirk = 1<<quirkCount - 1

// withQuirks returns a resolver emulating the given quirks.
func withQuirks(allowed AllowedFunc, q quirk) Resolver {
	h := &hooks{}
	if q&quirkUnconflictedNotFull != 0 {
		h.fullConflictedSet = func(g *graph, full []int32, unconflicted StateMap) []int32 {
			in := make(map[string]bool, len(unconflicted))
			for _, id := range unconflicted {
				in[id] = true
			}
			return slices.DeleteFunc(full, func(i int32) bool {
				if in[g.nodes[i].id] {
					g.nodes[i].flags &^= flagFullConf
					return true
				}
				return false
			})
		}
	}
	if q&(quirkPowerSetThroughConflicted|quirkReverseKahn|quirkNoCreatorPower) != 0 {
		h.powerOrdering = func(g *graph, full, powerEvents []int32) ([]int32, error) {
			return emulatedPowerOrdering(g, q, full, powerEvents)
		}
	}
	if q&quirkMainline != 0 {
		h.mainlineOrdering = emulatedMainline
	}
	if q&quirkBrokenAuthFallback != 0 {
		h.checkState = brokenFallbackState
	}
	return Resolver{Allowed: allowed, hooks: h}
}

func emulatedPowerOrdering(g *graph, q quirk, full, powerEvents []int32) ([]int32, error) {
	// X, with multiplicity.
	var list []int32
	if q&quirkPowerSetThroughConflicted != 0 {
		// Its full conflicted set is the conflicted events followed by the
		// auth difference (with, for v2.1, the subgraph), not deduplicated:
		// an event in both is there twice, and a power event there twice is
		// processed twice.
		var starts []int32
		for _, i := range full {
			if g.nodes[i].flags&flagConflicted != 0 && isPowerEvent(g.ev(i)) {
				starts = append(starts, i)
			}
		}
		for _, i := range full {
			if g.nodes[i].flags&(flagAuthDiff|flagSubgraph) != 0 && isPowerEvent(g.ev(i)) {
				starts = append(starts, i)
			}
		}
		visited := map[int32]bool{}
		var related func(i int32) []int32
		related = func(i int32) []int32 {
			out := []int32{i}
			for _, a := range g.nodes[i].auth {
				if visited[a] {
					continue
				}
				if g.nodes[a].flags&flagConflicted != 0 {
					if err := g.load(a); err != nil {
						panic(err)
					}
					out = append(out, related(a)...)
				}
				visited[a] = true
			}
			return out
		}
		for _, p := range starts {
			list = append(list, related(p)...)
		}
	} else {
		list = slices.Clone(powerEvents)
		inList := map[int32]bool{}
		for _, p := range powerEvents {
			inList[p] = true
		}
		err := g.walkAuth(powerEvents, func(i int32) bool {
			if g.nodes[i].flags&flagFullConf != 0 && !inList[i] {
				inList[i] = true
				list = append(list, i)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	unique := map[int32]bool{}
	for _, i := range list {
		unique[i] = true
		g.nodes[i].flags |= flagPower
	}

	power := map[int32]int64{}
	for i := range unique {
		if q&quirkNoCreatorPower != 0 {
			p, err := noCreatorPower(g, i)
			if err != nil {
				return nil, err
			}
			power[i] = p
		} else {
			p, err := g.senderPower(i)
			if err != nil {
				return nil, err
			}
			power[i] = p
		}
	}
	compare := func(a, b int32) int {
		if c := cmp.Compare(power[b], power[a]); c != 0 {
			return c
		}
		if c := cmp.Compare(g.ev(a).OriginServerTS(), g.ev(b).OriginServerTS()); c != 0 {
			return c
		}
		return cmp.Compare(g.nodes[a].id, g.nodes[b].id)
	}

	if q&quirkReverseKahn != 0 {
		return reverseKahn(g, list, unique, compare), nil
	}
	return forwardKahnDirectEdges(g, unique, compare), nil
}

// noCreatorPower: the level from the auth events' power levels event, else
// 0; version 12 creators are checked against the room's create event.
func noCreatorPower(g *graph, i int32) (int64, error) {
	sender := g.ev(i).Sender()
	if g.version.PrivilegedCreators {
		create, err := g.authEventOf(i, "m.room.create", "", false)
		if err != nil {
			return 0, err
		}
		if create >= 0 && slices.Contains(creators(g.ev(create), g.version), sender) {
			return int64(math.Pow(2, 53)), nil
		}
	}
	pl, err := g.authEventOf(i, "m.room.power_levels", "", false)
	if err != nil || pl < 0 {
		return 0, err
	}
	return g.powerLevelsOf(pl).userLevel(sender), nil
}

// reverseKahn models gomatrixserverlib's Kahn's algorithm.
func reverseKahn(g *graph, list []int32, unique map[int32]bool, compare func(a, b int32) int) []int32 {
	indeg := map[int32]int{}
	for _, i := range list {
		for _, a := range g.nodes[i].auth {
			indeg[a]++
		}
	}
	pending := maps.Clone(unique)
	var ready, out []int32
	for i := range unique {
		if indeg[i] == 0 {
			ready = append(ready, i)
			delete(pending, i)
		}
	}
	for len(ready) > 0 {
		slices.SortFunc(ready, compare)
		e := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		out = append([]int32{e}, out...)
		for _, a := range g.nodes[e].auth {
			indeg[a]--
			if indeg[a] == 0 && pending[a] {
				ready = append(ready, a)
				delete(pending, a)
			}
		}
	}
	var strays []int32
	for i := range pending {
		strays = append(strays, i)
	}
	slices.SortFunc(strays, compare)
	return append(strays, out...)
}

// forwardKahnDirectEdges is the spec's Kahn's algorithm over the auth
// events between events of X only (as Synapse builds its graph).
func forwardKahnDirectEdges(g *graph, unique map[int32]bool, compare func(a, b int32) int) []int32 {
	indeg := map[int32]int{}
	children := map[int32][]int32{}
	for i := range unique {
		for _, a := range g.nodes[i].auth {
			if unique[a] {
				indeg[i]++
				children[a] = append(children[a], i)
			}
		}
	}
	var ready, out []int32
	for i := range unique {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		slices.SortFunc(ready, compare)
		e := ready[0]
		ready = ready[1:]
		out = append(out, e)
		for _, c := range children[e] {
			indeg[c]--
			if indeg[c] == 0 {
				ready = append(ready, c)
			}
		}
	}
	return out
}

// emulatedMainline models gomatrixserverlib's mainline ordering: positions
// counted from the oldest mainline event (0), 0 also when the mainline is
// never reached, then the number of power levels events walked.
func emulatedMainline(g *graph, events []int32, pl int32) error {
	var mainline []int32
	for p := pl; p >= 0; {
		mainline = append(mainline, p)
		next, err := g.authEventOf(p, "m.room.power_levels", "", false)
		if err != nil {
			return err
		}
		p = next
	}
	pos := map[int32]int{}
	for i, p := range mainline {
		pos[p] = len(mainline) - 1 - i
	}
	type key struct{ pos, steps int }
	keys := map[int32]key{}
	for _, e := range events {
		var k key
		p, err := g.authEventOf(e, "m.room.power_levels", "", false)
		if err != nil {
			return err
		}
		for p >= 0 {
			if mp, ok := pos[p]; ok {
				k.pos = mp
				break
			}
			k.steps++
			if p, err = g.authEventOf(p, "m.room.power_levels", "", false); err != nil {
				return err
			}
		}
		keys[e] = k
	}
	slices.SortStableFunc(events, func(a, b int32) int {
		ka, kb := keys[a], keys[b]
		if c := cmp.Compare(ka.pos, kb.pos); c != 0 {
			return c
		}
		if c := cmp.Compare(ka.steps, kb.steps); c != 0 {
			return c
		}
		if c := cmp.Compare(g.ev(a).OriginServerTS(), g.ev(b).OriginServerTS()); c != 0 {
			return c
		}
		return cmp.Compare(g.nodes[a].id, g.nodes[b].id)
	})
	return nil
}

// brokenFallbackState builds the auth state the way authAndApplyEvents
// does: the keys of StateNeededForAuth in its order (create, join rules,
// power levels, members sorted), each from the partially resolved state, or
// else, if the event has a non-rejected auth event for the key, the event
// itself at its own key.
func brokenFallbackState(g *graph, state *partialState, i int32) authrules.AuthEvents {
	ev := g.ev(i)
	var needed []StateKey
	switch ev.Type() {
	case "m.room.create":
	case "m.room.member":
		needed = append(needed, StateKey{"m.room.create", ""})
		if m, _ := ev.Membership(); m == "join" || m == "invite" || m == "knock" {
			needed = append(needed, StateKey{"m.room.join_rules", ""})
		}
		needed = append(needed, StateKey{"m.room.power_levels", ""})
		users := []string{ev.Sender(), *ev.StateKey()}
		slices.Sort(users)
		for _, u := range slices.Compact(users) {
			needed = append(needed, StateKey{"m.room.member", u})
		}
	default:
		needed = append(needed, StateKey{"m.room.create", ""}, StateKey{"m.room.power_levels", ""}, StateKey{"m.room.member", ev.Sender()})
	}
	m := mapAuthEvents{}
	for _, k := range needed {
		if j, ok := state.get(g, k); ok {
			if err := g.load(j); err != nil {
				panic(err)
			}
			m[k] = g.ev(j)
			continue
		}
		a, err := g.authEventOf(i, k.Type, k.StateKey, true)
		if err != nil {
			panic(err)
		}
		if a >= 0 {
			own, _ := stateKeyOf(ev)
			m[own] = ev
		}
	}
	return m
}

type mapAuthEvents map[StateKey]*event.Event

func (m mapAuthEvents) Get(t, sk string) *event.Event { return m[StateKey{t, sk}] }
