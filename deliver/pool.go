package deliver

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// pool keeps a transport's SMTP and LMTP sessions open between messages,
// per destination (one address of one host), so that a burst of messages
// costs a few connections, EHLOs and TLS handshakes instead of one each:
// Postfix's connection cache, Exim's multiple messages per connection. At
// most max connections are open to a destination, in use and idle
// together; a delivery beyond waits for one, as long as its context lets
// it. An idle connection is reused newest first and closed (QUIT) once
// idle for idleTimeout, or once it has carried maxMessages messages.
type pool struct {
	max         int // 0 = no bound
	maxMessages int // 0 = no bound
	idleTimeout time.Duration

	mu     sync.Mutex
	dests  map[destKey]*dest
	closed bool
}

// destKey is a destination. Everything else a session depends on (the
// EHLO name, AUTH, LMTP or SMTP, implicit TLS) is the same for every
// destination of one transport, and the TLS policy is checked at reuse
// (peer.accepts), since an MX host's may differ per recipient domain.
type destKey struct{ network, addr, host string }

// dest is one destination's connections: open counts those in use, being
// dialled and idle; waiters are the deliveries waiting for one, first
// come first served. A waiter is handed an idle connection, or nil: the
// right to dial one.
type dest struct {
	open    int
	idle    []*conn // oldest first
	waiters []chan *conn
}

// hand gives c (nil: the right to dial) to the first waiting delivery;
// false when none waits. Called with p.mu held.
func (d *dest) hand(c *conn) bool {
	if len(d.waiters) == 0 {
		return false
	}
	w := d.waiters[0]
	d.waiters = d.waiters[1:]
	w <- c
	return true
}

// conn is one open session between transactions.
type conn struct {
	raw      net.Conn // closed to cut a session short
	c        *smtp.Client
	host     string               // as H= shows it
	tls      *tls.ConnectionState // nil: clear text
	owner    *peer                // whose TLS policy it was opened under
	messages int                  // transactions started on it
	timer    *time.Timer          // closes it once idle too long
	spell    int                  // counts its idle spells, for timer
}

// quit ends the session politely: QUIT, bounded by the command timeout
// and ctx, then close.
func (c *conn) quit(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	defer stop()
	c.c.Quit()
	c.c.Close()
}

// newPool returns a pool; with a zero idleTimeout it keeps no session
// and only bounds the connections.
func newPool(max, maxMessages int, idleTimeout time.Duration) *pool {
	return &pool{max: max, maxMessages: maxMessages, idleTimeout: idleTimeout, dests: make(map[destKey]*dest)}
}

// lease is one delivery's hold on a destination: one of its max
// connections, with c the connection in hand (nil until one is dialled).
// The slot stays with the lease when its connection is replaced.
type lease struct {
	p   *pool
	key destKey
	c   *conn
}

// get waits for a connection to key: an idle one (reused), or the right
// to dial a new one (lease.c nil).
func (p *pool) get(ctx context.Context, key destKey) (*lease, error) {
	l := &lease{p: p, key: key}
	p.mu.Lock()
	d := p.dests[key]
	if d == nil {
		d = &dest{}
		p.dests[key] = d
	}
	if n := len(d.idle); n > 0 {
		l.c = d.idle[n-1]
		d.idle = d.idle[:n-1]
		l.c.timer.Stop()
		p.mu.Unlock()
		return l, nil
	}
	if p.max == 0 || d.open < p.max {
		d.open++
		p.mu.Unlock()
		return l, nil
	}
	ch := make(chan *conn, 1)
	d.waiters = append(d.waiters, ch)
	p.mu.Unlock()
	select {
	case l.c = <-ch:
		return l, nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, w := range d.waiters {
			if w == ch {
				d.waiters = append(d.waiters[:i], d.waiters[i+1:]...)
				p.mu.Unlock()
				return nil, context.Cause(ctx)
			}
		}
		p.mu.Unlock()
		// Granted meanwhile: pass it on.
		c := <-ch
		(&lease{p: p, key: key, c: c}).release(c != nil)
		return nil, context.Cause(ctx)
	}
}

// release ends the lease. A healthy connection that may carry another
// message is kept (handed to a waiting delivery, or idle); any other is
// closed, QUIT first when the session is still in step (healthy).
func (l *lease) release(healthy bool) {
	c := l.c
	l.c = nil
	p := l.p
	keep := c != nil && healthy && p.idleTimeout > 0 && (p.maxMessages == 0 || c.messages < p.maxMessages)
	p.mu.Lock()
	d := p.dests[l.key]
	if keep && !p.closed {
		if d.hand(c) {
			p.mu.Unlock()
			return
		}
		d.idle = append(d.idle, c)
		// A timer per idle spell: one that fired as the connection was
		// being taken finds a later spell and leaves c alone.
		c.spell++
		key, spell := l.key, c.spell
		c.timer = time.AfterFunc(p.idleTimeout, func() { p.expire(key, c, spell) })
		p.mu.Unlock()
		return
	}
	p.free(l.key, d)
	p.mu.Unlock()
	if c == nil {
		return
	}
	if healthy {
		c.quit(context.Background())
	} else {
		c.c.Close()
	}
}

// free gives up one of d's connections: its slot goes to the first
// waiting delivery, which dials. Called with p.mu held.
func (p *pool) free(key destKey, d *dest) {
	if d.hand(nil) {
		return
	}
	d.open--
	if d.open == 0 {
		delete(p.dests, key)
	}
}

// expire closes c if it is still in its idle spell: it was not reused
// within the idle timeout.
func (p *pool) expire(key destKey, c *conn, spell int) {
	p.mu.Lock()
	d := p.dests[key]
	i := -1
	if d != nil && c.spell == spell {
		for j, ic := range d.idle {
			if ic == c {
				i = j
			}
		}
	}
	if i < 0 {
		p.mu.Unlock()
		return
	}
	d.idle = append(d.idle[:i], d.idle[i+1:]...)
	p.free(key, d)
	p.mu.Unlock()
	c.quit(context.Background())
}

// Close ends the idle sessions (QUIT, as long as ctx lets it) and makes
// the sessions in use end after their message.
func (p *pool) Close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	var idle []*conn
	for key, d := range p.dests {
		for _, c := range d.idle {
			c.timer.Stop()
			idle = append(idle, c)
			d.open--
		}
		d.idle = nil
		if d.open == 0 && len(d.waiters) == 0 {
			delete(p.dests, key)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Go(func() { c.quit(ctx) })
	}
	wg.Wait()
}
