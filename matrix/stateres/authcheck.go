package stateres

import (
	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// partialState is the partially resolved state of the iterative auth
// checks: what the checks applied, over an optional base that is never
// copied (the unconflicted state map, which in a large room holds nearly
// every state event).
type partialState struct {
	base StateMap
	over map[StateKey]int32
}

func (s *partialState) get(g *graph, k StateKey) (int32, bool) {
	if i, ok := s.over[k]; ok {
		return i, true
	}
	if id, ok := s.base[k]; ok {
		return g.intern(id), true
	}
	return -1, false
}

// checkState is what one event is authorised against during the iterative
// auth checks: "If a (event_type, state_key) key that is required for
// checking the authorisation rules is not present in the state, then the
// appropriate state event from the event's auth_events is used if the auth
// event is not rejected." The auth rules only ask for the keys they
// require, so answering each Get this way is exactly that rule.
type checkState struct {
	g     *graph
	state *partialState
	ev    int32
	err   error // a failure to load an event, reported after the check
}

// Get implements authrules.AuthEvents.
func (c *checkState) Get(eventType, stateKey string) *event.Event {
	if c.err != nil {
		return nil
	}
	if i, ok := c.state.get(c.g, StateKey{Type: eventType, StateKey: stateKey}); ok {
		if c.err = c.g.load(i); c.err != nil {
			return nil
		}
		return c.g.ev(i)
	}
	a, err := c.g.authEventOf(c.ev, eventType, stateKey, true)
	if err != nil {
		c.err = err
		return nil
	}
	if a < 0 {
		return nil
	}
	return c.g.ev(a)
}

// iterativeAuthChecks applies each event of the sorted list to the state if
// the auth rules allow it against the state, and ignores it otherwise.
func (g *graph) iterativeAuthChecks(allowed AllowedFunc, state *partialState, events []int32) error {
	for _, i := range events {
		ev := g.ev(i)
		k, ok := stateKeyOf(ev)
		if !ok {
			continue
		}
		c := checkState{g: g, state: state, ev: i}
		var auth authrules.AuthEvents = &c
		if g.hooks != nil && g.hooks.checkState != nil {
			auth = g.hooks.checkState(g, state, i)
		}
		err := allowed(ev, auth)
		if c.err != nil {
			return c.err
		}
		if err == nil {
			state.over[k] = i
		}
	}
	return nil
}
