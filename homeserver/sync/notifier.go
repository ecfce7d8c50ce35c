// Package sync assembles /sync responses from stream positions and wakes
// waiting long-polls when something arrives for their user.
package sync

import (
	gosync "sync"

	"github.com/parley-chat/parley/homeserver/stream"
)

// Notifier wakes the /sync requests waiting for a user. A writer reports
// the users its events concern together with the stream position they were
// written at; since writers of different rooms finish out of order, a
// wake-up is held back until every position up to it is readable, and
// released by whichever writer moves the readable position past it.
type Notifier struct {
	positions *stream.Positions

	mu      gosync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	pending []pendingWake
	closed  bool
}

type pendingWake struct {
	pos   int64
	users []string
}

// NewNotifier returns a notifier for the event stream's positions.
func NewNotifier(positions *stream.Positions) *Notifier {
	return &Notifier{positions: positions, waiters: map[string]map[chan struct{}]struct{}{}}
}

// Wait registers interest in the user's next wake-up. Register before
// reading, so that nothing written between the read and the wait is
// missed; cancel when done.
func (n *Notifier) Wait(userID string) (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{})
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		close(c)
		return c, func() {}
	}
	if n.waiters[userID] == nil {
		n.waiters[userID] = map[chan struct{}]struct{}{}
	}
	n.waiters[userID][c] = struct{}{}
	n.mu.Unlock()
	return c, func() {
		n.mu.Lock()
		if _, ok := n.waiters[userID][c]; ok {
			delete(n.waiters[userID], c)
			if len(n.waiters[userID]) == 0 {
				delete(n.waiters, userID)
			}
		}
		n.mu.Unlock()
	}
}

// OnNewEvents is called after events up to pos were committed for users.
func (n *Notifier) OnNewEvents(pos int64, userIDs []string) {
	current := n.positions.Current()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pending = append(n.pending, pendingWake{pos: pos, users: userIDs})
	kept := n.pending[:0]
	for _, p := range n.pending {
		if p.pos <= current {
			n.wakeLocked(p.users)
		} else {
			kept = append(kept, p)
		}
	}
	n.pending = kept
}

// Wake wakes users at once, for streams that have no ordering concern
// (account data, to-device, typing, ...).
func (n *Notifier) Wake(userIDs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wakeLocked(userIDs)
}

func (n *Notifier) wakeLocked(userIDs []string) {
	for _, u := range userIDs {
		for c := range n.waiters[u] {
			close(c)
		}
		delete(n.waiters, u)
	}
}

// Close wakes every waiting /sync and makes later waits return at once, so
// that long-polls answer promptly when the server shuts down instead of
// holding the shutdown until their timeouts.
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for u, set := range n.waiters {
		for c := range set {
			close(c)
		}
		delete(n.waiters, u)
	}
}

// Closed reports whether Close was called.
func (n *Notifier) Closed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}
