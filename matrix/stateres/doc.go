// Package stateres implements the state resolution algorithms of every room
// version: v1 (room version 1), v2 (room versions 2 to 11) and v2.1 (room
// version 12). Given the states after each of an event's prev_events it
// computes the state before the event.
//
// The package is pure: events come from a caller-supplied EventProvider,
// which may load them lazily from a database; nothing here does I/O itself.
// An event the algorithm needs and cannot get is an error (ErrMissingEvent):
// the spec's algorithm is defined over complete auth chains, and resolving
// without part of them could silently give another answer than other
// servers.
//
// Where the spec can be read more than one way, this package reads it
// literally. differences_test.go shows on small rooms each place where
// gomatrixserverlib answers otherwise (these readings, and two of its
// bugs), and the differential tests show that nothing else separates the
// two on thousands of random rooms. The literal readings:
//
//   - The auth chain of a state set is the union of the auth chains of its
//     events, which do not include the events themselves. An unconflicted
//     event that one set's events cite and another's do not is therefore in
//     the auth difference, in the full conflicted set, and replayed.
//   - X (step 1) holds every event of a power event's auth chain that is in
//     the full conflicted set, whatever the path to it.
//   - The reverse topological power ordering respects the auth DAG through
//     events outside X too, and is computed with Kahn's algorithm from the
//     earliest events, taking the smallest candidate at each step.
//   - The sender's power level for that ordering is the one the auth rules
//     give from the event's auth events: the creator has 100 without a
//     power levels event (rooms 1 to 11) and infinite power in room 12.
//   - The mainline position of an event whose power levels ancestry never
//     meets the mainline is infinite; ties go to origin_server_ts, then
//     event ID, nothing else.
//
// Room version 12 events do not list the create event in auth_events; the
// room ID names it. The resolver treats it as an implicit auth event (as
// gomatrixserverlib and Synapse do): it is in every auth chain and is what
// the iterative auth checks find for m.room.create.
package stateres
