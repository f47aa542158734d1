package rbl

import (
	"net/netip"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// answer is what one DNS question (a name and a type) yielded, as cached.
type answer struct {
	addrs []netip.Addr // A records (A questions)
	text  string       // TXT records joined (TXT questions)
	ttl   time.Duration
}

// cacheKey identifies a question; the type matters because A and TXT of one
// name are fetched, cached and expire separately.
type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	ans     answer
	expires time.Time
}

// cache is a bounded LRU of answers shared by all sessions, each answer
// kept for its own (clamped) TTL. The LRU's own expiry is the maximum TTL,
// so it drops every entry no later than its TTL says and an expired one is
// also dropped when read.
type cache struct {
	lru *expirable.LRU[cacheKey, cacheEntry]
}

func newCache(size int, maxTTL time.Duration) *cache {
	return &cache{lru: expirable.NewLRU[cacheKey, cacheEntry](size, nil, maxTTL)}
}

func (c *cache) get(k cacheKey, now time.Time) (answer, bool) {
	e, ok := c.lru.Get(k)
	if !ok {
		return answer{}, false
	}
	if !now.Before(e.expires) {
		c.lru.Remove(k)
		return answer{}, false
	}
	return e.ans, true
}

func (c *cache) put(k cacheKey, a answer, now time.Time) {
	c.lru.Add(k, cacheEntry{ans: a, expires: now.Add(a.ttl)})
}

func (c *cache) len() int { return c.lru.Len() }
