package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parley-chat/parley/homeserver/media"
	"github.com/parley-chat/parley/storage"
)

// Delivery to push gateways (POST /_matrix/push/v1/notify).
//
// Retries are held in memory, bounded: a failed delivery (network error,
// 5xx, 429) is retried with exponential backoff from one second up to ten
// minutes between attempts, at most maxAttempts times (about 40 minutes in
// all); other 4xx answers are final. A stop first sends what is queued
// (once each, for up to stopGrace) and drops the retries waiting; the
// notifications themselves are in the database and the unread counts the
// next push carries are current, so nothing is lost but that alert.

const (
	// gatewayWorkers send concurrently, so that one slow gateway does not
	// hold up the others.
	gatewayWorkers = 8
	// maxPending bounds deliveries queued or waiting for a retry.
	maxPending = 10000
	// maxAttempts is how often one notification is tried.
	maxAttempts = 12
	// maxBackoff bounds the wait between attempts.
	maxBackoff = 10 * time.Minute
	// gatewayTimeout bounds one request.
	gatewayTimeout = 15 * time.Second
	// maxGatewayAnswer bounds how much of an answer is read.
	maxGatewayAnswer = 64 << 10
)

// errForbiddenAddress marks a gateway at an address pushers may not reach.
var errForbiddenAddress = errors.New("push gateway address not allowed")

type gateway struct {
	s      *Service
	client *http.Client
	// baseDelay is the first retry's wait (shortened by tests).
	baseDelay time.Duration

	queue   chan *delivery
	pending atomic.Int64

	mu     gosync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	quit   chan struct{} // closed when stopping
	wg     gosync.WaitGroup
}

// delivery is one notification for one pusher.
type delivery struct {
	pusher  storage.Pusher
	url     string
	eventID string
	body    []byte
	attempt int
}

func newGateway(s *Service) *gateway {
	g := &gateway{s: s, baseDelay: time.Second, queue: make(chan *delivery, maxPending)}
	g.client = s.cfg.HTTPClient
	if g.client == nil {
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		if !s.cfg.AllowPrivateGateways {
			// Checked on the address actually connected to, after DNS
			// resolution: a user cannot make the server post to its own
			// network by naming a host that resolves there.
			dialer.Control = func(_, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil || !media.PublicAddress(ap.Addr()) {
					return fmt.Errorf("%w: %s", errForbiddenAddress, address)
				}
				return nil
			}
		}
		g.client = &http.Client{
			Transport: &http.Transport{
				Proxy:                 nil,
				DialContext:           dialer.DialContext,
				TLSHandshakeTimeout:   10 * time.Second,
				ResponseHeaderTimeout: gatewayTimeout,
				MaxIdleConnsPerHost:   4,
				IdleConnTimeout:       90 * time.Second,
			},
			Timeout: gatewayTimeout,
			// A gateway answers; it does not send us elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

func (g *gateway) start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.quit = make(chan struct{})
	for range gatewayWorkers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.run(g.ctx, g.quit)
		}()
	}
}

// stopGrace is how long a stop lets queued deliveries go out.
const stopGrace = 5 * time.Second

// stop delivers what is queued (each once, for at most stopGrace) and
// drops the retries waiting.
func (g *gateway) stop() {
	g.mu.Lock()
	cancel, quit := g.cancel, g.quit
	g.mu.Unlock()
	if quit == nil {
		cancel()
		return
	}
	close(quit)
	t := time.AfterFunc(stopGrace, cancel)
	g.wg.Wait()
	t.Stop()
	cancel()
}

func (g *gateway) run(ctx context.Context, quit <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-g.queue:
			g.pending.Add(-1)
			g.send(ctx, d, quit)
		case <-quit:
			for {
				select {
				case d := <-g.queue:
					g.pending.Add(-1)
					g.send(ctx, d, quit)
				default:
					return
				}
			}
		}
	}
}

// enqueue queues a delivery unless too many are pending.
func (g *gateway) enqueue(d *delivery) {
	if g.pending.Add(1) > maxPending {
		g.pending.Add(-1)
		g.s.log.WithField("app_id", d.pusher.AppID).Warn("push: too many deliveries pending; notification dropped")
		return
	}
	select {
	case g.queue <- d:
	default:
		g.pending.Add(-1)
	}
}

// notificationBody is the body of /_matrix/push/v1/notify.
type notificationBody struct {
	Notification notification `json:"notification"`
}

type notification struct {
	EventID           string          `json:"event_id,omitempty"`
	RoomID            string          `json:"room_id,omitempty"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	RoomAlias         string          `json:"room_alias,omitempty"`
	UserIsTarget      bool            `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio,omitempty"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            counts          `json:"counts"`
	Devices           []deviceEntry   `json:"devices"`
}

// counts are left out when zero, as the push gateway API asks.
type counts struct {
	Unread      int64 `json:"unread,omitempty"`
	MissedCalls int64 `json:"missed_calls,omitempty"`
}

type deviceEntry struct {
	AppID     string                     `json:"app_id"`
	PushKey   string                     `json:"pushkey"`
	PushKeyTS int64                      `json:"pushkey_ts,omitempty"`
	Data      map[string]json.RawMessage `json:"data,omitempty"`
	Tweaks    map[string]json.RawMessage `json:"tweaks,omitempty"`
}

// notify hands the notifying events of a batch to the users' pushers.
func (g *gateway) notify(ctx context.Context, results []result) {
	if len(results) == 0 {
		return
	}
	var users []string
	seen := map[string]bool{}
	for _, r := range results {
		for _, n := range r.notified {
			if !seen[n.userID] {
				seen[n.userID] = true
				users = append(users, n.userID)
			}
		}
	}
	ps, err := g.s.db.Pushers(ctx, users...)
	if err != nil {
		g.s.log.WithError(err).Warn("push: listing pushers")
		return
	}
	if len(ps) == 0 {
		return
	}
	byUser := map[string][]storage.Pusher{}
	var withPushers []string
	for _, p := range ps {
		if p.Kind != "http" {
			continue
		}
		if _, ok := byUser[p.UserID]; !ok {
			withPushers = append(withPushers, p.UserID)
		}
		byUser[p.UserID] = append(byUser[p.UserID], p)
	}
	totals, err := g.s.db.TotalUnread(ctx, withPushers)
	if err != nil {
		g.s.log.WithError(err).Warn("push: reading unread totals")
		totals = map[string]int64{}
	}
	for _, r := range results {
		for _, n := range r.notified {
			for _, p := range byUser[n.userID] {
				d, err := buildDelivery(r, n, p, totals[n.userID])
				if err != nil {
					g.s.log.WithError(err).WithField("app_id", p.AppID).Warn("push: unusable pusher")
					continue
				}
				g.enqueue(d)
			}
		}
	}
}

// buildDelivery makes the request body for one pusher.
func buildDelivery(r result, n evaluated, p storage.Pusher, unread int64) (*delivery, error) {
	var data map[string]json.RawMessage
	if err := json.Unmarshal([]byte(p.Data), &data); err != nil {
		return nil, err
	}
	var url, format string
	_ = json.Unmarshal(data["url"], &url)
	_ = json.Unmarshal(data["format"], &format)
	if url == "" {
		return nil, errors.New("pusher has no url")
	}
	delete(data, "url") // the gateway gets the rest of data, as given
	ev := r.job.ev
	note := notification{
		EventID: ev.EventID(),
		RoomID:  ev.RoomID(),
		Prio:    priority(ev.Type(), n.outcome),
		Counts:  counts{Unread: unread},
		Devices: []deviceEntry{{AppID: p.AppID, PushKey: p.PushKey, PushKeyTS: p.PushKeyTS, Data: data, Tweaks: n.outcome.Tweaks}},
	}
	if format != "event_id_only" {
		note.Type = ev.Type()
		note.Sender = ev.Sender()
		note.Content = ev.Content()
		note.SenderDisplayName, note.RoomName, note.RoomAlias = r.senderName, r.roomName, r.roomAlias
		if ev.Type() == "m.room.member" && ev.StateKeyEquals(n.userID) {
			note.UserIsTarget = true
		}
	}
	body, err := json.Marshal(notificationBody{Notification: note})
	if err != nil {
		return nil, err
	}
	return &delivery{pusher: p, url: url, eventID: ev.EventID(), body: body}, nil
}

// priority is "high" for what should alert at once (a sound or a
// highlight, calls, encrypted messages whose content the server cannot
// judge) and "low" for the rest, which gateways may batch.
func priority(eventType string, o *Outcome) string {
	if _, sound := o.Tweaks["sound"]; sound || o.Highlight || eventType == "m.room.encrypted" || eventType == "m.call.invite" {
		return "high"
	}
	return "low"
}

// send makes one attempt and schedules the next one when it may help
// (unless stopping).
func (g *gateway) send(ctx context.Context, d *delivery, quit <-chan struct{}) {
	log := g.s.log.WithField("app_id", d.pusher.AppID).WithField("event_id", d.eventID)
	retry, err := g.post(ctx, d)
	if err == nil || ctx.Err() != nil {
		return
	}
	d.attempt++
	if !retry || d.attempt >= maxAttempts {
		log.WithError(err).Warn("push: delivery to the push gateway failed; giving up")
		return
	}
	select {
	case <-quit:
		log.WithError(err).Warn("push: delivery to the push gateway failed while stopping; not retried")
		return
	default:
	}
	wait := g.baseDelay << (d.attempt - 1)
	if wait <= 0 || wait > maxBackoff {
		wait = maxBackoff
	}
	log.WithError(err).WithField("retry_in", wait.String()).Debug("push: delivery failed; retrying")
	if g.pending.Add(1) > maxPending {
		g.pending.Add(-1)
		log.Warn("push: too many deliveries pending; retry dropped")
		return
	}
	time.AfterFunc(wait, func() {
		g.pending.Add(-1)
		if ctx.Err() == nil {
			g.enqueue(d)
		}
	})
}

// post sends a delivery. It reports whether a failure is worth retrying.
// A successful answer's rejected pushkeys remove their pushers.
func (g *gateway) post(ctx context.Context, d *delivery) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return !errors.Is(err, errForbiddenAddress), err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxGatewayAnswer))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("push gateway answered %d", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return false, fmt.Errorf("push gateway answered %d", resp.StatusCode)
	}
	var answer struct {
		Rejected []string `json:"rejected"`
	}
	_ = json.Unmarshal(raw, &answer)
	for _, key := range answer.Rejected {
		if key != d.pusher.PushKey {
			continue
		}
		if _, err := g.s.db.DeletePusher(ctx, d.pusher.UserID, d.pusher.AppID, key); err != nil {
			g.s.log.WithError(err).Warn("push: removing a rejected pusher")
			continue
		}
		g.s.log.WithField("app_id", d.pusher.AppID).WithField("user_id", d.pusher.UserID).Info("push: the gateway rejected a pushkey; pusher removed")
	}
	return false, nil
}
