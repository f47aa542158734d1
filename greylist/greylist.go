// Package greylist is postgrey's greylisting as a check at RCPT: the
// first attempt of a (client network, sender, recipient) triplet is
// deferred; a retry after the delay and within the retry window passes,
// and the triplet is remembered, so the sender's mail passes from then on.
// A client network that passed enough triplets is let through at once.
// Trusted, authenticated and DNS-allow-listed clients are never
// greylisted. The triplets live in the shared state store under "grey:",
// so a retry through another gateway behind the same MX passes too.
package greylist

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mxgate/filters"
	"mxgate/state"
)

// StorePrefix begins every key greylisting keeps in the store.
const StorePrefix = "grey:"

// Options configure the check.
type Options struct {
	Store state.Store
	// Delay: a retry sooner is deferred again. RetryWindow: a retry later
	// than this after the first attempt starts over. Expire: how long a
	// passed triplet (and a network's count of them) is kept after its
	// last use.
	Delay, RetryWindow, Expire time.Duration
	// AutoAllow is how many triplets a client network must pass before it
	// skips greylisting; 0: never.
	AutoAllow int
	OnError   string                // filters.OnErrorAccept or filters.OnErrorTempfail
	Skip      func(netip.Addr) bool // trusted clients (relay.trusted_networks)
	Now       func() time.Time      // nil: time.Now
}

// Check is greylisting's check.
type Check struct{ o Options }

// New returns the check.
func New(o Options) *Check {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Check{o: o}
}

func (k *Check) Name() string { return "greylist" }

// Waits for the store at RCPT only.
func (k *Check) Waits(s filters.Stage) bool { return s == filters.StageRcpt }

func (k *Check) Open(_ context.Context, c *filters.Conn) filters.Session {
	return &session{k: k, conn: c}
}

type session struct {
	filters.Pass
	k    *Check
	conn *filters.Conn
}

// Network is the client's greylisting network, postgrey's: the /24 of
// an IPv4 address, the /64 of an IPv6 one (a sender's pool of outgoing
// servers retries from another address of the same net).
func Network(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p
}

// TripletKey is the store key of a triplet.
func TripletKey(ip netip.Addr, sender, rcpt string) string {
	if sender == "" {
		sender = "<>"
	}
	return StorePrefix + "t:" + Network(ip).String() + ":" + strings.ToLower(sender) + ":" + strings.ToLower(rcpt)
}

// autoKey counts the triplets a network passed.
func autoKey(ip netip.Addr) string { return StorePrefix + "auto:" + Network(ip).String() }

func (s *session) Rcpt(ctx context.Context, tx *filters.Tx, rcpt string) filters.Verdict {
	switch {
	case s.k.o.Skip != nil && s.k.o.Skip(s.conn.IP):
		return trace("not greylisted: host in relay.trusted_networks")
	case tx.AuthUser != "":
		return trace("not greylisted: authenticated as " + tx.AuthUser)
	case s.conn.Allowlisted.Load():
		return trace("not greylisted: client on a DNS allow-list")
	}
	v, err := s.decide(ctx, tx, rcpt)
	if err != nil {
		return s.failed(err)
	}
	return v
}

// The value of a triplet: when it was first seen (Unix seconds) and
// whether it passed ("first passed", "1733540000 0").
func (s *session) decide(ctx context.Context, tx *filters.Tx, rcpt string) (filters.Verdict, error) {
	o := &s.k.o
	st := o.Store
	now := o.Now()
	if o.AutoAllow > 0 {
		val, ok, err := st.Get(ctx, autoKey(s.conn.IP))
		if err != nil {
			return filters.Verdict{}, err
		}
		if n, _ := strconv.Atoi(string(val)); ok && n >= o.AutoAllow {
			return trace(fmt.Sprintf("not greylisted: %s passed %d triplets (auto_allow %d)", Network(s.conn.IP), n, o.AutoAllow)), nil
		}
	}
	key := TripletKey(s.conn.IP, tx.Sender, rcpt)
	triplet := fmt.Sprintf("(%s, <%s>, <%s>)", Network(s.conn.IP), tx.Sender, rcpt)
	val, ok, err := st.Get(ctx, key)
	if err != nil {
		return filters.Verdict{}, err
	}
	first, passed := parseTriplet(val)
	switch {
	case ok && passed:
		// Kept while it is used: Expire counts from the last pass.
		if err := st.Set(ctx, key, val, o.Expire); err != nil {
			return filters.Verdict{}, err
		}
		return trace("greylist: triplet " + triplet + " passed before"), nil
	case !ok || now.Sub(first) > o.RetryWindow:
		if err := st.Set(ctx, key, fmt.Appendf(nil, "%d 0", now.Unix()), o.RetryWindow); err != nil {
			return filters.Verdict{}, err
		}
		return greylisted(triplet, o.Delay, "first seen"), nil
	case now.Sub(first) < o.Delay:
		return greylisted(triplet, o.Delay-now.Sub(first), "retried too early"), nil
	}
	if err := st.Set(ctx, key, fmt.Appendf(nil, "%d 1", first.Unix()), o.Expire); err != nil {
		return filters.Verdict{}, err
	}
	if _, err := st.Incr(ctx, autoKey(s.conn.IP), 1, o.Expire); err != nil {
		return filters.Verdict{}, err
	}
	delayed := now.Sub(first).Truncate(time.Second)
	return filters.Verdict{
		// postgrey's "delayed N seconds" line, in mainlog with the host.
		Logs:  []filters.LogLine{{Kind: filters.MainLog, Host: true, Text: fmt.Sprintf("greylist: triplet %s passed, delayed %d seconds", triplet, int(delayed.Seconds()))}},
		Trace: []string{fmt.Sprintf("greylist: triplet %s retried after %v: passed", triplet, delayed)},
	}, nil
}

func parseTriplet(val []byte) (first time.Time, passed bool) {
	f, p, _ := strings.Cut(string(val), " ")
	sec, _ := strconv.ParseInt(f, 10, 64)
	return time.Unix(sec, 0), p == "1"
}

func trace(line string) filters.Verdict { return filters.Verdict{Trace: []string{line}} }

// greylisted is the deferral, in postgrey's words, with the seconds left.
func greylisted(triplet string, wait time.Duration, why string) filters.Verdict {
	secs := int(math.Ceil(wait.Seconds()))
	return filters.Verdict{
		Action: filters.Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1},
		Text:       fmt.Sprintf("Greylisted, please try again in %d seconds", secs),
		Log:        "greylisted: triplet " + triplet + " " + why,
		ReasonCode: "greylisted",
		Trace:      []string{fmt.Sprintf("greylist: triplet %s %s: deferred for %d seconds", triplet, why, secs)},
	}
}

// failed is on_error for a store that could not be asked.
func (s *session) failed(err error) filters.Verdict {
	why := "state store failed"
	if errors.Is(err, state.ErrUnavailable) {
		why = "state store unavailable"
	}
	line := fmt.Sprintf("greylist: %s: %v (on_error=%s)", why, err, s.k.o.OnError)
	var v filters.Verdict
	// The failure that opened the store's breaker is logged; the answers
	// while it cools down are not, or a dead Redis would flood paniclog.
	if !errors.Is(err, state.ErrCoolingDown) {
		v.Logs = []filters.LogLine{{Kind: filters.PanicLog, Text: line}}
	}
	if s.k.o.OnError != filters.OnErrorTempfail {
		v.Trace = []string{line + ": not greylisted"}
		return v
	}
	v.Action, v.Code, v.Enhanced = filters.Tempfail, 451, [3]int{4, 3, 0}
	v.Text = "Temporary local problem - please try later"
	v.Log, v.ReasonCode = "greylist: "+why, "greylist-defer"
	v.Trace = []string{line + ": deferred"}
	return v
}
