package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/matrix/id"
)

// Cache periods for .well-known answers. The spec recommends 24 hours when
// the response has no cache headers, at most 48 hours, and errors cached
// for up to an hour with exponential back-off. The lower bound keeps a
// server that sends no-cache from being asked on every request.
const (
	wellKnownDefaultCache = 24 * time.Hour
	wellKnownMinCache     = 5 * time.Minute
	wellKnownMaxCache     = 48 * time.Hour
	// An answer that is not a valid delegation (404, bad JSON...) is
	// cached for the spec's error period.
	wellKnownInvalidCache = time.Hour
	// A failure to get any answer (timeout, refused, TLS) is retried
	// sooner, doubling with each consecutive failure up to an hour, since
	// it may be transient and meanwhile the server is reached without
	// delegation.
	wellKnownFirstBackoff = 2 * time.Minute
	wellKnownMaxBackoff   = time.Hour

	wellKnownMaxBody      = 64 << 10
	wellKnownMaxRedirects = 5
	wellKnownMaxEntries   = 10000
)

type wellKnownEntry struct {
	delegated string // "" when there is no valid delegation
	expires   time.Time
	failures  int // consecutive failures to get an answer
}

type wellKnownCache struct {
	r      *Resolver
	client *http.Client

	mu      sync.Mutex
	entries map[string]wellKnownEntry
	flight  inflight[wellKnownEntry]
}

func newWellKnownCache(r *Resolver) *wellKnownCache {
	c := &wellKnownCache{r: r, entries: map[string]wellKnownEntry{}}
	c.client = &http.Client{
		Transport: &http.Transport{
			// Every connection, redirects included, goes through the
			// policy-checking dialer with the certificate checked against
			// the host being fetched.
			DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				host, portStr, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				port, _ := strconv.Atoi(portStr)
				return r.DialTargets(ctx, []Target{{Host: host, Port: port}}, host, r.cfg.AllowPrivateAddresses)
			},
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: r.cfg.WellKnownTimeout,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= wellKnownMaxRedirects {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != "https" {
				return errors.New("redirect away from https")
			}
			return nil
		},
	}
	return c
}

// lookup returns the delegated server name for hostname, if its
// .well-known delegates validly, from the cache or by fetching it.
func (c *wellKnownCache) lookup(ctx context.Context, hostname string) (string, bool) {
	now := c.r.cfg.Now()
	c.mu.Lock()
	e, ok := c.entries[hostname]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.delegated, e.delegated != ""
	}
	prevFailures := e.failures
	fresh, err := c.flight.do(ctx, hostname, func() wellKnownEntry {
		next := c.fetch(hostname, prevFailures)
		c.store(hostname, next)
		return next
	})
	if err != nil {
		return "", false
	}
	return fresh.delegated, fresh.delegated != ""
}

func (c *wellKnownCache) store(hostname string, e wellKnownEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= wellKnownMaxEntries {
		now := c.r.cfg.Now()
		for k, v := range c.entries {
			if now.After(v.expires) {
				delete(c.entries, k)
			}
		}
		// Still full of live entries: forget some; they are refetched
		// when needed.
		for k := range c.entries {
			if len(c.entries) < wellKnownMaxEntries/2 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[hostname] = e
}

// fetch asks hostname for its .well-known and decides how long the answer
// holds. prevFailures counts the failures before this attempt.
func (c *wellKnownCache) fetch(hostname string, prevFailures int) wellKnownEntry {
	// Detached from any one caller: the result is shared and cached.
	ctx, cancel := context.WithTimeout(context.Background(), c.r.cfg.WellKnownTimeout)
	defer cancel()
	log := c.r.cfg.Log.WithField("server", hostname)
	now := c.r.cfg.Now()

	host := hostname
	if c.r.cfg.WellKnownPort != 443 {
		host = net.JoinHostPort(hostname, strconv.Itoa(c.r.cfg.WellKnownPort))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/matrix/server", nil)
	if err != nil {
		return wellKnownEntry{expires: now.Add(wellKnownInvalidCache)}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		backoff := wellKnownFirstBackoff << min(prevFailures, 10)
		backoff = min(backoff, wellKnownMaxBackoff)
		log.WithError(err).WithField("retry_in", backoff.String()).Debug(".well-known/matrix/server unreachable")
		return wellKnownEntry{expires: now.Add(backoff), failures: prevFailures + 1}
	}
	defer resp.Body.Close()
	delegated, err := parseWellKnown(resp)
	if err != nil {
		log.WithError(err).Debug("no valid .well-known/matrix/server")
		return wellKnownEntry{expires: now.Add(wellKnownInvalidCache)}
	}
	ttl := cachePeriod(resp.Header, now)
	log.WithFields(map[string]any{"delegated": delegated, "cache": ttl.String()}).Debug(".well-known/matrix/server delegates")
	return wellKnownEntry{delegated: delegated, expires: now.Add(ttl)}
}

func parseWellKnown(resp *http.Response) (string, error) {
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxBody+1))
	if err != nil {
		return "", err
	}
	if len(body) > wellKnownMaxBody {
		return "", errors.New("response too large")
	}
	// The Content-Type is not checked: the spec says to assume JSON.
	var doc struct {
		Server *string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	if doc.Server == nil {
		return "", errors.New("no m.server")
	}
	if _, err := id.ParseServerName(*doc.Server); err != nil {
		return "", fmt.Errorf("m.server: %w", err)
	}
	return *doc.Server, nil
}

// cachePeriod reads Cache-Control max-age (or Expires) within the bounds.
func cachePeriod(h http.Header, now time.Time) time.Duration {
	d, found := wellKnownDefaultCache, false
	for _, cc := range h.Values("Cache-Control") {
		for dir := range strings.SplitSeq(cc, ",") {
			dir = strings.ToLower(strings.TrimSpace(dir))
			switch {
			case dir == "no-store" || dir == "no-cache":
				return wellKnownMinCache
			case strings.HasPrefix(dir, "max-age="):
				if n, err := strconv.ParseInt(strings.Trim(dir[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
					d, found = time.Duration(min(n, int64(wellKnownMaxCache/time.Second)))*time.Second, true
				}
			}
		}
	}
	if !found {
		if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
			d = exp.Sub(now)
		}
	}
	return max(wellKnownMinCache, min(d, wellKnownMaxCache))
}
