package stateres

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"slices"

	"github.com/parley-chat/parley/matrix/event"
)

// resolveV1 is the state resolution of room version 1 (rooms/v1 "State
// resolution"). The resolved state R starts as the union of the states
// without the conflicting events; conflicts are then resolved power levels
// first, then join rules, then memberships, each candidate being
// authorised against R as it stands, and last every other key.
//
// Where the spec leaves the order open it is fixed here so that every
// server agrees with itself: membership keys are resolved in ascending state
// key order (each winner joins R before the next key), other keys in
// ascending (type, state key) order.
func resolveV1(g *graph, allowed AllowedFunc, sets []StateMap) (StateMap, error) {
	// "A conflict occurs between states where those states have different
	// event_ids for the same (event_type, state_key)." A key that some sets
	// lack is not in conflict.
	r := make(StateMap, len(sets[0]))
	candidates := make(map[StateKey][]string)
	for _, s := range sets {
		for k, id := range s {
			if c, ok := candidates[k]; ok {
				if !slices.Contains(c, id) {
					candidates[k] = append(c, id)
				}
				continue
			}
			prev, ok := r[k]
			switch {
			case !ok:
				r[k] = id
			case prev != id:
				candidates[k] = []string{prev, id}
				delete(r, k)
			}
		}
	}
	if len(candidates) == 0 {
		return r, nil
	}

	type cand struct {
		node  int32
		depth int64
		sha   [sha1.Size]byte
	}
	load := func(ids []string) ([]cand, error) {
		out := make([]cand, 0, len(ids))
		for _, id := range ids {
			i := g.intern(id)
			if err := g.load(i); err != nil {
				return nil, err
			}
			out = append(out, cand{node: i, depth: g.ev(i).Depth(), sha: sha1.Sum([]byte(id))})
		}
		return out, nil
	}
	view := &v1State{g: g, state: r}
	check := func(i int32) (bool, error) {
		view.err = nil
		err := allowed(g.ev(i), view)
		return err == nil, view.err
	}

	// resolveAuthKey: sort by ascending depth then descending sha1(event_id);
	// the first goes into R unchecked, each next one replaces it while the
	// auth rules allow it against R, and the first refusal ends the key.
	resolveAuthKey := func(k StateKey) error {
		cs, err := load(candidates[k])
		if err != nil {
			return err
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if c := cmp.Compare(a.depth, b.depth); c != 0 {
				return c
			}
			return bytes.Compare(b.sha[:], a.sha[:])
		})
		r[k] = g.nodes[cs[0].node].id
		for _, c := range cs[1:] {
			ok, err := check(c.node)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			r[k] = g.nodes[c.node].id
		}
		delete(candidates, k)
		return nil
	}

	for _, k := range []StateKey{{Type: "m.room.power_levels"}, {Type: "m.room.join_rules"}} {
		if _, ok := candidates[k]; ok {
			if err := resolveAuthKey(k); err != nil {
				return nil, err
			}
		}
	}
	var members, others []StateKey
	for k := range candidates {
		if k.Type == "m.room.member" {
			members = append(members, k)
		} else {
			others = append(others, k)
		}
	}
	byKey := func(a, b StateKey) int {
		if c := cmp.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return cmp.Compare(a.StateKey, b.StateKey)
	}
	slices.SortFunc(members, byKey)
	slices.SortFunc(others, byKey)
	for _, k := range members {
		if err := resolveAuthKey(k); err != nil {
			return nil, err
		}
	}

	// Other keys: "pick the event with the highest depth and lowest
	// sha1(event_id) that passes authentication in R". When none passes the
	// key is left out of R.
	for _, k := range others {
		cs, err := load(candidates[k])
		if err != nil {
			return nil, err
		}
		slices.SortFunc(cs, func(a, b cand) int {
			if c := cmp.Compare(b.depth, a.depth); c != 0 {
				return c
			}
			return bytes.Compare(a.sha[:], b.sha[:])
		})
		for _, c := range cs {
			ok, err := check(c.node)
			if err != nil {
				return nil, err
			}
			if ok {
				r[k] = g.nodes[c.node].id
				break
			}
		}
	}
	return r, nil
}

// v1State answers the auth rules' questions from the resolved state R alone:
// room version 1 authorises candidates "for a room in state R".
type v1State struct {
	g     *graph
	state StateMap
	err   error
}

// Get implements authrules.AuthEvents.
func (s *v1State) Get(eventType, stateKey string) *event.Event {
	id, ok := s.state[StateKey{Type: eventType, StateKey: stateKey}]
	if !ok || s.err != nil {
		return nil
	}
	i := s.g.intern(id)
	if s.err = s.g.load(i); s.err != nil {
		return nil
	}
	return s.g.ev(i)
}
