package hints

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// shareQueue bounds the records waiting to go to the shared store: when
// it is slow or down, what does not fit is dropped (another gateway then
// asks once more), never waited for.
const shareQueue = 1024

// downFor is how long Fill leaves a failed shared store alone: while it is
// down, lookups do not each wait for its timeout first.
const downFor = 10 * time.Second

// logEvery bounds the lines a shared store that is down costs: one a
// minute, not one a lookup.
const logEvery = time.Minute

// sharer writes records to Options.Shared behind the callers, and reports
// the store's failures, few of them.
type sharer struct {
	q       chan []Entry
	mu      sync.Mutex
	closed  bool
	stopped chan struct{}
	lastLog time.Time
	down    time.Time // Fill skips the store until then
}

func (c *cache) startSharer() {
	c.sh = &sharer{q: make(chan []Entry, shareQueue), stopped: make(chan struct{})}
	go func() {
		defer close(c.sh.stopped)
		for entries := range c.sh.q {
			for _, e := range entries {
				c.put(e)
			}
		}
	}()
}

// put stores one record in the shared store, under Prefix, for as long
// as it lives. The store's own timeout bounds the call.
func (c *cache) put(e Entry) {
	ttl := time.Until(e.Rec.Expires)
	if ttl <= 0 {
		return
	}
	b, err := json.Marshal(e.Rec)
	if err == nil {
		err = c.o.Shared.Set(context.Background(), c.o.Prefix+e.Key, b, ttl)
	}
	if err != nil {
		c.unavailable(err)
	}
}

// share queues entries for the shared store; it never waits.
func (c *cache) share(entries []Entry) {
	if c.sh == nil || len(entries) == 0 {
		return
	}
	c.sh.mu.Lock()
	defer c.sh.mu.Unlock()
	if c.sh.closed {
		return
	}
	select {
	case c.sh.q <- entries:
	default:
	}
}

// stopSharer writes what is queued and stops the writer.
func (c *cache) stopSharer() {
	if c.sh == nil {
		return
	}
	c.sh.mu.Lock()
	if c.sh.closed {
		c.sh.mu.Unlock()
		return
	}
	c.sh.closed = true
	close(c.sh.q)
	c.sh.mu.Unlock()
	<-c.sh.stopped
}

// unavailable logs a failure of the shared store, at most once a minute:
// it costs only lookups, which the callers then make themselves.
func (c *cache) unavailable(err error) {
	c.sh.mu.Lock()
	now := time.Now()
	c.sh.down = now.Add(downFor)
	quiet := now.Sub(c.sh.lastLog) < logEvery
	if !quiet {
		c.sh.lastLog = now
	}
	c.sh.mu.Unlock()
	if !quiet {
		c.o.Log(fmt.Sprintf("%s cache: shared store: %v (answers looked up here until it is back)", c.o.Bucket, err))
	}
}

// Fill brings the records of keys that another gateway stored in the
// shared store into memory, so that Get finds them; without a shared
// store it does nothing. It is called before the caller takes the lock it
// orders Get under, since it waits for the network: a store that fails
// or is slow (bounded by its timeout) is a cache miss, and is left alone
// for a few seconds.
func (h *Cache) Fill(ctx context.Context, keys ...string) {
	c := h.cache
	if c.sh == nil {
		return
	}
	now := time.Now()
	c.sh.mu.Lock()
	down := now.Before(c.sh.down)
	c.sh.mu.Unlock()
	if down {
		return
	}
	var got []Entry
	for _, k := range keys {
		if r, ok := c.lru.Peek(k); ok && now.Before(r.Expires) {
			continue
		}
		b, ok, err := c.o.Shared.Get(ctx, c.o.Prefix+k)
		if err != nil {
			c.unavailable(err)
			return
		}
		if !ok {
			continue
		}
		r, err := DecodeRecord(b, c.o.MaxVerdict)
		if err != nil || !now.Before(r.Expires) {
			continue
		}
		got = append(got, Entry{Key: k, Rec: r})
	}
	for _, e := range got {
		c.lru.Add(e.Key, e.Rec)
	}
	c.persist(got, c.takeEvicted())
}
