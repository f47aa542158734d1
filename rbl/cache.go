package rbl

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
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
	key     cacheKey
	ans     answer
	expires time.Time
}

// cache is a bounded LRU of answers, shared by all sessions.
type cache struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *cacheEntry, most recently used first
	items map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{size: size, order: list.New(), items: make(map[cacheKey]*list.Element, size)}
}

func (c *cache) get(k cacheKey, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return answer{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return answer{}, false
	}
	c.order.MoveToFront(el)
	return e.ans, true
}

func (c *cache) put(k cacheKey, a answer, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: k, ans: a, expires: now.Add(a.ttl)}
	if el, ok := c.items[k]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.items[k] = c.order.PushFront(e)
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// call is one DNS question in flight; every session asking the same
// question meanwhile waits for it instead of sending its own.
type call struct {
	done chan struct{} // closed once ans and err are set
	ans  answer
	err  error
}
