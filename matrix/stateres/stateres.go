package stateres

import (
	"errors"
	"fmt"

	"github.com/parley-chat/parley/matrix/authrules"
	"github.com/parley-chat/parley/matrix/event"
)

// StateKey is the (event type, state key) pair that identifies a piece of
// room state.
type StateKey struct {
	Type     string
	StateKey string
}

// StateMap is a room state: the event ID of the state event at each key.
type StateMap map[StateKey]string

// EventProvider gives the resolver the events it needs: the events of the
// state sets and of their auth chains. A provider backed by a database may
// load them lazily; the resolver asks for each event at most once per
// resolution and only for events it needs.
type EventProvider interface {
	// Event returns the event with this ID. An event it does not have is
	// reported as an error (ideally wrapping ErrMissingEvent), or as a nil
	// event, which the resolver turns into ErrMissingEvent.
	Event(eventID string) (*event.Event, error)
}

// RejectionProvider is optionally implemented by an EventProvider that knows
// which events were rejected. The spec excludes rejected auth events from the
// iterative auth checks; without this interface no event counts as rejected.
type RejectionProvider interface {
	// IsRejected reports whether the event was rejected when it was received.
	IsRejected(eventID string) bool
}

// ErrMissingEvent is returned, wrapped, when an event that the algorithm needs
// (a state event or an event of an auth chain) cannot be had. The caller may
// fetch it (for instance over federation) and resolve again.
var ErrMissingEvent = errors.New("stateres: missing event")

// AllowedFunc decides whether an event passes the authorization rules against
// the given auth events; a nil error means allowed. Any error counts as a
// refusal: state resolution never aborts because an event is not allowed.
type AllowedFunc func(ev *event.Event, auth authrules.AuthEvents) error

// Resolver runs state resolution. The zero value is ready to use and checks
// events with authrules.Allowed.
type Resolver struct {
	// Allowed replaces authrules.Allowed. It exists so that tests can study
	// the orderings apart from the authorization rules; production code
	// leaves it nil.
	Allowed AllowedFunc

	// hooks replace steps of the algorithm in tests that emulate other
	// implementations, to show which difference explains a disagreement.
	// Always nil outside tests.
	hooks *hooks
}

// hooks are the replaceable steps; a nil field keeps the spec's step.
type hooks struct {
	// fullConflictedSet adjusts the full conflicted set.
	fullConflictedSet func(g *graph, full []int32, unconflicted StateMap) []int32
	// powerOrdering selects X from the full conflicted set, marks it
	// flagPower and sorts it.
	powerOrdering func(g *graph, full, powerEvents []int32) ([]int32, error)
	// mainlineOrdering sorts the remaining events.
	mainlineOrdering func(g *graph, events []int32, pl int32) error
	// checkState gives what an event is checked against in the iterative
	// auth checks.
	checkState func(g *graph, state *partialState, ev int32) authrules.AuthEvents
}

// Resolve resolves the state sets with a zero Resolver: see Resolver.Resolve.
func Resolve(version event.RoomVersionInfo, stateSets []StateMap, authChains [][]string, events EventProvider) (StateMap, error) {
	return Resolver{}.Resolve(version, stateSets, authChains, events)
}

// Resolve computes the resolution of stateSets with the algorithm of the
// room version.
//
// authChains, when not nil, holds for each state set (same index) its full
// auth chain: the union of the auth chains of the set's events, as the spec
// defines it (the state events themselves are not part of it unless another
// event of the set cites them). Callers that keep an auth chain index pass
// it to spare the resolver a walk over every state event; with nil the
// resolver walks the auth events itself. Room version 1 ignores it.
//
// The input maps are not modified; the result is a new map.
func (r Resolver) Resolve(version event.RoomVersionInfo, stateSets []StateMap, authChains [][]string, events EventProvider) (StateMap, error) {
	if events == nil {
		return nil, errors.New("stateres: nil EventProvider")
	}
	if authChains != nil && len(authChains) != len(stateSets) {
		return nil, fmt.Errorf("stateres: %d auth chains for %d state sets", len(authChains), len(stateSets))
	}
	switch len(stateSets) {
	case 0:
		return StateMap{}, nil
	case 1:
		// Every pair is unconflicted and the auth difference of a single
		// chain is empty, so the resolution is the state itself.
		out := make(StateMap, len(stateSets[0]))
		for k, v := range stateSets[0] {
			out[k] = v
		}
		return out, nil
	}
	allowed := r.Allowed
	if allowed == nil {
		allowed = authrules.Allowed
	}
	// Walking the auth chains touches about every state event and some of
	// their history; given auth chains are interned whole.
	hint := 2 * len(stateSets[0])
	switch {
	case version.StateRes == event.StateResV1:
		hint = 64
	case authChains != nil:
		hint = 64 + len(authChains[0])
	}
	g := newGraph(version, events, hint)
	g.hooks = r.hooks
	switch version.StateRes {
	case event.StateResV1:
		return resolveV1(g, allowed, stateSets)
	case event.StateResV2, event.StateResV2_1:
		return resolveV2(g, allowed, stateSets, authChains)
	default:
		return nil, fmt.Errorf("stateres: room version %q has no known state resolution algorithm", version.ID)
	}
}
