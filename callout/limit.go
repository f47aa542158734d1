package callout

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// hostLimits bounds what one MX host address gets from us: at most
// perHost probes at once, and a token bucket of rate probes per second
// (burst tokens at most), so a spam run forging one domain's senders does
// not turn into a flood of probes at its MX.
type hostLimits struct {
	perHost int        // 0: no limit
	rate    rate.Limit // rate.Inf: no limit
	burst   int

	mu    sync.Mutex
	hosts map[netip.Addr]*hostLimit
}

type hostLimit struct {
	sem   *semaphore.Weighted // nil: no limit
	lim   *rate.Limiter
	users int // probes holding or waiting for this entry
}

// pruneAbove is how many idle host entries are kept before idle ones with
// a full bucket are forgotten (they would behave the same anew).
const pruneAbove = 1024

// newHostLimits allows perHost probes at once (0: any number) at perSecond
// (0: no rate limit) after a burst.
func newHostLimits(perHost int, perSecond float64, burst int) *hostLimits {
	r := rate.Limit(perSecond)
	if perSecond <= 0 {
		r = rate.Inf
	}
	return &hostLimits{perHost: perHost, rate: r, burst: burst, hosts: make(map[netip.Addr]*hostLimit)}
}

func (h *hostLimits) newHostLimit() *hostLimit {
	l := &hostLimit{lim: rate.NewLimiter(h.rate, h.burst)}
	if h.perHost > 0 {
		l.sem = semaphore.NewWeighted(int64(h.perHost))
	}
	return l
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
		l = h.newHostLimit()
		h.hosts[ip] = l
	}
	r := l.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if deadline, ok := ctx.Deadline(); !r.OK() || ok && wait > deadline.Sub(now) {
		// The token would come after the probe's deadline: say so now
		// and leave it to a probe that can use it.
		r.CancelAt(now)
		h.mu.Unlock()
		return nil, fmt.Errorf("rate limit for %s (%g/s, burst %d): next probe in %v", ip, float64(h.rate), h.burst, ceilSecond(wait))
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
	if l.sem != nil && !l.sem.TryAcquire(1) {
		if err := l.sem.Acquire(ctx, 1); err != nil {
			done()
			return nil, fmt.Errorf("%d probes already at %s: %w", h.perHost, ip, context.Cause(ctx))
		}
	}
	return func() {
		if l.sem != nil {
			l.sem.Release(1)
		}
		done()
	}, nil
}

// prune forgets idle hosts whose bucket has refilled; called with h.mu held.
func (h *hostLimits) prune(now time.Time) {
	for ip, l := range h.hosts {
		if l.users == 0 && l.lim.TokensAt(now) >= float64(h.burst) {
			delete(h.hosts, ip)
		}
	}
}

// ceilSecond rounds d up to a whole second: the next probe is not due
// before.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}
