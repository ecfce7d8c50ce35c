// Package ratelimit is a per-key token-bucket rate limiter: each key (a
// client address, a user ID) gets a bucket of Burst tokens that refills at
// PerSecond tokens per second, and every request takes one token.
//
// Buckets live in memory. That is enough for rate limiting: a restart
// forgets them, which at worst grants one extra burst.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// maxBuckets bounds memory under a flood of distinct keys. Full buckets are
// forgotten first; when every bucket is in use, an arbitrary one is evicted
// to make room, so the limiter never grows without bound.
const maxBuckets = 100_000

// pruneEvery is how often buckets that have refilled are dropped: a full
// bucket behaves exactly like a missing one.
const pruneEvery = time.Minute

// Limiter limits requests per key. The zero value is not usable; build one
// with New. A nil *Limiter allows everything, so callers need not check
// whether a limit is configured.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

// New returns a limiter whose buckets hold burst tokens and refill at
// perSecond tokens per second. A burst of 0 (or less) returns nil: no limit.
func New(perSecond float64, burst int) *Limiter {
	if burst <= 0 || perSecond <= 0 {
		return nil
	}
	return &Limiter{
		rate:    perSecond,
		burst:   float64(burst),
		now:     time.Now,
		buckets: make(map[string]*bucket),
	}
}

// SetClock replaces the clock, for tests.
func (l *Limiter) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
	l.lastPrune = now()
}

// Allow takes a token from key's bucket. When the bucket is empty it returns
// false and how long to wait until a token is available; the refused
// request does not take a token, so retrying after that wait succeeds.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastPrune) >= pruneEvery {
		l.prune(now)
	}
	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
			// Every tracked key is busy. Refusing new keys would let a flood
			// lock everyone else out; evicting one at random (map order)
			// keeps limiting the newcomer at the cost of resetting one key.
			for k := range l.buckets {
				if len(l.buckets) < maxBuckets {
					break
				}
				delete(l.buckets, k)
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
	return false, wait
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
	}
	b.at = now
}

// prune forgets buckets that have refilled completely.
func (l *Limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.lastPrune = now
}

// Len is the number of keys currently tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
