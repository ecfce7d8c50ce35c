// Package fedclient sends requests to other homeservers: it finds them
// (discovery), signs each request with X-Matrix, enforces the federation
// policy, and decodes JSON answers or Matrix errors.
package fedclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/federation/discovery"
	"github.com/parley-chat/parley/federation/policy"
	"github.com/parley-chat/parley/federation/xmatrix"
	"github.com/parley-chat/parley/matrix/canonicaljson"
	"github.com/parley-chat/parley/matrix/id"
)

// Defaults for Config's zero values.
const (
	DefaultTimeout          = 60 * time.Second
	DefaultMaxResponseBytes = 64 << 20
)

// Config configures a Client.
type Config struct {
	// ServerName, KeyID and Key are this server's identity: requests are
	// signed as ServerName with Key.
	ServerName string
	KeyID      string
	Key        ed25519.PrivateKey
	// Resolver finds and dials destinations.
	Resolver *discovery.Resolver
	// Policy refuses denied destinations before any network traffic; nil
	// allows all.
	Policy *policy.Servers
	// Timeout bounds each request from start to the end of the response
	// body; 0 means DefaultTimeout. A shorter context deadline wins.
	Timeout time.Duration
	// MaxResponseBytes bounds a response body; 0 means
	// DefaultMaxResponseBytes (a /state answer of a large room is tens of
	// megabytes).
	MaxResponseBytes int64
}

// Client sends signed federation requests. It is safe for concurrent use
// and keeps connections to each destination alive between requests.
type Client struct {
	cfg  Config
	http *http.Client
}

// New builds a client.
func New(cfg Config) (*Client, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("fedclient: no resolver")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize || cfg.KeyID == "" || cfg.ServerName == "" {
		return nil, errors.New("fedclient: server name and signing key required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	c := &Client{cfg: cfg}
	c.http = &http.Client{
		Transport: &http.Transport{
			DialTLSContext:        c.dialTLS,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: cfg.Timeout,
			// Federation traffic goes straight to the destination; an
			// HTTPS_PROXY meant for other software must not see it.
			Proxy: nil,
		},
		Timeout: cfg.Timeout,
		// A federation API answer is never a redirect to follow: the
		// next hop would not be the authenticated destination.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Error is an error response from a remote server. Requests that got no
// response fail with other errors.
type Error struct {
	Destination string
	StatusCode  int
	// ErrCode and Message are the Matrix error's errcode and error; empty
	// when the body was not a Matrix error.
	ErrCode string
	Message string
	// RetryAfter is the server's requested wait (retry_after_ms or the
	// Retry-After header), 0 when none was given.
	RetryAfter time.Duration
	// Body is the response body (truncated to 64 KiB), for fields beyond
	// errcode and error.
	Body []byte
}

func (e *Error) Error() string {
	if e.ErrCode != "" {
		return fmt.Sprintf("%s answered %d %s: %s", e.Destination, e.StatusCode, e.ErrCode, e.Message)
	}
	return fmt.Sprintf("%s answered %d: %s", e.Destination, e.StatusCode, e.Message)
}

// Do sends a signed request to destination (a server name) and decodes the
// JSON answer into out. path is the escaped request target starting with
// /_matrix, including any query string. body is sent as JSON: nil sends
// none (an empty object for POST and PUT, which the spec requires), a
// []byte or json.RawMessage is sent as it is and must be JSON, anything
// else is encoded. out may be nil to discard the answer, a *json.RawMessage
// for the raw bytes, or any value encoding/json decodes into. A non-2xx
// answer is an *Error; a destination the policy denies wraps
// policy.ErrDenied and is refused before any network traffic.
func (c *Client) Do(ctx context.Context, destination, method, path string, body, out any) error {
	if err := c.do(ctx, destination, method, path, body, out); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		return fmt.Errorf("fedclient: %s %s%s: %w", method, destination, path, err)
	}
	return nil
}

// Stream sends a signed GET and returns the response for the caller to
// read (and close), for answers that are not JSON, such as media. A non-2xx
// answer is an *Error.
func (c *Client) Stream(ctx context.Context, destination, path string) (*http.Response, error) {
	resp, err := c.send(ctx, destination, http.MethodGet, path, nil)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, err
		}
		return nil, fmt.Errorf("fedclient: GET %s%s: %w", destination, path, err)
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, destination, method, path string, body, out any) error {
	resp, err := c.send(ctx, destination, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("reading the response: %w", err)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return fmt.Errorf("response larger than %d bytes", c.cfg.MaxResponseBytes)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *json.RawMessage:
		if !json.Valid(data) {
			return errors.New("response is not JSON")
		}
		*o = append((*o)[:0], data...)
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the response: %w", err)
		}
		return nil
	}
}

// send signs and sends a request and returns a 2xx response unread.
func (c *Client) send(ctx context.Context, destination, method, path string, body any) (*http.Response, error) {
	if _, err := id.ParseServerName(destination); err != nil {
		return nil, err
	}
	if destination == c.cfg.ServerName {
		return nil, errors.New("refusing to send a federation request to this server itself")
	}
	if err := c.cfg.Policy.Check(destination); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q does not start with /", path)
	}
	content, err := encodeBody(method, body)
	if err != nil {
		return nil, err
	}
	dest, err := c.cfg.Resolver.Resolve(ctx, destination)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+urlHost(destination)+path, bytes.NewReader(content))
	if err != nil {
		return nil, err
	}
	if content == nil {
		req.Body, req.ContentLength = nil, 0
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Host = dest.HostHeader
	// Sign exactly the request target net/http will write.
	auth, err := xmatrix.Sign(xmatrix.Request{
		Method: method, URI: req.URL.RequestURI(),
		Origin: c.cfg.ServerName, Destination: destination,
		Content: content,
	}, c.cfg.KeyID, c.cfg.Key)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("User-Agent", "Parley")

	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message would show the internal URL host
		}
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, responseError(destination, resp)
	}
	return resp, nil
}

func encodeBody(method string, body any) ([]byte, error) {
	switch b := body.(type) {
	case nil:
		if method == http.MethodPost || method == http.MethodPut {
			return []byte("{}"), nil
		}
		return nil, nil
	case json.RawMessage:
		return checkJSON(b)
	case []byte:
		return checkJSON(b)
	default:
		out, err := canonicaljson.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request body: %w", err)
		}
		return out, nil
	}
}

func checkJSON(b []byte) ([]byte, error) {
	if !json.Valid(b) {
		return nil, errors.New("request body is not JSON")
	}
	return b, nil
}

func responseError(destination string, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Destination: destination, StatusCode: resp.StatusCode, Body: data}
	var m struct {
		ErrCode      string `json:"errcode"`
		Error        string `json:"error"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	}
	if json.Unmarshal(data, &m) == nil && m.ErrCode != "" {
		e.ErrCode, e.Message = m.ErrCode, m.Error
		e.RetryAfter = time.Duration(m.RetryAfterMS) * time.Millisecond
	} else {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		e.Message = http.StatusText(resp.StatusCode)
		if msg != "" {
			e.Message += ": " + msg
		}
	}
	if e.RetryAfter == 0 {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

// urlHost turns a server name into the host of the request URL. The
// transport pools connections by URL host and hands it to dialTLS, which
// must recover the server name from it: "example.org" and "example.org:443"
// are different server names (the first may be delegated), so a name
// without a port gets port 0, which no server name can carry.
func urlHost(serverName string) string {
	if _, _, hasPort := id.ServerName(serverName).HostPort(); hasPort {
		return serverName
	}
	return serverName + ":0"
}

// serverNameFromAddr reverses urlHost on the host:port the transport dials.
func serverNameFromAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == "0" {
		return host, nil
	}
	return host + ":" + port, nil
}

func (c *Client) dialTLS(ctx context.Context, _, addr string) (net.Conn, error) {
	serverName, err := serverNameFromAddr(addr)
	if err != nil {
		return nil, err
	}
	dest, err := c.cfg.Resolver.Resolve(ctx, serverName)
	if err != nil {
		return nil, err
	}
	return c.cfg.Resolver.Dial(ctx, dest)
}
