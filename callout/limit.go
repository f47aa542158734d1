package callout

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// hostLimits bounds what one MX host address gets from us: at most
// perHost probes at once, and a token bucket of rate probes per second
// (burst tokens at most), so a spam run forging one domain's senders does
// not turn into a flood of probes at its MX.
type hostLimits struct {
	perHost int
	rate    float64
	burst   float64

	mu    sync.Mutex
	hosts map[netip.Addr]*hostLimit
}

type hostLimit struct {
	sem    chan struct{}
	tokens float64
	last   time.Time
	users  int // probes holding or waiting for this entry
}

// pruneAbove is how many idle host entries are kept before idle ones with
// a full bucket are forgotten (they would behave the same anew).
const pruneAbove = 1024

func newHostLimits(perHost int, rate float64, burst int) *hostLimits {
	return &hostLimits{perHost: perHost, rate: rate, burst: float64(burst), hosts: make(map[netip.Addr]*hostLimit)}
}

// acquire waits for a token and a slot for ip; the returned func gives the
// slot back.
func (h *hostLimits) acquire(ctx context.Context, ip netip.Addr) (func(), error) {
	now := time.Now()
	h.mu.Lock()
	l := h.hosts[ip]
	if l == nil {
		if len(h.hosts) >= pruneAbove {
			h.prune(now)
		}
		l = &hostLimit{sem: make(chan struct{}, h.perHost), tokens: h.burst, last: now}
		h.hosts[ip] = l
	}
	wait := l.reserve(now, h.rate, h.burst)
	if deadline, ok := ctx.Deadline(); ok && wait > deadline.Sub(now) {
		// The token would come after the probe's deadline: say so now
		// and leave it to a probe that can use it.
		l.tokens++
		h.mu.Unlock()
		return nil, fmt.Errorf("rate limit for %s (%g/s, burst %g): next probe in %v", ip, h.rate, h.burst, wait.Round(time.Second))
	}
	l.users++
	h.mu.Unlock()
	done := func() {
		h.mu.Lock()
		l.users--
		h.mu.Unlock()
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			done()
			return nil, fmt.Errorf("rate limit for %s: waited %v of %v: %w", ip, time.Since(now).Round(time.Millisecond), wait.Round(time.Millisecond), context.Cause(ctx))
		}
	}
	select {
	case l.sem <- struct{}{}:
	default:
		select {
		case l.sem <- struct{}{}:
		case <-ctx.Done():
			done()
			return nil, fmt.Errorf("%d probes already at %s: %w", h.perHost, ip, context.Cause(ctx))
		}
	}
	return func() {
		<-l.sem
		done()
	}, nil
}

// reserve takes a token at now and says how long to wait until it is
// due; tokens go negative so that waiters queue in order.
func (l *hostLimit) reserve(now time.Time, rate, burst float64) time.Duration {
	if elapsed := now.Sub(l.last); elapsed > 0 {
		l.tokens = min(burst, l.tokens+elapsed.Seconds()*rate)
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / rate * float64(time.Second))
}

// prune forgets idle hosts whose bucket has refilled; called with h.mu held.
func (h *hostLimits) prune(now time.Time) {
	for ip, l := range h.hosts {
		if l.users == 0 && l.tokens+now.Sub(l.last).Seconds()*h.rate >= h.burst {
			delete(h.hosts, ip)
		}
	}
}
