package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// client is one Matrix user (or, before registration, an anonymous caller)
// speaking the plain client-server API. It deliberately knows nothing of
// Parley so that the numbers it produces are comparable across servers.
type client struct {
	hc      *http.Client
	base    string // homeserver URL without a trailing slash
	userID  string
	token   string
	limited *atomic.Int64 // 429 M_LIMIT_EXCEEDED responses, shared by all clients of a run
}

// timing is when one HTTP exchange started and when its response body had
// been read in full.
type timing struct{ start, end time.Time }

// httpError is a non-2xx response, usually carrying a Matrix error body.
type httpError struct {
	Status       int    `json:"-"`
	ErrCode      string `json:"errcode"`
	Message      string `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms"`
	body         []byte
}

func (e *httpError) Error() string {
	if e.ErrCode == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, truncate(string(e.body), 200))
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.ErrCode, e.Message)
}

// newHTTPClient returns a client whose pool keeps a connection per sender
// alive: the default of two idle connections per host would make most
// requests of a concurrent run pay for a new TCP handshake and measure that
// instead of the server.
func newHTTPClient(conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0
	tr.MaxIdleConnsPerHost = conns
	// Longer than the 30s /sync long-poll, so that only a stuck server trips it.
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// do makes one API call: in (if not nil) is sent as JSON, a 2xx body is
// decoded into out (if not nil), anything else is returned as *httpError.
// A 429 M_LIMIT_EXCEEDED is counted, slept off and retried, because a
// rate-limited request is the server asking for patience, not a failure.
// The timing is that of the last attempt, the one that did the work.
func (c *client) do(ctx context.Context, method, path string, query url.Values, in, out any) (timing, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return timing{}, err
		}
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for {
		t, err := c.once(ctx, method, u, body, out)
		var he *httpError
		if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests {
			return t, err
		}
		c.limited.Add(1)
		wait := time.Duration(he.RetryAfterMS) * time.Millisecond
		if wait <= 0 {
			// No hint (or an old server): a short pause still relieves it.
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (c *client) once(ctx context.Context, method, u string, body []byte, out any) (timing, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return timing{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	t := timing{start: time.Now()}
	resp, err := c.hc.Do(req)
	if err != nil {
		return t, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	t.end = time.Now()
	if err != nil {
		return t, err
	}
	if resp.StatusCode/100 != 2 {
		he := &httpError{Status: resp.StatusCode, body: data}
		_ = json.Unmarshal(data, he) // a non-JSON error page still has a status
		he.Status = resp.StatusCode
		return t, he
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return t, fmt.Errorf("%s %s: decoding response: %w", req.Method, req.URL.Path, err)
		}
	}
	return t, nil
}

// errorKey groups an error for the report: the status and errcode for HTTP
// errors, a coarse class for network errors (whose messages embed ephemeral
// ports and would otherwise never group).
func errorKey(err error) string {
	var he *httpError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		if he.ErrCode != "" {
			return fmt.Sprintf("%d %s", he.Status, he.ErrCode)
		}
		return fmt.Sprintf("%d", he.Status)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	case errors.As(err, &ne) && ne.Timeout():
		return "network: timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "network: connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "network: connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "network: connection closed"
	default:
		return "other: " + truncate(err.Error(), 60)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// session is what a successful registration or login hands back.
type session struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

const deviceName = "parley-load"

// registerDummy registers through the User-Interactive Authentication flow
// that open registration offers: the first request (no auth) is answered
// 401 with a session ID, the second completes the m.login.dummy stage.
func (c *client) registerDummy(ctx context.Context, user, password string) (session, error) {
	req := map[string]any{
		"username":                    user,
		"password":                    password,
		"initial_device_display_name": deviceName,
	}
	var s session
	q := url.Values{"kind": {"user"}}
	_, err := c.do(ctx, http.MethodPost, "/_matrix/client/v3/register", q, req, &s)
	if err == nil {
		return s, nil // a server that needs no auth at all
	}
	var he *httpError
	if errors.As(err, &he) && he.Status == http.StatusForbidden {
		return s, fmt.Errorf("%w (if open registration is off, try -registration shared-secret)", err)
	}
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		return s, err
	}
	var uia struct {
		Session string `json:"session"`
		Flows   []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
	}
	if err := json.Unmarshal(he.body, &uia); err != nil {
		return s, fmt.Errorf("registration: unreadable 401 body: %w", err)
	}
	if !offersDummy(uia.Flows) {
		return s, fmt.Errorf("registration: the server offers no m.login.dummy flow (open registration disabled?); try -registration shared-secret")
	}
	req["auth"] = map[string]string{"type": "m.login.dummy", "session": uia.Session}
	_, err = c.do(ctx, http.MethodPost, "/_matrix/client/v3/register", q, req, &s)
	return s, err
}

func offersDummy(flows []struct {
	Stages []string `json:"stages"`
}) bool {
	for _, f := range flows {
		if len(f.Stages) == 1 && f.Stages[0] == "m.login.dummy" {
			return true
		}
	}
	return false
}

// registerSharedSecret uses the admin registration API that Synapse
// introduced and other servers copied, which works with open registration
// switched off: fetch a nonce, then prove knowledge of the shared secret
// with an HMAC over the request.
func (c *client) registerSharedSecret(ctx context.Context, secret, user, password string) (session, error) {
	var n struct {
		Nonce string `json:"nonce"`
	}
	var s session
	if _, err := c.do(ctx, http.MethodGet, "/_synapse/admin/v1/register", nil, nil, &n); err != nil {
		return s, fmt.Errorf("fetching registration nonce: %w", err)
	}
	req := map[string]any{
		"nonce":    n.Nonce,
		"username": user,
		"password": password,
		"admin":    false,
		"mac":      registrationMAC(secret, n.Nonce, user, password, false),
	}
	_, err := c.do(ctx, http.MethodPost, "/_synapse/admin/v1/register", nil, req, &s)
	return s, err
}

// registrationMAC is the hex HMAC-SHA1, keyed with the shared secret, of
// nonce, user, password and "admin" or "notadmin", joined by NUL bytes.
func registrationMAC(secret, nonce, user, password string, admin bool) string {
	role := "notadmin"
	if admin {
		role = "admin"
	}
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(strings.Join([]string{nonce, user, password, role}, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}

// login logs in with a password, for servers whose registration response
// carries no access token.
func (c *client) login(ctx context.Context, user, password string) (session, error) {
	var s session
	_, err := c.do(ctx, http.MethodPost, "/_matrix/client/v3/login", nil, map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": user},
		"password":                    password,
		"initial_device_display_name": deviceName,
	}, &s)
	return s, err
}

// createRoom creates a public room and returns its ID.
func (c *client) createRoom(ctx context.Context, name string) (string, error) {
	var r struct {
		RoomID string `json:"room_id"`
	}
	_, err := c.do(ctx, http.MethodPost, "/_matrix/client/v3/createRoom", nil,
		map[string]any{"preset": "public_chat", "name": name}, &r)
	if err == nil && r.RoomID == "" {
		err = errors.New("createRoom: response has no room_id")
	}
	return r.RoomID, err
}

// join joins the room.
func (c *client) join(ctx context.Context, roomID string) error {
	_, err := c.do(ctx, http.MethodPost, "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/join", nil, struct{}{}, nil)
	return err
}

// send sends one m.room.message event.
func (c *client) send(ctx context.Context, roomID, txnID string, content any) (timing, error) {
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/" + url.PathEscape(txnID)
	var r struct {
		EventID string `json:"event_id"`
	}
	t, err := c.do(ctx, http.MethodPut, path, nil, content, &r)
	if err == nil && r.EventID == "" {
		err = errors.New("send: response has no event_id")
	}
	return t, err
}

// syncResponse is the part of a /sync response the watcher reads.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Limited bool `json:"limited"`
				Events  []struct {
					Type    string          `json:"type"`
					Content json.RawMessage `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// sync makes one /sync call; since == "" is an initial sync.
func (c *client) sync(ctx context.Context, since, filter string, timeout time.Duration) (*syncResponse, timing, error) {
	q := url.Values{"filter": {filter}, "timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if since != "" {
		q.Set("since", since)
	}
	var r syncResponse
	t, err := c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync", q, nil, &r)
	return &r, t, err
}
