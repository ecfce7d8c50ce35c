package stateres

import (
	"cmp"
	"math"
	"slices"

	"github.com/parley-chat/parley/matrix/event"
)

// resolveV2 is state resolution v2 (rooms/v2 "State resolution") and, when
// the room version says so, v2.1 (rooms/v12), which differs in two places:
// the full conflicted set also holds the conflicted state subgraph, and the
// first iterative auth checks start from an empty state.
func resolveV2(g *graph, allowed AllowedFunc, sets []StateMap, authChains [][]string) (StateMap, error) {
	v21 := g.version.StateRes == event.StateResV2_1

	unconflicted, conflicted, perSet := splitStateSets(g, sets)

	// Full conflicted set: the conflicted state set, the auth difference and
	// (v2.1) the conflicted state subgraph.
	var full []int32
	addFull := func(i int32) {
		if g.nodes[i].flags&flagFullConf == 0 {
			g.nodes[i].flags |= flagFullConf
			full = append(full, i)
		}
	}
	for _, i := range conflicted {
		addFull(i)
	}
	diff, err := authDifference(g, unconflicted, perSet, authChains)
	if err != nil {
		return nil, err
	}
	for _, i := range diff {
		g.nodes[i].flags |= flagAuthDiff
		addFull(i)
	}
	if v21 {
		sub, err := conflictedSubgraph(g, conflicted)
		if err != nil {
			return nil, err
		}
		for _, i := range sub {
			g.nodes[i].flags |= flagSubgraph
			addFull(i)
		}
	}
	for _, i := range full {
		if err := g.load(i); err != nil {
			return nil, err
		}
	}
	if g.hooks != nil && g.hooks.fullConflictedSet != nil {
		full = g.hooks.fullConflictedSet(g, full, unconflicted)
	}

	// Step 1: the power events of the full conflicted set and the events of
	// their auth chains that are in the full conflicted set, in reverse
	// topological power ordering.
	var powerEvents []int32
	for _, i := range full {
		if isPowerEvent(g.ev(i)) {
			powerEvents = append(powerEvents, i)
		}
	}
	order := (*graph).powerOrdering
	if g.hooks != nil && g.hooks.powerOrdering != nil {
		order = func(g *graph, powerEvents []int32) ([]int32, error) {
			return g.hooks.powerOrdering(g, full, powerEvents)
		}
	}
	sortedPower, err := order(g, powerEvents)
	if err != nil {
		return nil, err
	}

	// Step 2: iterative auth checks from the unconflicted state map (v2) or
	// from an empty one (v2.1).
	state := &partialState{over: make(map[StateKey]int32, len(full))}
	if !v21 {
		state.base = unconflicted
	}
	if err := g.iterativeAuthChecks(allowed, state, sortedPower); err != nil {
		return nil, err
	}

	// Step 3: the remaining events in mainline ordering based on the
	// partially resolved power levels.
	var others []int32
	for _, i := range full {
		if g.nodes[i].flags&flagPower == 0 {
			others = append(others, i)
		}
	}
	resolvedPL, _ := state.get(g, StateKey{Type: "m.room.power_levels"})
	mainline := (*graph).mainlineOrdering
	if g.hooks != nil && g.hooks.mainlineOrdering != nil {
		mainline = g.hooks.mainlineOrdering
	}
	if err := mainline(g, others, resolvedPL); err != nil {
		return nil, err
	}

	// Step 4: iterative auth checks on the partially resolved state.
	if err := g.iterativeAuthChecks(allowed, state, others); err != nil {
		return nil, err
	}

	// Step 5: the unconflicted state map wins over anything resolved. The
	// unconflicted map is ours, so it becomes the result.
	result := unconflicted
	for k, i := range state.over {
		if _, ok := result[k]; !ok {
			result[k] = g.nodes[i].id
		}
	}
	return result, nil
}

// splitStateSets divides the state sets into the unconflicted state map and
// the conflicted state set: a key is unconflicted if every set has it with
// the same event. perSet[j] lists set j's events in the conflicted set.
func splitStateSets(g *graph, sets []StateMap) (unconflicted StateMap, conflicted []int32, perSet [][]int32) {
	unconflicted = make(StateMap, len(sets[0]))
	perSet = make([][]int32, len(sets))
	conflictKey := func(k StateKey) {
		for j, s := range sets {
			id, ok := s[k]
			if !ok {
				continue
			}
			i := g.intern(id)
			perSet[j] = append(perSet[j], i)
			if g.nodes[i].flags&flagConflicted == 0 {
				g.nodes[i].flags |= flagConflicted
				conflicted = append(conflicted, i)
			}
		}
	}
	for k, id := range sets[0] {
		same := true
		for _, s := range sets[1:] {
			if other, ok := s[k]; !ok || other != id {
				same = false
				break
			}
		}
		if same {
			unconflicted[k] = id
		} else {
			conflictKey(k)
		}
	}
	// Keys missing from the first set are conflicted; each is handled once,
	// by the first set that has it.
	for j := 1; j < len(sets); j++ {
		for k := range sets[j] {
			if _, ok := sets[0][k]; ok {
				continue
			}
			seen := false
			for _, s := range sets[1:j] {
				if _, ok := s[k]; ok {
					seen = true
					break
				}
			}
			if !seen {
				conflictKey(k)
			}
		}
	}
	// The order of conflicted follows map iteration and does not matter:
	// every ordering below is total.
	return unconflicted, conflicted, perSet
}

// authDifference returns the events that are in some but not all of the
// state sets' full auth chains.
func authDifference(g *graph, unconflicted StateMap, perSet [][]int32, authChains [][]string) ([]int32, error) {
	n := int32(len(perSet))
	var touched []int32
	if authChains != nil {
		for _, chain := range authChains {
			epoch := g.newWalk()
			for _, id := range chain {
				i := g.intern(id)
				nd := &g.nodes[i]
				if nd.mark == epoch {
					continue
				}
				nd.mark = epoch
				if nd.count == 0 {
					touched = append(touched, i)
				}
				nd.count++
			}
		}
	} else {
		// Every set holds the unconflicted events, so the auth chain of the
		// unconflicted state is in every full auth chain and never in the
		// difference. Walking it once (instead of once per set) and then
		// walking each set's conflicted events only down to it makes the
		// cost one pass over the room's auth chain plus a little per set.
		starts := make([]int32, 0, len(unconflicted))
		for _, id := range unconflicted {
			starts = append(starts, g.intern(id))
		}
		if err := g.walkAuth(starts, func(i int32) bool {
			g.nodes[i].flags |= flagUChain
			return true
		}); err != nil {
			return nil, err
		}
		for _, conflictedOfSet := range perSet {
			err := g.walkAuth(conflictedOfSet, func(i int32) bool {
				nd := &g.nodes[i]
				if nd.flags&flagUChain != 0 {
					// Its whole chain is in the unconflicted chain too.
					return false
				}
				if nd.count == 0 {
					touched = append(touched, i)
				}
				nd.count++
				return true
			})
			if err != nil {
				return nil, err
			}
		}
	}
	var diff []int32
	for _, i := range touched {
		if g.nodes[i].count < n {
			diff = append(diff, i)
		}
	}
	return diff, nil
}

// conflictedSubgraph returns the events on auth-event paths between two
// events of the conflicted state set, endpoints included (rooms/v12
// "Conflicted state subgraph"): the events reachable from a conflicted
// event that can themselves reach a conflicted event.
func conflictedSubgraph(g *graph, conflicted []int32) ([]int32, error) {
	desc := append([]int32(nil), conflicted...)
	for _, i := range conflicted {
		g.nodes[i].flags |= flagSubDesc
	}
	err := g.walkAuth(conflicted, func(i int32) bool {
		nd := &g.nodes[i]
		if nd.flags&flagSubDesc == 0 {
			nd.flags |= flagSubDesc
			desc = append(desc, i)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	// reaches reports whether a conflicted event is reachable from i,
	// itself included. Every node of desc is loaded by the walk above. A
	// node is marked done before its auth events are explored, so that an
	// auth cycle (which only events with forged IDs, in room versions 1
	// and 2, could form) ends the recursion instead of looping.
	var reaches func(i int32) bool
	reaches = func(i int32) bool {
		nd := &g.nodes[i]
		if nd.flags&flagSubDone != 0 {
			return nd.flags&flagSubReach != 0
		}
		nd.flags |= flagSubDone
		r := nd.flags&flagConflicted != 0
		for _, a := range nd.auth {
			if g.nodes[a].flags&flagSubDesc != 0 && reaches(a) {
				r = true
			}
		}
		if r {
			g.nodes[i].flags |= flagSubReach
		}
		return r
	}
	var sub []int32
	for _, i := range desc {
		if reaches(i) {
			sub = append(sub, i)
		}
	}
	return sub, nil
}

// isPowerEvent reports whether an event "might remove someone's ability to
// do something in the room" (rooms/v2 "Power events"): power levels and
// join rules, and kicks and bans (a leave or ban whose sender is not the
// target).
func isPowerEvent(ev *event.Event) bool {
	if ev.StateKey() == nil {
		return false
	}
	switch ev.Type() {
	case "m.room.power_levels", "m.room.join_rules":
		return true
	case "m.room.member":
		m, err := ev.Membership()
		return err == nil && (m == "leave" || m == "ban") && !ev.StateKeyEquals(ev.Sender())
	}
	return false
}

// powerOrdering returns X, the power events plus the events of their auth
// chains that are in the full conflicted set, in reverse topological power
// ordering, and marks them flagPower.
//
// The order must respect the auth DAG: an event comes after every event of
// X in its auth chain, also when the path between them passes through events
// outside X. To get that, Kahn's algorithm runs over Z, the power events and
// their whole auth chains; the events of Z outside X are released as soon
// as they are free and never compete in the tie-breaks, so they only carry
// the ordering constraints through.
func (g *graph) powerOrdering(powerEvents []int32) ([]int32, error) {
	if len(powerEvents) == 0 {
		return nil, nil
	}
	z := make([]int32, 0, 4*len(powerEvents))
	for _, i := range powerEvents {
		if g.nodes[i].flags&flagInZ == 0 {
			g.nodes[i].flags |= flagInZ
			z = append(z, i)
		}
	}
	err := g.walkAuth(powerEvents, func(i int32) bool {
		nd := &g.nodes[i]
		if nd.flags&flagInZ != 0 {
			// Already in Z: a power event, whose chain the walk covers from
			// its own start.
			return false
		}
		nd.flags |= flagInZ
		z = append(z, i)
		return true
	})
	if err != nil {
		return nil, err
	}

	// Local numbering, the X flag, and the keys of the tie-breaks.
	type key struct {
		power int64
		ts    int64
	}
	keys := make([]key, len(z))
	inX := make([]bool, len(z))
	for li, i := range z {
		g.nodes[i].local = int32(li)
		if g.nodes[i].flags&flagFullConf != 0 {
			g.nodes[i].flags |= flagPower
			inX[li] = true
			p, err := g.senderPower(i)
			if err != nil {
				return nil, err
			}
			keys[li] = key{power: p, ts: g.ev(i).OriginServerTS()}
		}
	}

	// In-degrees (auth events still to come) and the reverse edges, as
	// compressed adjacency lists. Z is closed under auth events.
	indeg := make([]int32, len(z))
	start := make([]int32, len(z)+1)
	for li, i := range z {
		for _, a := range g.nodes[i].auth {
			indeg[li]++
			start[g.nodes[a].local+1]++
		}
	}
	for li := range z {
		start[li+1] += start[li]
	}
	children := make([]int32, start[len(z)])
	fill := slices.Clone(start[:len(z)])
	for li, i := range z {
		for _, a := range g.nodes[i].auth {
			la := g.nodes[a].local
			children[fill[la]] = int32(li)
			fill[la]++
		}
	}

	less := func(a, b int32) bool {
		ka, kb := keys[a], keys[b]
		if ka.power != kb.power {
			return ka.power > kb.power
		}
		if ka.ts != kb.ts {
			return ka.ts < kb.ts
		}
		return g.nodes[z[a]].id < g.nodes[z[b]].id
	}
	ready := newHeap(less)
	var transparent []int32
	release := func(li int32) {
		if inX[li] {
			ready.push(li)
		} else {
			transparent = append(transparent, li)
		}
	}
	for li := range z {
		if indeg[li] == 0 {
			release(int32(li))
		}
	}
	out := make([]int32, 0, len(z))
	for {
		var li int32
		if n := len(transparent); n > 0 {
			li = transparent[n-1]
			transparent = transparent[:n-1]
		} else if ready.len() > 0 {
			li = ready.pop()
			out = append(out, z[li])
		} else {
			break
		}
		for _, c := range children[start[li]:start[li+1]] {
			indeg[c]--
			if indeg[c] == 0 {
				release(c)
			}
		}
	}
	return out, nil
}

// mainlineOrdering sorts events by the mainline ordering based on the power
// levels event pl (-1 for none, when every position is infinite).
func (g *graph) mainlineOrdering(events []int32, pl int32) error {
	if len(events) == 0 {
		return nil
	}
	// The mainline of pl: pl, the power levels event in its auth events, and
	// so on. Positions count from pl, which is 0.
	onMainline := make(map[int32]int)
	for p, pos := pl, 0; p >= 0; pos++ {
		if _, loop := onMainline[p]; loop {
			break
		}
		if err := g.load(p); err != nil {
			return err
		}
		onMainline[p] = pos
		next, err := g.authEventOf(p, "m.room.power_levels", "", false)
		if err != nil {
			return err
		}
		p = next
	}

	// position is the mainline position of a power levels event reached
	// from an event: its own if on the mainline, else that of the power
	// levels event it cites, else infinite. Memoized, since many events
	// share the same power levels history.
	var position func(p int32) (int, error)
	position = func(p int32) (int, error) {
		if pos, ok := onMainline[p]; ok {
			return pos, nil
		}
		nd := &g.nodes[p]
		if nd.flags&flagMainlineKnown != 0 {
			return nd.mainline, nil
		}
		// Provisionally infinite, which also ends the recursion on a
		// (forged) cycle of power levels events.
		nd.mainline = math.MaxInt
		nd.flags |= flagMainlineKnown
		if err := g.load(p); err != nil {
			return 0, err
		}
		next, err := g.authEventOf(p, "m.room.power_levels", "", false)
		if err != nil {
			return 0, err
		}
		pos := math.MaxInt
		if next >= 0 {
			if pos, err = position(next); err != nil {
				return 0, err
			}
		}
		g.nodes[p].mainline = pos
		return pos, nil
	}

	type key struct {
		pos int
		ts  int64
		id  string
	}
	keys := make(map[int32]key, len(events))
	for _, e := range events {
		// The event's own position in the mainline does not count: the
		// walk starts at the power levels event in its auth events.
		pos := math.MaxInt
		p, err := g.authEventOf(e, "m.room.power_levels", "", false)
		if err != nil {
			return err
		}
		if p >= 0 {
			if pos, err = position(p); err != nil {
				return err
			}
		}
		keys[e] = key{pos: pos, ts: g.ev(e).OriginServerTS(), id: g.nodes[e].id}
	}
	slices.SortFunc(events, func(a, b int32) int {
		ka, kb := keys[a], keys[b]
		if c := cmp.Compare(kb.pos, ka.pos); c != 0 {
			return c // greater position first: based on an earlier mainline event
		}
		if c := cmp.Compare(ka.ts, kb.ts); c != 0 {
			return c
		}
		return cmp.Compare(ka.id, kb.id)
	})
	return nil
}
