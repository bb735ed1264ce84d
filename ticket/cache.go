package ticket

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Cache limits.
const (
	DefaultCacheSize   = 10_000
	maxCachedTicketLen = 1024 // full tickets are ~100-500 bytes; longer ones are not remembered
)

// Cache remembers full tickets whose signature verified, so that proxyd pays a map lookup
// instead of a signature verification per request; see the package comment for its
// invariants. It is safe for concurrent use.
type Cache struct {
	size int

	mu  sync.RWMutex
	v   *Verifier
	gen uint64                // keys generation the entries were verified at
	m   map[string]cacheEntry // by ticket string

	misses atomic.Uint64 // see CacheStats
}

// CacheStats are a Cache's counters since NewCache. Hits are not counted here, as an atomic add
// on the hit path costs more than the lookup when cores contend (see tokenshadow's counters):
// VerifyUserHit tells the caller.
type CacheStats struct {
	Misses uint64 // VerifyUser checked a signature
}

// Stats returns the cache counters.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Misses: c.misses.Load()}
}

type cacheEntry struct {
	prefix string
	userid string
	issued int64
}

// NewCache returns an empty cache verifying with v, holding at most size entries
// (DefaultCacheSize when max <= 0).
func NewCache(v *Verifier, size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{size: size, v: v, m: make(map[string]cacheEntry)}
}

// SetVerifier replaces the verifier, for a new authkey.pub, and drops every entry.
// Call it when the keys generation changes, once the new public key is loaded.
func (c *Cache) SetVerifier(v *Verifier) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v = v
	clear(c.m)
}

// VerifyUser is Verifier.VerifyUser through the cache. keysGen is the current generation of
// the auth keys (from the shared generation counters): entries verified at another generation
// are dropped, never used. The time window is checked against now on every call.
func (c *Cache) VerifyUser(ticket, prefix string, keysGen uint64, now time.Time) (userid string, issued time.Time, err error) {
	userid, issued, _, err = c.VerifyUserHit(ticket, prefix, keysGen, now)
	return userid, issued, err
}

// VerifyUserHit is VerifyUser, also reporting whether the signature check was answered from
// the cache (a hit, whatever the time window then says), for the caller to count.
func (c *Cache) VerifyUserHit(ticket, prefix string, keysGen uint64, now time.Time) (userid string, issued time.Time, hit bool, err error) {
	c.mu.RLock()
	v, gen := c.v, c.gen
	e, hit := c.m[ticket]
	c.mu.RUnlock()
	if gen != keysGen {
		c.reset(keysGen)
		hit = false
	}
	if hit && e.prefix == prefix {
		if err := checkWindow("verifying ticket", e.issued, FullLifetime, FullMaxFuture, now); err != nil {
			return "", time.Time{}, true, err
		}
		return e.userid, time.Unix(e.issued, 0), true, nil
	}
	c.misses.Add(1)
	userid, issued, err = v.VerifyUser(ticket, prefix, now)
	if err != nil {
		return "", time.Time{}, false, err
	}
	if len(ticket) <= maxCachedTicketLen {
		// Clones: ticket and userid may point into a larger request header.
		c.store(v, keysGen, strings.Clone(ticket), cacheEntry{
			prefix: strings.Clone(prefix), userid: strings.Clone(userid), issued: issued.Unix(),
		})
	}
	return userid, issued, false, nil
}

// reset drops every entry unless they already are of generation gen.
func (c *Cache) reset(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		clear(c.m)
		c.gen = gen
	}
}

// store remembers a ticket verified by v at generation gen, unless the verifier was replaced
// or the generation moved on meanwhile. A full cache is emptied first.
func (c *Cache) store(v *Verifier, gen uint64, ticket string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v != v || c.gen != gen {
		return
	}
	if len(c.m) >= c.size {
		clear(c.m)
	}
	c.m[ticket] = e
}

// len returns the number of entries.
func (c *Cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
