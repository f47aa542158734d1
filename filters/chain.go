package filters

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mxgate/event"
	"mxgate/spool"
)

// ErrBreakerOpen is the error of a check the circuit breaker skipped.
var ErrBreakerOpen = errors.New("circuit breaker open, scanner not contacted")

// Chain runs a fixed list of filters on each message. It is safe for
// concurrent use; the circuit breakers are shared by all messages.
type Chain struct {
	entries []chainEntry
	log     Logger
	bus     *event.Bus       // Breaker events; set by New
	now     func() time.Time // the breaker's clock; replaced in tests
}

type chainEntry struct {
	Entry
	br breaker
}

// NewChain returns a Chain over entries. log receives operational events:
// a filter failure (with the message ID and the on_error decision) and a
// breaker opening in the paniclog, as Exim logs a failed spamd or clamd,
// and a breaker closing in the mainlog.
func NewChain(entries []Entry, log Logger) *Chain {
	c := &Chain{entries: make([]chainEntry, len(entries)), log: log, now: time.Now}
	for i, e := range entries {
		c.entries[i] = chainEntry{Entry: e}
	}
	return c
}

// retire is Pipeline.Retire for the scanners.
func (c *Chain) retire() {
	for i := range c.entries {
		c.entries[i].br.retire(c.bus, c.entries[i].Filter.Name())
	}
}

// Run runs every filter in parallel, each under its own timeout, and
// combines the verdicts: the strictest action wins (the first in entry order
// on a tie), the headers of every filter are collected in entry order, and
// the Log facts are joined with "; ". Run returns once every filter has
// answered or timed out, even when a filter ignores its context.
func (c *Chain) Run(ctx context.Context, m *Message) []FilterResult {
	per := make([]FilterResult, len(c.entries))
	var wg sync.WaitGroup
	for i := range c.entries {
		// Each scanner reads its own copy of the header list: one that
		// ignores its timeout must not read it while the pipeline stamps
		// the message.
		mc := *m
		mc.Headers = slices.Clone(m.Headers)
		wg.Go(func() { per[i] = c.runOne(ctx, &c.entries[i], &mc) })
	}
	wg.Wait()
	return per
}

func (c *Chain) runOne(ctx context.Context, e *chainEntry, m *Message) FilterResult {
	name := e.Filter.Name()
	start := time.Now()
	fr := FilterResult{Name: name}

	allowed, probe := e.br.allow(e.BreakAfter, e.CoolDown, c.now())
	if !allowed {
		fr.Err = fmt.Errorf("%s: %w", name, ErrBreakerOpen)
	} else {
		cctx, cancel := context.WithCancel(ctx)
		if e.Timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, e.Timeout)
		}
		fr.Verdict, fr.Err = check(cctx, e.Filter, m, e.Timeout)
		cancel()
		if fr.Err == nil {
			fr.Err = normalize(&fr.Verdict)
			if fr.Err != nil {
				fr.Err = fmt.Errorf("%s: %w", name, fr.Err)
			}
		}
		// A caller that gave up (client disconnected, shutdown) says
		// nothing about the scanner's health.
		if ctx.Err() == nil {
			switch e.br.done(e.BreakAfter, e.CoolDown, probe, fr.Err != nil, c.now(), c.bus, name, fr.Err) {
			case evOpened:
				c.log.Panic(fmt.Sprintf("filter %s: circuit breaker opened after %d consecutive failures, skipping it for %v: %v",
					name, e.BreakAfter, e.CoolDown, fr.Err))
			case evClosed:
				c.log.Main("", fmt.Sprintf("filter %s: circuit breaker closed, scanner answers again", name))
			}
		}
	}
	fr.Duration = time.Since(start)
	if fr.Err != nil {
		fr.Verdict = c.onError(e, m, fr.Err)
	}
	return fr
}

// check calls f.Check so that neither a panic nor a Check that ignores its
// context can take the gateway down or hold a message past the timeout.
func check(ctx context.Context, f Filter, m *Message, timeout time.Duration) (Verdict, error) {
	type answer struct {
		v   Verdict
		err error
	}
	ch := make(chan answer, 1) // buffered: a late answer must not leak a blocked goroutine
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- answer{err: fmt.Errorf("%s: panic: %v", f.Name(), p)}
			}
		}()
		v, err := f.Check(ctx, m)
		ch <- answer{v, err}
	}()
	select {
	case a := <-ch:
		return a.v, a.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Verdict{}, fmt.Errorf("%s: no verdict within %v: %w", f.Name(), timeout, ctx.Err())
		}
		return Verdict{}, fmt.Errorf("%s: %w", f.Name(), ctx.Err())
	}
}

// normalize fills the SMTP reply a refusing verdict left out and rejects
// actions the gateway does not know.
func normalize(v *Verdict) error {
	switch v.Action {
	case Accept, Discard, Quarantine:
	case Reject:
		if v.Code == 0 {
			v.Code, v.Enhanced = 550, [3]int{5, 7, 1}
		}
		if v.Text == "" {
			v.Text = "Rejected by content filter"
		}
	case Tempfail:
		if v.Code == 0 {
			v.Code, v.Enhanced = 451, [3]int{4, 7, 1}
		}
		if v.Text == "" {
			v.Text = tempfailText
		}
	default:
		return fmt.Errorf("invalid verdict action %d", int(v.Action))
	}
	return nil
}

const tempfailText = "Temporary local problem - please try later"

// onError is the verdict that replaces a failed check.
func (c *Chain) onError(e *chainEntry, m *Message, err error) Verdict {
	name := e.Filter.Name()
	if e.OnError == OnErrorAccept {
		hs := c.unchecked(e.Filter, err)
		c.log.Panic(failureLine(m.ID, name, err, OnErrorAccept))
		return Verdict{Action: Accept, Headers: hs, Log: name + " unchecked", Reason: err.Error()}
	}
	c.log.Panic(failureLine(m.ID, name, err, OnErrorTempfail))
	return Verdict{
		Action: Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1}, Text: tempfailText,
		Reason: err.Error(), Log: name + " failed",
	}
}

// failureLine is the paniclog line of a failed scan, in the manner of
// Exim's "spam acl condition: ..." lines: "ID spamd failed: connection
// refused (on_error=tempfail)".
func failureLine(id spool.ID, name string, err error, onError string) string {
	return fmt.Sprintf("%s %s failed: %s (on_error=%s)", id, name, strings.TrimPrefix(err.Error(), name+": "), onError)
}

// unchecked is the filter's stamp for a message it could not scan; a
// filter that panics making it stamps nothing.
func (c *Chain) unchecked(f Filter, err error) (hs []spool.Header) {
	u, ok := f.(Uncheckable)
	if !ok {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			c.log.Panic(fmt.Sprintf("filter %s panicked stamping an unchecked message: %v", f.Name(), r))
			hs = nil
		}
	}()
	return u.Unchecked(err)
}

type breakerEvent int

const (
	evNone breakerEvent = iota
	evOpened
	evClosed
)

// breaker is one entry's circuit breaker: closed (every check runs), open
// (checks are skipped until the cool-down ends), half-open (one probe runs;
// its outcome closes or re-opens the breaker).
type breaker struct {
	mu       sync.Mutex
	failures int
	open     bool
	until    time.Time
	probing  bool
	// retired: a newer generation serves, whose own breaker reports
	// this check's state; this one reports no more.
	retired bool
}

// retire reports the breaker closed on bus if it is open, and silences
// it: the generation it belongs to no longer serves, and
// mxgate_breaker_open must not stay at 1 for a breaker that no session
// of the serving generation has.
func (b *breaker) retire(bus *event.Bus, check string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open && !b.retired {
		bus.Emit(event.Event{Kind: event.Breaker, Check: check})
	}
	b.retired = true
}

// allow reports whether a real check may run and whether it is the probe.
func (b *breaker) allow(after int, _ time.Duration, now time.Time) (ok, probe bool) {
	if after <= 0 {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.open:
		return true, false
	case now.Before(b.until) || b.probing:
		return false, false
	default:
		b.probing = true
		return true, true
	}
}

// done records a check's outcome, and reports a change on bus (the
// Breaker event of check, with err when it opens) unless the breaker is
// retired: under the lock, so retire's closing event cannot come before
// it.
func (b *breaker) done(after int, coolDown time.Duration, probe, failed bool, now time.Time, bus *event.Bus, check string, err error) breakerEvent {
	if after <= 0 {
		return evNone
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ev := b.record(coolDown, after, probe, failed, now)
	if ev != evNone && !b.retired {
		e := event.Event{Kind: event.Breaker, Check: check, Open: ev == evOpened}
		if e.Open {
			e.Err = err
		}
		bus.Emit(e)
	}
	return ev
}

// record is done's change of state, under b.mu.
func (b *breaker) record(coolDown time.Duration, after int, probe, failed bool, now time.Time) breakerEvent {
	if probe {
		b.probing = false
	}
	if !failed {
		b.failures = 0
		if b.open {
			b.open = false
			return evClosed
		}
		return evNone
	}
	b.failures++
	switch {
	case probe:
		b.until = now.Add(coolDown) // still down: another full cool-down
	case !b.open && b.failures >= after:
		b.open = true
		b.until = now.Add(coolDown)
		return evOpened
	}
	return evNone
}
