package push

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/parley-chat/parley/homeserver/rooms"
	"github.com/parley-chat/parley/homeserver/sync"
	"github.com/parley-chat/parley/storage"
)

// Unread counts and receipts.
//
// Counts are kept per user, room and thread (storage.ThreadMain or a
// thread root) in push_unread_counts, raised as notifications are recorded.
// Each user has read markers per room: an unthreaded one and one per thread.
// A notification at stream position N counts while N is after both the
// unthreaded marker and its thread's. Moving a marker to P recounts the
// notifications after P, so a receipt at P leaves exactly the
// notifications after P unread, whatever order receipts and evaluation
// happen in.
//
// The receipts service calls MarkRead (m.read and m.read.private receipts
// without a thread_id) or MarkReadThread (with one) for local users, with
// the stream position of the event the receipt names. Markers only move
// forward, so of m.read and m.read.private the one further ahead wins, as
// the spec asks. A user's own event counts as a receipt for it.

// ReceiptSource is what the push service would ask the receipts service:
// the latest read receipt (m.read or m.read.private, whichever is further
// ahead) of a user in a room's main timeline, with the stream position of
// its event; "" and 0 when there is none. See ReceiptMoved.
type ReceiptSource interface {
	LatestReadReceipt(ctx context.Context, roomID, userID string) (eventID string, streamPos int64, err error)
}

// MarkRead records that a local user has read a room up to the event at
// streamPos (an unthreaded receipt): every notification at or before it,
// in every thread, stops counting. The user's /sync wakes when a count
// changed.
func (s *Service) MarkRead(ctx context.Context, roomID, userID string, streamPos int64) error {
	return s.MarkReadThread(ctx, roomID, userID, storage.ThreadAll, streamPos)
}

// MarkReadThread is MarkRead for a threaded receipt: threadID is "main"
// for the main timeline or a thread root's event ID, and only that
// thread's notifications are marked read.
func (s *Service) MarkReadThread(ctx context.Context, roomID, userID, threadID string, streamPos int64) error {
	changed, err := s.db.MarkPushRead(ctx, storage.PushRead{UserID: userID, RoomID: roomID, ThreadID: threadID, StreamPos: streamPos})
	if err != nil {
		return err
	}
	if changed && s.cfg.Notifier != nil {
		s.cfg.Notifier.Wake(userID)
	}
	return nil
}

// ReceiptMoved is for the receipts service's hook, which says only that
// a user's receipt in a room moved: it asks src where the user has now
// read up to and marks the room read there. The position counts as an
// unthreaded receipt, which also clears the room's threads: a client
// that does not know threads reads them in the main timeline, and leaving
// their counts up would leave its badge up for ever. A receipts hook that
// passes the thread ID can call MarkReadThread instead.
func (s *Service) ReceiptMoved(ctx context.Context, src ReceiptSource, roomID, userID string) error {
	_, pos, err := src.LatestReadReceipt(ctx, roomID, userID)
	if err != nil || pos <= 0 {
		return err
	}
	return s.MarkRead(ctx, roomID, userID, pos)
}

// Counts are a user's unread counts in one room.
type Counts struct {
	// Room is the room's total, or its main timeline's when the counts
	// are split by thread.
	Room sync.UnreadNotifications
	// Threads are the threads' counts when split, by thread root.
	Threads map[string]*sync.UnreadNotifications
}

// UnreadCounts returns the user's counts in the rooms where some are above
// zero; split puts each thread's counts apart from the main timeline's.
func (s *Service) UnreadCounts(ctx context.Context, userID string, split bool) (map[string]*Counts, error) {
	rows, err := s.db.UnreadCounts(ctx, userID, 1<<62)
	if err != nil {
		return nil, err
	}
	return groupCounts(rows, split), nil
}

func groupCounts(rows []storage.UnreadCount, split bool) map[string]*Counts {
	out := map[string]*Counts{}
	for _, r := range rows {
		c := out[r.RoomID]
		if c == nil {
			c = &Counts{}
			out[r.RoomID] = c
		}
		if !split || r.ThreadID == storage.ThreadMain {
			c.Room.NotificationCount += int(r.Notifications)
			c.Room.HighlightCount += int(r.Highlights)
			continue
		}
		if r.Notifications == 0 && r.Highlights == 0 {
			continue
		}
		if c.Threads == nil {
			c.Threads = map[string]*sync.UnreadNotifications{}
		}
		c.Threads[r.ThreadID] = &sync.UnreadNotifications{NotificationCount: int(r.Notifications), HighlightCount: int(r.Highlights)}
	}
	return out
}

// RegisterSync adds the push service's /sync extension: the unread counts
// of every joined room in the response, the rooms whose counts changed,
// and the m.push_rules account data (always on an initial sync, and with
// this server's current default rules whenever it is sent).
func (s *Service) RegisterSync(svc *sync.Service, memberships Memberships) {
	svc.AddExtension(&syncExtension{s: s, memberships: memberships})
}

// Memberships tells the sync extension which rooms a user is joined to.
type Memberships interface {
	UserMemberships(ctx context.Context, userID string, memberships ...string) ([]storage.Membership, error)
}

type syncExtension struct {
	s           *Service
	memberships Memberships
}

// evaluationWait bounds how long /sync waits for the evaluation of events
// it is about to return.
const evaluationWait = 2 * time.Second

// CurrentPos first waits for the evaluation of every event queued so far:
// /sync reads the event stream's position before calling it, so the counts
// of every event the response carries are then recorded, at positions up
// to the one returned. That is how a new event's counts come in the same
// response as the event.
func (x *syncExtension) CurrentPos(ctx context.Context) (int64, error) {
	x.s.WaitEvaluated(ctx, evaluationWait)
	return x.s.db.StreamPosition(ctx, storage.StreamPushCounts)
}

func (x *syncExtension) Fill(ctx context.Context, req sync.Request, from, to int64, resp *sync.Response) (bool, error) {
	user := req.Viewer.UserID
	// The counts of the events in the response must be in it: wait for
	// the evaluation of any of them CurrentPos could not wait for, not
	// having been handed over yet.
	deadline := time.Now().Add(evaluationWait)
	waited := false
	for roomID, jr := range resp.Rooms.Join {
		last := int64(0)
		for _, ev := range jr.Timeline.Events {
			if ev.Stored != nil {
				last = max(last, ev.Stored.StreamPos)
			}
		}
		if last > 0 {
			x.s.waitSeen(ctx, roomID, last, deadline)
			waited = true
		}
	}
	if waited {
		x.s.WaitEvaluated(ctx, time.Until(deadline))
	}
	if err := x.fillPushRules(ctx, req, resp); err != nil {
		return false, err
	}
	rows, err := x.s.db.UnreadCounts(ctx, user, from)
	if err != nil {
		return false, err
	}
	split := req.UnreadThreadNotifications
	counts := groupCounts(rows, split)
	incremental := req.Since != nil
	changedRooms := map[string]bool{}
	for _, r := range rows {
		if incremental && r.StreamPos > from && r.StreamPos <= to {
			changedRooms[r.RoomID] = true
		}
	}
	// Rooms whose counts changed but which nothing else brought into the
	// response: add them if the user is joined and the filter allows.
	var joined map[string]bool
	changed := false
	for roomID := range changedRooms {
		if _, ok := resp.Rooms.Join[roomID]; ok {
			changed = true
			continue
		}
		if req.RoomAllowed != nil && !req.RoomAllowed(roomID) {
			continue
		}
		if joined == nil {
			ms, err := x.memberships.UserMemberships(ctx, user, "join")
			if err != nil {
				return false, err
			}
			joined = make(map[string]bool, len(ms))
			upTo := eventsPos(resp)
			for _, m := range ms {
				if m.StreamPos <= upTo {
					joined[m.RoomID] = true
				}
			}
		}
		if joined[roomID] {
			resp.JoinedRoom(roomID)
			changed = true
		}
	}
	for roomID, jr := range resp.Rooms.Join {
		c := counts[roomID]
		un := &sync.UnreadNotifications{}
		if c != nil {
			*un = c.Room
		}
		jr.UnreadNotifications = un
		if split {
			jr.UnreadThreadNotifications = map[string]*sync.UnreadNotifications{}
			if c != nil && c.Threads != nil {
				jr.UnreadThreadNotifications = c.Threads
			}
		}
	}
	return changed, nil
}

// eventsPos is the event stream position the response covers.
func eventsPos(resp *sync.Response) int64 {
	t, err := sync.ParseToken(resp.NextBatch)
	if err != nil {
		return 1 << 62
	}
	return t.Events
}

// fillPushRules puts the user's current rules in the m.push_rules event of
// the response: on an initial sync, where clients expect it even if the
// user never changed a rule, and whenever the account data stream brings
// it, so that it always shows this server's current default rules.
func (x *syncExtension) fillPushRules(ctx context.Context, req sync.Request, resp *sync.Response) error {
	at := -1
	for i, raw := range resp.AccountData.Events {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(raw, &t) == nil && t.Type == PushRulesType {
			at = i
			break
		}
	}
	if at < 0 && (req.Since != nil || (req.AccountDataMatch != nil && !req.AccountDataMatch(PushRulesType))) {
		return nil
	}
	content, err := x.s.PushRulesEvent(ctx, req.Viewer.UserID)
	if err != nil {
		return err
	}
	ev, err := json.Marshal(struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}{PushRulesType, content})
	if err != nil {
		return err
	}
	if at >= 0 {
		resp.AccountData.Events[at] = ev
	} else {
		resp.AccountData.Events = append(resp.AccountData.Events, ev)
	}
	return nil
}

// Notification is one entry of GET /notifications.
type Notification struct {
	Actions    []json.RawMessage  `json:"actions"`
	Event      *rooms.ClientEvent `json:"event"`
	ProfileTag string             `json:"profile_tag,omitempty"`
	Read       bool               `json:"read"`
	RoomID     string             `json:"room_id"`
	TS         int64              `json:"ts"`
}

// NotificationsPage is the answer of GET /notifications.
type NotificationsPage struct {
	NextToken     string          `json:"next_token,omitempty"`
	Notifications []*Notification `json:"notifications"`
}

// Notifications lists the user's notifications, newest first, from the
// token from ("" for the newest), at most limit, only highlights when
// onlyHighlight. It returns ErrInvalid for a token it did not make.
func (s *Service) Notifications(ctx context.Context, viewer rooms.Viewer, from string, limit int, onlyHighlight bool) (*NotificationsPage, error) {
	var before int64
	if from != "" {
		p, err := strconv.ParseInt(from, 10, 64)
		if err != nil || p <= 0 {
			return nil, invalidf("from is not a token this server gave")
		}
		before = p
	}
	ns, err := s.db.PushNotifications(ctx, viewer.UserID, before, limit+1, onlyHighlight)
	if err != nil {
		return nil, err
	}
	page := &NotificationsPage{Notifications: []*Notification{}}
	if len(ns) > limit {
		ns = ns[:limit]
		page.NextToken = strconv.FormatInt(ns[len(ns)-1].StreamPos, 10)
	}
	if len(ns) == 0 {
		return page, nil
	}
	ids := make([]string, len(ns))
	roomIDs := make([]string, 0, len(ns))
	for i, n := range ns {
		ids[i] = n.EventID
		roomIDs = append(roomIDs, n.RoomID)
	}
	rows, err := s.db.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	evs, err := s.cfg.Rooms.FormatRows(ctx, rows, viewer)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*rooms.ClientEvent, len(evs))
	for _, e := range evs {
		byID[e.EventID] = e
	}
	markers, err := s.db.ReadUpTo(ctx, viewer.UserID, roomIDs)
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		ev := byID[n.EventID]
		if ev == nil {
			continue // purged meanwhile
		}
		ev.RoomID = "" // the spec's event here has no room_id
		var actions []json.RawMessage
		_ = json.Unmarshal([]byte(n.Actions), &actions)
		if actions == nil {
			actions = []json.RawMessage{}
		}
		m := markers[n.RoomID]
		read := n.StreamPos <= max(m[storage.ThreadAll], m[n.ThreadID])
		page.Notifications = append(page.Notifications, &Notification{Actions: actions, Event: ev, Read: read, RoomID: n.RoomID, TS: n.TS})
	}
	return page, nil
}
