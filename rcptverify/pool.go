package rcptverify

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// pool keeps a store's open connections between lookups, so that a
// thousand RCPTs cost a few connections, not a thousand: at most max in
// use at once (lookups beyond wait), the idle ones reused newest first
// and closed once idle past idleTimeout.
type pool[C io.Closer] struct {
	dial        func(ctx context.Context) (C, error)
	idleTimeout time.Duration
	slots       chan struct{}

	mu     sync.Mutex
	idle   []idleConn[C] // oldest first
	closed bool
}

type idleConn[C io.Closer] struct {
	c     C
	since time.Time
}

func newPool[C io.Closer](max int, idleTimeout time.Duration, dial func(context.Context) (C, error)) *pool[C] {
	return &pool[C]{dial: dial, idleTimeout: idleTimeout, slots: make(chan struct{}, max)}
}

// get waits for a slot and returns an idle connection (reused) or a new
// one. Every get that succeeds is ended by one put.
func (p *pool[C]) get(ctx context.Context) (c C, reused bool, err error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return c, false, fmt.Errorf("%d lookups already at the store: %w", cap(p.slots), context.Cause(ctx))
	}
	if c, ok := p.take(time.Now()); ok {
		return c, true, nil
	}
	c, err = p.dial(ctx)
	if err != nil {
		<-p.slots
		return c, false, err
	}
	return c, false, nil
}

// take pops the newest idle connection that is still fresh.
func (p *pool[C]) take(now time.Time) (C, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	var zero C
	if len(p.idle) == 0 {
		return zero, false
	}
	ic := p.idle[len(p.idle)-1]
	p.idle = p.idle[:len(p.idle)-1]
	return ic.c, true
}

// put gives back the slot of a get; c is kept for the next lookup when
// ok, closed otherwise.
func (p *pool[C]) put(c C, ok bool) {
	p.mu.Lock()
	if ok && !p.closed {
		p.idle = append(p.idle, idleConn[C]{c: c, since: time.Now()})
		p.mu.Unlock()
	} else {
		p.mu.Unlock()
		c.Close()
	}
	<-p.slots
}

// sweep closes the connections idle past the timeout.
func (p *pool[C]) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
}

// expire closes the stale idle connections; called with p.mu held.
func (p *pool[C]) expire(now time.Time) {
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].since) >= p.idleTimeout {
		p.idle[n].c.Close()
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
}

// close closes the idle connections; those in use are closed by put.
func (p *pool[C]) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, ic := range p.idle {
		ic.c.Close()
	}
	p.idle = nil
}
