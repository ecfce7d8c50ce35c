package users

import (
	"sync"
	"time"
)

// Every request carries an access token, so validated tokens are cached in
// memory: a hit costs a map look-up instead of a database query.
//
// Logging out, deleting a device, changing the password and deactivating
// invalidate the cache of this process at once. Another process sharing
// the database would not hear of it, so entries also expire after
// tokenCacheTTL: that bounds how long a token revoked elsewhere keeps
// working once several processes serve the client API.
const (
	tokenCacheTTL = time.Minute
	// tokenCacheMax bounds memory; past it an arbitrary entry is evicted.
	tokenCacheMax = 100_000
	// touchEvery is how often a device's last-seen time is written.
	touchEvery = 5 * time.Minute
)

type tokenEntry struct {
	dev       Device
	expires   time.Time
	lastTouch time.Time
}

type tokenCache struct {
	mu      sync.Mutex
	entries map[[32]byte]*tokenEntry
	// byUser indexes entries by localpart for invalidation.
	byUser map[string]map[[32]byte]struct{}
	// gen counts invalidations. A look-up that missed reads it before
	// querying the database and caches its result only if no invalidation
	// happened meanwhile, so a token revoked during the query is never
	// cached as valid.
	gen uint64
}

func newTokenCache() *tokenCache {
	return &tokenCache{entries: make(map[[32]byte]*tokenEntry), byUser: make(map[string]map[[32]byte]struct{})}
}

// get returns the cached device for a token hash, and whether its last-seen
// time is due to be written (it is then marked written).
func (c *tokenCache) get(hash [32]byte, now time.Time) (dev Device, touch, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok {
		return Device{}, false, false
	}
	if now.After(e.expires) {
		c.remove(hash, e)
		return Device{}, false, false
	}
	if now.Sub(e.lastTouch) >= touchEvery {
		e.lastTouch = now
		touch = true
	}
	return e.dev, touch, true
}

func (c *tokenCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches a device looked up in the database, unless an invalidation
// happened since gen was read.
func (c *tokenCache) put(hash [32]byte, dev Device, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.entries) >= tokenCacheMax {
		for h, e := range c.entries {
			c.remove(h, e)
			break
		}
	}
	c.entries[hash] = &tokenEntry{dev: dev, expires: now.Add(tokenCacheTTL), lastTouch: now}
	u := c.byUser[dev.Localpart]
	if u == nil {
		u = make(map[[32]byte]struct{})
		c.byUser[dev.Localpart] = u
	}
	u[hash] = struct{}{}
}

func (c *tokenCache) remove(hash [32]byte, e *tokenEntry) {
	delete(c.entries, hash)
	if u := c.byUser[e.dev.Localpart]; u != nil {
		delete(u, hash)
		if len(u) == 0 {
			delete(c.byUser, e.dev.Localpart)
		}
	}
}

// invalidateDevices forgets the tokens of some devices of a user.
func (c *tokenCache) invalidateDevices(localpart string, deviceIDs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h := range c.byUser[localpart] {
		e := c.entries[h]
		for _, d := range deviceIDs {
			if e.dev.DeviceID == d {
				c.remove(h, e)
				break
			}
		}
	}
}

// invalidateUser forgets every token of a user.
func (c *tokenCache) invalidateUser(localpart string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h := range c.byUser[localpart] {
		c.remove(h, c.entries[h])
	}
}

// len is the number of cached tokens.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
