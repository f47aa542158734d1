package rbl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"mxgate/dnsclient"
	"mxgate/event"
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
	bus *event.Bus // a DNSLookup event (Cached) per hit
}

func newCache(size int, maxTTL time.Duration, bus *event.Bus) *cache {
	return &cache{lru: expirable.NewLRU[cacheKey, cacheEntry](size, nil, maxTTL), bus: bus}
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
	cachedLookup(c.bus, k)
	return e.ans, true
}

// cachedLookup is the DNSLookup event of a question answered without
// asking the DNS.
func cachedLookup(bus *event.Bus, k cacheKey) {
	if bus.Enabled() {
		bus.Emit(event.Event{Kind: event.DNSLookup, QType: dnsclient.TypeString(k.qtype), Cached: true})
	}
}

func (c *cache) put(k cacheKey, a answer, now time.Time) {
	c.lru.Add(k, cacheEntry{ans: a, expires: now.Add(a.ttl)})
}

func (c *cache) len() int { return c.lru.Len() }

// The shared store ([state] url = Redis) holds the answers of every
// gateway behind one MX, so that a client seen by one is not looked up
// again by the next. Memory stays the first level; the shared store is
// asked on a miss, inside the flight, and told every new answer.

// sharedAnswer is an answer as kept in the shared store, as JSON.
type sharedAnswer struct {
	Addrs   []netip.Addr `json:"a,omitempty"`
	Text    string       `json:"t,omitempty"`
	Expires time.Time    `json:"e"`
}

// sharedDownFor is how long a failed shared store is left alone, so that
// lookups do not each wait for its timeout while it is down.
const sharedDownFor = 10 * time.Second

func sharedKey(k cacheKey) string {
	return "rbl:" + dnsclient.TypeString(k.qtype) + ":" + k.name
}

// fromShared is the answer another gateway stored for k; a store that
// fails is a miss.
func (c *Checker) fromShared(ctx context.Context, k cacheKey, now time.Time) (answer, bool) {
	if c.shared == nil || c.sharedDown(now) {
		return answer{}, false
	}
	b, ok, err := c.shared.Get(ctx, sharedKey(k))
	if err != nil {
		c.sharedFailed(err, now)
		return answer{}, false
	}
	var s sharedAnswer
	if !ok || json.Unmarshal(b, &s) != nil || !now.Before(s.Expires) {
		return answer{}, false
	}
	cachedLookup(c.cache.bus, k)
	return answer{addrs: s.Addrs, text: cleanText(s.Text), ttl: s.Expires.Sub(now)}, true
}

// toShared stores a new answer for the other gateways, for its TTL.
func (c *Checker) toShared(ctx context.Context, k cacheKey, a answer, now time.Time) {
	if c.shared == nil || a.ttl <= 0 || c.sharedDown(now) {
		return
	}
	b, err := json.Marshal(sharedAnswer{Addrs: a.addrs, Text: a.text, Expires: now.Add(a.ttl)})
	if err == nil {
		err = c.shared.Set(ctx, sharedKey(k), b, a.ttl)
	}
	if err != nil {
		c.sharedFailed(err, now)
	}
}

func (c *Checker) sharedDown(now time.Time) bool {
	c.panicMu.Lock()
	defer c.panicMu.Unlock()
	return now.Before(c.sharedDownUntil)
}

// sharedFailed notes a failure of the shared store and reports it to the
// paniclog, at most once per error interval: the lists still answer,
// each gateway asking for itself.
func (c *Checker) sharedFailed(err error, now time.Time) {
	c.panicMu.Lock()
	c.sharedDownUntil = now.Add(sharedDownFor)
	last, seen := c.lastPanic[sharedKeyPanic]
	quiet := seen && now.Sub(last) < c.errorInterval
	if !quiet {
		c.lastPanic[sharedKeyPanic] = now
	}
	c.panicMu.Unlock()
	if !quiet {
		c.panicf(fmt.Sprintf("DNS list cache: %v; each gateway looks up for itself until it is back", err))
	}
}

// sharedKeyPanic is the shared store's entry in lastPanic, beside the
// zones (no zone name begins with a space).
const sharedKeyPanic = " shared store"
