package sync

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/stream"
	"github.com/parley-chat/parley/storage"
)

// AccountData is the account data stream, provided by the users service.
type AccountData interface {
	// CurrentAccountDataPos is the stream's latest position.
	CurrentAccountDataPos(ctx context.Context) (int64, error)
	// AccountDataSince returns the user's account data changed in
	// (from, to]: global events and per-room events, each as
	// {"type": ..., "content": ...} objects.
	AccountDataSince(ctx context.Context, userID string, from, to int64) (global []json.RawMessage, perRoom map[string][]json.RawMessage, err error)
}

// Extension adds a stream of its own to /sync: to-device messages, device
// list changes, typing, receipts, presence... Its position is carried in the
// sync token.
type Extension interface {
	// CurrentPos is the extension's latest readable position.
	CurrentPos(ctx context.Context) (int64, error)
	// Fill adds to resp what changed for the request's user and device in
	// (from, to]; from is 0 on an initial sync. It reports whether it added
	// anything that should end a waiting long-poll.
	Fill(ctx context.Context, req Request, from, to int64, resp *Response) (changed bool, err error)
}

// Service assembles /sync responses.
type Service struct {
	rooms       *rooms.Engine
	db          *storage.DB
	positions   *stream.Positions
	notifier    *Notifier
	accountData AccountData
	extensions  []Extension
}

// PartialExtension is an Extension that may deliver only part of (from, to]
// in one response, such as to-device messages, which are sent at most 100
// at a time. The sync service calls FillPartial instead of Fill; it returns
// the position it got to, which next_batch carries in place of to, so that
// the rest comes with the next response.
type PartialExtension interface {
	Extension
	FillPartial(ctx context.Context, req Request, from, to int64, resp *Response) (reached int64, changed bool, err error)
}

// AddExtension registers an extension and returns the index of its
// position in Token.Ext (for endpoints such as /keys/changes that read an
// extension's position from tokens). Extensions must be added in the same
// order at every start, since tokens carry their positions by index.
func (s *Service) AddExtension(e Extension) int {
	s.extensions = append(s.extensions, e)
	return len(s.extensions) - 1
}

// New returns the sync service.
func New(engine *rooms.Engine, positions *stream.Positions, notifier *Notifier, accountData AccountData) *Service {
	return &Service{rooms: engine, db: engine.DB(), positions: positions, notifier: notifier, accountData: accountData}
}

// Request is a parsed /sync request.
type Request struct {
	Viewer    rooms.Viewer
	Since     *Token // nil for an initial sync
	Timeout   time.Duration
	FullState bool

	TimelineLimit   int
	LazyLoadMembers bool
	IncludeLeave    bool
	// RoomAllowed filters rooms (filter rooms/not_rooms); nil allows all.
	RoomAllowed func(roomID string) bool
	// TimelineMatch and StateMatch filter events by type and sender; nil keeps all.
	TimelineMatch func(*storage.EventRow) bool
	StateMatch    func(*storage.EventRow) bool
	// AccountDataMatch filters account data event types; nil keeps all.
	AccountDataMatch func(eventType string) bool
	// UnreadThreadNotifications asks for unread counts split by thread
	// (the timeline filter's unread_thread_notifications).
	UnreadThreadNotifications bool
}

// Response is the /sync response body.
type Response struct {
	NextBatch   string      `json:"next_batch"`
	Rooms       Rooms       `json:"rooms"`
	AccountData EventList   `json:"account_data"`
	Presence    EventList   `json:"presence"`
	ToDevice    EventList   `json:"to_device"`
	DeviceLists DeviceLists `json:"device_lists"`
	// DeviceOneTimeKeysCount and DeviceUnusedFallbackKeyTypes are filled
	// by the end-to-end encryption extension.
	DeviceOneTimeKeysCount map[string]int `json:"device_one_time_keys_count"`
	// The spec makes device_unused_fallback_key_types required: clients
	// take its absence to mean the server does not support fallback keys.
	DeviceUnusedFallbackKeyTypes []string `json:"device_unused_fallback_key_types"`
}

// JoinedRoom returns the response's section for a joined room, adding an
// empty one if the room has none yet (for extensions that add ephemeral
// events to rooms without new timeline events). The new section has no
// unread counts, so that the client keeps those it has; the push extension
// fills them where it knows them.
func (r *Response) JoinedRoom(roomID string) *JoinedRoom {
	jr, ok := r.Rooms.Join[roomID]
	if !ok {
		jr = &JoinedRoom{
			State:       ClientEvents{Events: []*rooms.ClientEvent{}},
			Timeline:    Timeline{Events: []*rooms.ClientEvent{}},
			Ephemeral:   EventList{Events: []json.RawMessage{}},
			AccountData: EventList{Events: []json.RawMessage{}},
		}
		r.Rooms.Join[roomID] = jr
	}
	return jr
}

// DeviceLists reports users whose devices changed.
type DeviceLists struct {
	Changed []string `json:"changed,omitempty"`
	Left    []string `json:"left,omitempty"`
}

// EventList is {"events": [...]}.
type EventList struct {
	Events []json.RawMessage `json:"events"`
}

// Rooms holds the per-membership sections.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
	Knock  map[string]*KnockedRoom `json:"knock"`
}

// JoinedRoom is a room the user is joined to.
type JoinedRoom struct {
	Summary     *Summary     `json:"summary,omitempty"`
	State       ClientEvents `json:"state"`
	Timeline    Timeline     `json:"timeline"`
	Ephemeral   EventList    `json:"ephemeral"`
	AccountData EventList    `json:"account_data"`
	// UnreadNotifications are the room's counts (its main timeline's when
	// split by thread); nil leaves them out, for rooms whose counts the
	// response does not know.
	UnreadNotifications *UnreadNotifications `json:"unread_notifications,omitempty"`
	// UnreadThreadNotifications are the counts of the room's threads, by
	// thread root, when the filter asks for them split.
	UnreadThreadNotifications map[string]*UnreadNotifications `json:"unread_thread_notifications,omitempty"`
}

// UnreadNotifications are the room's unread counts.
type UnreadNotifications struct {
	HighlightCount    int `json:"highlight_count"`
	NotificationCount int `json:"notification_count"`
}

// Summary is what clients need to name a room without its full member list.
type Summary struct {
	Heroes             []string `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int     `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int     `json:"m.invited_member_count,omitempty"`
}

// ClientEvents is {"events": [...]} of client-format events.
type ClientEvents struct {
	Events []*rooms.ClientEvent `json:"events"`
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []*rooms.ClientEvent `json:"events"`
	Limited   bool                 `json:"limited"`
	PrevBatch string               `json:"prev_batch,omitempty"`
}

// InvitedRoom is a room the user is invited to.
type InvitedRoom struct {
	InviteState StrippedEvents `json:"invite_state"`
}

// KnockedRoom is a room the user knocked on.
type KnockedRoom struct {
	KnockState StrippedEvents `json:"knock_state"`
}

// StrippedEvents is {"events": [...]} of stripped state events.
type StrippedEvents struct {
	Events []StrippedEvent `json:"events"`
}

// StrippedEvent is a state event reduced to what a non-member may see.
type StrippedEvent struct {
	Content  json.RawMessage `json:"content"`
	Sender   string          `json:"sender"`
	StateKey string          `json:"state_key"`
	Type     string          `json:"type"`
}

// LeftRoom is a room the user left or was removed from.
type LeftRoom struct {
	State       ClientEvents `json:"state"`
	Timeline    Timeline     `json:"timeline"`
	AccountData EventList    `json:"account_data"`
}

// ErrBadToken means the since token does not parse.
var ErrBadToken = errors.New("invalid since token")

// Sync answers a /sync request, waiting up to req.Timeout for something new
// when incremental.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	if req.TimelineLimit <= 0 {
		req.TimelineLimit = 10
	}
	deadline := time.Now().Add(req.Timeout)
	for {
		wake, cancel := s.notifier.Wait(req.Viewer.UserID)
		resp, empty, err := s.assemble(ctx, req)
		if err != nil || !empty || req.Since == nil || req.FullState || s.notifier.Closed() {
			cancel()
			return resp, err
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			cancel()
			return resp, nil
		}
		timer := time.NewTimer(remaining)
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		cancel()
		if ctx.Err() != nil {
			return resp, nil
		}
		if time.Until(deadline) <= 0 {
			// Woken or not, the time is up; one last look.
			resp, _, err := s.assemble(ctx, req)
			return resp, err
		}
	}
}

func newResponse() *Response {
	return &Response{
		Rooms:                        Rooms{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{}, Leave: map[string]*LeftRoom{}, Knock: map[string]*KnockedRoom{}},
		AccountData:                  EventList{Events: []json.RawMessage{}},
		Presence:                     EventList{Events: []json.RawMessage{}},
		ToDevice:                     EventList{Events: []json.RawMessage{}},
		DeviceOneTimeKeysCount:       map[string]int{},
		DeviceUnusedFallbackKeyTypes: []string{},
	}
}

// assemble builds the response from req.Since to now; empty reports that
// nothing changed.
func (s *Service) assemble(ctx context.Context, req Request) (*Response, bool, error) {
	now := Token{Events: s.positions.Current()}
	if s.accountData != nil {
		p, err := s.accountData.CurrentAccountDataPos(ctx)
		if err != nil {
			return nil, false, err
		}
		now.AccountData = p
	}
	for _, ext := range s.extensions {
		p, err := ext.CurrentPos(ctx)
		if err != nil {
			return nil, false, err
		}
		now.Ext = append(now.Ext, p)
	}
	since := Token{}
	if req.Since != nil {
		since = *req.Since
		// A token from the future (say, from before a database restore)
		// is treated as now rather than skipping what comes next.
		since.Events = min(since.Events, now.Events)
		since.AccountData = min(since.AccountData, now.AccountData)
		since.Ext = make([]int64, len(now.Ext))
		for i := range now.Ext {
			since.Ext[i] = min(req.Since.ext(i), now.Ext[i])
		}
	}
	resp := newResponse()
	resp.NextBatch = now.String()
	user := req.Viewer.UserID

	var roomAD map[string][]json.RawMessage
	if s.accountData != nil && (req.Since == nil || since.AccountData < now.AccountData) {
		global, perRoom, err := s.accountData.AccountDataSince(ctx, user, since.AccountData, now.AccountData)
		if err != nil {
			return nil, false, err
		}
		resp.AccountData.Events = filterAccountData(global, req.AccountDataMatch)
		roomAD = perRoom
	}

	memberships, err := s.db.UserMemberships(ctx, user)
	if err != nil {
		return nil, false, err
	}
	var changed map[string]int64
	if req.Since != nil {
		if changed, err = s.db.RoomsChangedBetween(ctx, since.Events, now.Events); err != nil {
			return nil, false, err
		}
	}
	for _, m := range memberships {
		if req.RoomAllowed != nil && !req.RoomAllowed(m.RoomID) {
			continue
		}
		if m.StreamPos > now.Events {
			continue // written after the position this response stops at
		}
		incremental := req.Since != nil
		newMembership := !incremental || m.StreamPos > since.Events
		_, roomChanged := changed[m.RoomID]
		ad := filterAccountData(roomAD[m.RoomID], req.AccountDataMatch)
		switch m.Membership {
		case "join":
			// full_state sends every joined room's whole state, but the
			// timeline still starts at since.
			if incremental && !req.FullState && !roomChanged && !newMembership && len(ad) == 0 {
				continue
			}
			from := since.Events
			if newMembership {
				from = 0 // a newly joined room is sent whole
			}
			jr, err := s.joinedRoom(ctx, req, m.RoomID, from, now.Events, !newMembership && !req.FullState)
			if err != nil {
				return nil, false, err
			}
			jr.AccountData.Events = ad
			resp.Rooms.Join[m.RoomID] = jr
		case "invite":
			if !newMembership {
				continue
			}
			st, err := s.strippedState(ctx, m.RoomID, user, m.EventID)
			if err != nil {
				return nil, false, err
			}
			resp.Rooms.Invite[m.RoomID] = &InvitedRoom{InviteState: StrippedEvents{Events: st}}
		case "knock":
			if !newMembership {
				continue
			}
			st, err := s.strippedState(ctx, m.RoomID, user, m.EventID)
			if err != nil {
				return nil, false, err
			}
			resp.Rooms.Knock[m.RoomID] = &KnockedRoom{KnockState: StrippedEvents{Events: st}}
		case "leave", "ban":
			if !newMembership || (!incremental && !req.IncludeLeave) {
				continue
			}
			if m.EventID == "" {
				// A declined invite to a room we were never in: nothing to
				// show but that it is gone.
				resp.Rooms.Leave[m.RoomID] = &LeftRoom{State: ClientEvents{Events: []*rooms.ClientEvent{}},
					Timeline: Timeline{Events: []*rooms.ClientEvent{}}, AccountData: EventList{Events: []json.RawMessage{}}}
				continue
			}
			lr, err := s.leftRoom(ctx, req, m, since.Events, !incremental)
			if err != nil {
				return nil, false, err
			}
			if lr != nil {
				lr.AccountData.Events = ad
				resp.Rooms.Leave[m.RoomID] = lr
			}
		}
	}
	empty := len(resp.Rooms.Join) == 0 && len(resp.Rooms.Invite) == 0 && len(resp.Rooms.Leave) == 0 &&
		len(resp.Rooms.Knock) == 0 && len(resp.AccountData.Events) == 0
	for i, ext := range s.extensions {
		from := int64(0)
		if req.Since != nil {
			from = since.Ext[i]
		}
		var changed bool
		var err error
		if pe, ok := ext.(PartialExtension); ok {
			var reached int64
			reached, changed, err = pe.FillPartial(ctx, req, from, now.Ext[i], resp)
			now.Ext[i] = min(max(reached, from), now.Ext[i])
		} else {
			changed, err = ext.Fill(ctx, req, from, now.Ext[i], resp)
		}
		if err != nil {
			return nil, false, err
		}
		empty = empty && !changed
	}
	// Partial extensions may have stopped short.
	resp.NextBatch = now.String()
	return resp, empty, nil
}

func filterAccountData(evs []json.RawMessage, match func(string) bool) []json.RawMessage {
	out := []json.RawMessage{}
	for _, ev := range evs {
		if match != nil {
			var t struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(ev, &t) != nil || !match(t.Type) {
				continue
			}
		}
		out = append(out, ev)
	}
	return out
}

// joinedRoom builds a joined room's section for events in (from, to].
// With incremental, the state section holds only what changed between
// from and the start of the timeline.
func (s *Service) joinedRoom(ctx context.Context, req Request, roomID string, from, to int64, incremental bool) (*JoinedRoom, error) {
	tl, firstRow, limited, err := s.timeline(ctx, req, roomID, from, to)
	if err != nil {
		return nil, err
	}
	jr := &JoinedRoom{
		Timeline:            tl,
		Ephemeral:           EventList{Events: []json.RawMessage{}},
		AccountData:         EventList{Events: []json.RawMessage{}},
		UnreadNotifications: &UnreadNotifications{},
	}
	// The state at the start of the timeline.
	var startState storage.StateMap
	if firstRow != nil {
		startState, err = s.db.LoadSnapshot(ctx, firstRow.StateBefore)
	} else {
		startState, err = s.stateAtPos(ctx, roomID, to)
	}
	if err != nil {
		return nil, err
	}
	stateMap := startState
	if incremental {
		if !limited {
			stateMap = storage.StateMap{} // every change is in the timeline
		} else {
			before, err := s.stateAtPos(ctx, roomID, from)
			if err != nil {
				return nil, err
			}
			stateMap = storage.StateMap{}
			for k, v := range startState {
				if before[k] != v {
					stateMap[k] = v
				}
			}
		}
	}
	if req.LazyLoadMembers {
		stateMap = lazyMembers(stateMap, tl.Events, req.Viewer.UserID, !incremental)
	}
	evs, err := s.rooms.StateEvents(ctx, stateMap, req.Viewer)
	if err != nil {
		return nil, err
	}
	jr.State.Events = filterState(evs, req.StateMatch)
	if !incremental || hasMemberChange(tl.Events, jr.State.Events) {
		if jr.Summary, err = s.summary(ctx, roomID, req.Viewer.UserID); err != nil {
			return nil, err
		}
	}
	return jr, nil
}

func filterState(evs []*rooms.ClientEvent, match func(*storage.EventRow) bool) []*rooms.ClientEvent {
	out := make([]*rooms.ClientEvent, 0, len(evs))
	for _, ev := range evs {
		if match == nil || match(ev.Stored) {
			out = append(out, ev)
		}
	}
	return out
}

func hasMemberChange(lists ...[]*rooms.ClientEvent) bool {
	for _, l := range lists {
		for _, ev := range l {
			if ev.Type == "m.room.member" {
				return true
			}
		}
	}
	return false
}

// lazyMembers keeps, of the member events in st, only those of the
// timeline's senders and the user's own (on initial sync).
func lazyMembers(st storage.StateMap, timeline []*rooms.ClientEvent, self string, includeSelf bool) storage.StateMap {
	want := map[string]bool{}
	for _, ev := range timeline {
		want[ev.Sender] = true
	}
	if includeSelf {
		want[self] = true
	}
	out := storage.StateMap{}
	for k, v := range st {
		if k.Type != "m.room.member" || want[k.StateKey] {
			out[k] = v
		}
	}
	return out
}

// timeline returns the last events of (from, to] that the user may see.
func (s *Service) timeline(ctx context.Context, req Request, roomID string, from, to int64) (Timeline, *storage.EventRow, bool, error) {
	resp, err := s.rooms.Messages(ctx, rooms.MessagesRequest{
		Viewer: req.Viewer, RoomID: roomID, From: to, To: from, Backwards: true,
		Limit: req.TimelineLimit, Match: req.TimelineMatch,
	})
	if err != nil {
		return Timeline{}, nil, false, err
	}
	evs := resp.Chunk
	// Messages returns newest first; the timeline is oldest first.
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	tl := Timeline{Events: evs}
	if tl.Events == nil {
		tl.Events = []*rooms.ClientEvent{}
	}
	var first *storage.EventRow
	if len(evs) > 0 {
		first = evs[0].Stored
		// limited: older events in the range were left out.
		if len(evs) >= req.TimelineLimit || req.TimelineMatch != nil {
			older, err := s.db.RoomEvents(ctx, roomID, from, first.StreamPos-1, 1, true)
			if err != nil {
				return Timeline{}, nil, false, err
			}
			tl.Limited = len(older) > 0
		}
		tl.PrevBatch = Token{Events: first.StreamPos - 1}.String()
	} else {
		tl.PrevBatch = Token{Events: to}.String()
	}
	return tl, first, tl.Limited, nil
}

// stateAtPos is the room's state after its last event at or before pos.
func (s *Service) stateAtPos(ctx context.Context, roomID string, pos int64) (storage.StateMap, error) {
	row, err := s.db.LastEventBefore(ctx, roomID, pos)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.StateMap{}, nil
	}
	if err != nil {
		return nil, err
	}
	return s.rooms.StateAtEvent(ctx, row)
}

// leftRoom is the section of a room the user left: the timeline up to
// their leave event.
func (s *Service) leftRoom(ctx context.Context, req Request, m storage.Membership, since int64, initial bool) (*LeftRoom, error) {
	from := since
	if initial {
		from = 0
	}
	tl, firstRow, limited, err := s.timeline(ctx, req, m.RoomID, from, m.StreamPos)
	if err != nil {
		return nil, err
	}
	lr := &LeftRoom{Timeline: tl, AccountData: EventList{Events: []json.RawMessage{}}}
	lr.State.Events = []*rooms.ClientEvent{}
	if limited || initial {
		var st storage.StateMap
		if firstRow != nil {
			st, err = s.db.LoadSnapshot(ctx, firstRow.StateBefore)
		} else {
			st, err = s.stateAtPos(ctx, m.RoomID, m.StreamPos)
		}
		if err != nil {
			return nil, err
		}
		if req.LazyLoadMembers {
			st = lazyMembers(st, tl.Events, req.Viewer.UserID, true)
		}
		evs, err := s.rooms.StateEvents(ctx, st, req.Viewer)
		if err != nil {
			return nil, err
		}
		lr.State.Events = filterState(evs, req.StateMatch)
	}
	return lr, nil
}

// strippedStateTypes are the state events an invitee or knocker is shown.
var strippedStateTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar",
	"m.room.canonical_alias", "m.room.encryption", "m.room.topic"}

// strippedState is the room's stripped state for an invite or knock,
// including the membership event itself.
func (s *Service) strippedState(ctx context.Context, roomID, userID, memberEventID string) ([]StrippedEvent, error) {
	st, err := s.rooms.CurrentState(ctx, roomID)
	if errors.Is(err, rooms.ErrNotFound) {
		// An invite over federation to a room we are not in: the state
		// the inviting server sent.
		raw, _ := s.rooms.RemoteInviteState(ctx, roomID, userID)
		out := []StrippedEvent{}
		for _, r := range raw {
			var se StrippedEvent
			if json.Unmarshal(r, &se) == nil && se.Type != "" {
				out = append(out, se)
			}
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out := []StrippedEvent{}
	for _, t := range strippedStateTypes {
		if ev := st[storage.StateKey{Type: t}]; ev != nil {
			out = append(out, StrippedEvent{Content: ev.Content(), Sender: ev.Sender(), StateKey: "", Type: t})
		}
	}
	if row, err := s.db.GetAnyEvent(ctx, memberEventID); err == nil {
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal([]byte(row.JSON), &ev)
		out = append(out, StrippedEvent{Content: ev.Content, Sender: row.Sender, StateKey: *row.StateKey, Type: row.Type})
	}
	return out, nil
}

// summary counts members and picks heroes (up to five other members, by
// user ID) for clients to name rooms.
func (s *Service) summary(ctx context.Context, roomID, self string) (*Summary, error) {
	st, err := s.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	joined, invited := 0, 0
	var others []string
	for k, ev := range st {
		if k.Type != "m.room.member" {
			continue
		}
		m, _ := ev.Membership()
		switch m {
		case "join":
			joined++
		case "invite":
			invited++
		default:
			continue
		}
		if k.StateKey != self {
			others = append(others, k.StateKey)
		}
	}
	sort.Strings(others)
	if len(others) > 5 {
		others = others[:5]
	}
	return &Summary{Heroes: others, JoinedMemberCount: &joined, InvitedMemberCount: &invited}, nil
}
