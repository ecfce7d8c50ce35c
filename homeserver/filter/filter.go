// Package filter defines the event filters clients upload with
// POST /user/{userId}/filter or pass inline to /sync and /messages: their
// types, parsing and validation, and matching helpers that take plain
// fields, so that the code assembling responses need not build events to
// ask whether one passes.
//
// Absent and empty lists mean different things in the spec: an absent
// `types` includes every type, an empty one includes none. The types keep
// that difference as nil versus empty (non-nil) slices, and marshal with
// omitzero so that a filter round-trips unchanged.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Filter is a whole filter (the spec's "Filter" object).
type Filter struct {
	// EventFields lists the dot-separated paths of the event fields to
	// include; nil includes all. See Project.
	EventFields []string `json:"event_fields,omitzero"`
	// EventFormat is "client" (the default) or "federation".
	EventFormat string       `json:"event_format,omitzero"`
	Presence    *EventFilter `json:"presence,omitzero"`
	// AccountData filters the global account data.
	AccountData *EventFilter `json:"account_data,omitzero"`
	Room        *RoomFilter  `json:"room,omitzero"`
}

// EventFilter selects events by type and sender, and bounds their number.
type EventFilter struct {
	// Limit is the most events to return; nil means the server's default.
	// Use LimitOr to read it.
	Limit      *int     `json:"limit,omitzero"`
	Types      []string `json:"types,omitzero"`
	NotTypes   []string `json:"not_types,omitzero"`
	Senders    []string `json:"senders,omitzero"`
	NotSenders []string `json:"not_senders,omitzero"`
}

// RoomFilter selects rooms and, inside them, events of each section of a
// /sync response.
type RoomFilter struct {
	Rooms    []string `json:"rooms,omitzero"`
	NotRooms []string `json:"not_rooms,omitzero"`
	// IncludeLeave includes rooms the user has left in /sync.
	IncludeLeave bool             `json:"include_leave,omitzero"`
	State        *RoomEventFilter `json:"state,omitzero"`
	Timeline     *RoomEventFilter `json:"timeline,omitzero"`
	Ephemeral    *RoomEventFilter `json:"ephemeral,omitzero"`
	// AccountData filters the per-room account data.
	AccountData *RoomEventFilter `json:"account_data,omitzero"`
}

// RoomEventFilter is an EventFilter for room events, which can also select
// rooms and URL-carrying events and turn on lazy-loading of members.
type RoomEventFilter struct {
	EventFilter
	Rooms    []string `json:"rooms,omitzero"`
	NotRooms []string `json:"not_rooms,omitzero"`
	// ContainsURL, when set, keeps only events with (true) or without
	// (false) a "url" key in their content.
	ContainsURL               *bool `json:"contains_url,omitzero"`
	LazyLoadMembers           bool  `json:"lazy_load_members,omitzero"`
	IncludeRedundantMembers   bool  `json:"include_redundant_members,omitzero"`
	UnreadThreadNotifications bool  `json:"unread_thread_notifications,omitzero"`
}

// Error is a filter the client got wrong. Code is the Matrix error code:
// M_NOT_JSON when it does not parse, M_BAD_JSON for a wrong shape or type,
// M_INVALID_PARAM for a value out of range.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "filter: " + e.Message }

func badJSON(format string, args ...any) *Error {
	return &Error{Code: "M_BAD_JSON", Message: fmt.Sprintf(format, args...)}
}

func invalidParam(format string, args ...any) *Error {
	return &Error{Code: "M_INVALID_PARAM", Message: fmt.Sprintf(format, args...)}
}

// Parse decodes and validates a filter. Unknown keys are ignored, as the
// spec may add some. The error is an *Error.
func Parse(data []byte) (*Filter, error) {
	var f Filter
	if err := decode(data, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// decode unmarshals a JSON object into v with the filter's error codes.
func decode(data []byte, v any) error {
	if !json.Valid(data) {
		return &Error{Code: "M_NOT_JSON", Message: "not valid JSON"}
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return badJSON("a filter must be a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return badJSON("wrong type for %s: want %s", te.Field, jsonTypeName(te.Type.String()))
		}
		return badJSON("%v", err)
	}
	return nil
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case goType == "int":
		return "an integer"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	default:
		return "an object"
	}
}

// Validate checks the values the types cannot: limits, formats and the
// sigils of room and user IDs.
func (f *Filter) Validate() error {
	switch f.EventFormat {
	case "", "client", "federation":
	default:
		return invalidParam("event_format must be client or federation, got %q", f.EventFormat)
	}
	for _, p := range f.EventFields {
		if p == "" {
			return invalidParam("event_fields must not contain an empty path")
		}
	}
	if err := f.Presence.validate("presence"); err != nil {
		return err
	}
	if err := f.AccountData.validate("account_data"); err != nil {
		return err
	}
	if r := f.Room; r != nil {
		if err := checkSigils("room.rooms", r.Rooms, '!'); err != nil {
			return err
		}
		if err := checkSigils("room.not_rooms", r.NotRooms, '!'); err != nil {
			return err
		}
		for _, section := range []struct {
			name string
			f    *RoomEventFilter
		}{{"room.state", r.State}, {"room.timeline", r.Timeline}, {"room.ephemeral", r.Ephemeral}, {"room.account_data", r.AccountData}} {
			if err := section.f.validate(section.name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *EventFilter) validate(name string) error {
	if f == nil {
		return nil
	}
	if f.Limit != nil && *f.Limit <= 0 {
		return invalidParam("%s.limit must be greater than 0, got %d", name, *f.Limit)
	}
	if err := checkSigils(name+".senders", f.Senders, '@'); err != nil {
		return err
	}
	return checkSigils(name+".not_senders", f.NotSenders, '@')
}

func (f *RoomEventFilter) validate(name string) error {
	if f == nil {
		return nil
	}
	if err := f.EventFilter.validate(name); err != nil {
		return err
	}
	if err := checkSigils(name+".rooms", f.Rooms, '!'); err != nil {
		return err
	}
	return checkSigils(name+".not_rooms", f.NotRooms, '!')
}

// checkSigils checks only the sigil: the IDs are matched as strings, and a
// historical ID that no longer parses must still be filterable.
func checkSigils(name string, ids []string, sigil byte) error {
	for _, id := range ids {
		if len(id) < 2 || id[0] != sigil {
			return invalidParam("%s: %q does not start with %q", name, id, sigil)
		}
	}
	return nil
}

// MatchType reports whether an event type matches a pattern in which '*'
// stands for any sequence of characters (including none).
func MatchType(pattern, eventType string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == eventType
	}
	// Fix the literal head and tail, then find the middle pieces in order,
	// each as early as possible: that never rules out a match.
	if !strings.HasPrefix(eventType, pattern[:star]) {
		return false
	}
	last := strings.LastIndexByte(pattern, '*')
	tail := pattern[last+1:]
	rest := eventType[star:]
	if len(rest) < len(tail) || !strings.HasSuffix(rest, tail) {
		return false
	}
	rest = rest[:len(rest)-len(tail)]
	for _, piece := range strings.Split(pattern[star+1:last+1], "*") {
		if piece == "" {
			continue
		}
		i := strings.Index(rest, piece)
		if i < 0 {
			return false
		}
		rest = rest[i+len(piece):]
	}
	return true
}

func matchAnyType(patterns []string, eventType string) bool {
	for _, p := range patterns {
		if MatchType(p, eventType) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Allows reports whether an event of this type and sender passes the
// filter. The not_ lists win over the inclusive ones. A nil filter allows
// everything.
func (f *EventFilter) Allows(eventType, sender string) bool {
	if f == nil {
		return true
	}
	if matchAnyType(f.NotTypes, eventType) || contains(f.NotSenders, sender) {
		return false
	}
	if f.Types != nil && !matchAnyType(f.Types, eventType) {
		return false
	}
	if f.Senders != nil && !contains(f.Senders, sender) {
		return false
	}
	return true
}

// LimitOr returns the filter's limit, def when it has none, and never more
// than max, so that a client cannot ask for unbounded work.
func (f *EventFilter) LimitOr(def, max int) int {
	n := def
	if f != nil && f.Limit != nil {
		n = *f.Limit
	}
	return min(n, max)
}

// Allows reports whether a room event passes the filter: hasURL tells
// whether its content has a "url" key. A nil filter allows everything.
func (f *RoomEventFilter) Allows(eventType, sender, roomID string, hasURL bool) bool {
	if f == nil {
		return true
	}
	if !f.AllowsRoom(roomID) || !f.EventFilter.Allows(eventType, sender) {
		return false
	}
	return f.ContainsURL == nil || *f.ContainsURL == hasURL
}

// AllowsRoom reports whether the filter's room lists let roomID through.
func (f *RoomEventFilter) AllowsRoom(roomID string) bool {
	return f == nil || allowsRoom(f.Rooms, f.NotRooms, roomID)
}

// AllowsRoom reports whether the room filter's lists, which apply before
// every section's own, let roomID through. A nil filter allows every room.
func (f *RoomFilter) AllowsRoom(roomID string) bool {
	return f == nil || allowsRoom(f.Rooms, f.NotRooms, roomID)
}

func allowsRoom(rooms, notRooms []string, roomID string) bool {
	if contains(notRooms, roomID) {
		return false
	}
	return rooms == nil || contains(rooms, roomID)
}

// The accessors below return a section's filter, nil (allow everything)
// when the filter or the section is absent, so callers can chain them on a
// nil *Filter.

// RoomFilter returns the room filter.
func (f *Filter) RoomFilter() *RoomFilter {
	if f == nil {
		return nil
	}
	return f.Room
}

// Timeline returns the room timeline filter.
func (f *Filter) Timeline() *RoomEventFilter {
	if r := f.RoomFilter(); r != nil {
		return r.Timeline
	}
	return nil
}

// State returns the room state filter.
func (f *Filter) State() *RoomEventFilter {
	if r := f.RoomFilter(); r != nil {
		return r.State
	}
	return nil
}

// Ephemeral returns the room ephemeral events filter.
func (f *Filter) Ephemeral() *RoomEventFilter {
	if r := f.RoomFilter(); r != nil {
		return r.Ephemeral
	}
	return nil
}

// RoomAccountData returns the per-room account data filter.
func (f *Filter) RoomAccountData() *RoomEventFilter {
	if r := f.RoomFilter(); r != nil {
		return r.AccountData
	}
	return nil
}

// GlobalAccountData returns the global account data filter.
func (f *Filter) GlobalAccountData() *EventFilter {
	if f == nil {
		return nil
	}
	return f.AccountData
}

// PresenceFilter returns the presence filter.
func (f *Filter) PresenceFilter() *EventFilter {
	if f == nil {
		return nil
	}
	return f.Presence
}

// IncludeLeave reports whether /sync should include left rooms.
func (f *Filter) IncludeLeave() bool {
	r := f.RoomFilter()
	return r != nil && r.IncludeLeave
}

// LazyLoading reports whether lazy-loading of members is on; false for a
// nil filter.
func (f *RoomEventFilter) LazyLoading() bool {
	return f != nil && f.LazyLoadMembers
}

// ParseRoomEventFilter decodes and validates a RoomEventFilter on its own,
// as /messages and /context take one inline. The error is an *Error.
func ParseRoomEventFilter(data []byte) (*RoomEventFilter, error) {
	var f RoomEventFilter
	if err := decode(data, &f); err != nil {
		return nil, err
	}
	if err := f.validate("filter"); err != nil {
		return nil, err
	}
	return &f, nil
}
