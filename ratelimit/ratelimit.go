// Package ratelimit is Exim's ratelimit ACL condition as a check of the
// pipeline: a smoothed rate of messages, recipients or connections per
// period for one key (the client's IP, the authenticated user, the
// sender, the sender's domain), kept in the shared state store so that
// every gateway behind one MX counts together. A client over a limit is
// deferred, rejected, or its mail is accepted and held (frozen in the
// queue under a hold key) until an admin releases or drops it.
//
// Nobody is exempt: an authenticated user or a trusted network over its
// limit is exactly the compromised account or script a limit is for.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mxgate/filters"
	"mxgate/state"
)

// What a limit counts by (config ratelimit.key).
const (
	KeyClientIP     = "client_ip"
	KeyAuthUser     = "auth_user"
	KeySender       = "sender"
	KeySenderDomain = "sender_domain"
)

// What one event is (config ratelimit.per).
const (
	PerMail = "mail" // each MAIL
	PerRcpt = "rcpt" // each RCPT
	PerConn = "conn" // once a connection; the answer stands for each of its MAILs
)

// What a client over a limit gets (config ratelimit.action).
const (
	ActionDefer  = "defer"  // 451 4.7.0
	ActionReject = "reject" // 550 5.7.1
	ActionHold   = "hold"   // accepted, frozen under the hold key
)

// Rate is a limit: Count events per Period; Text is how the config
// wrote it ("100/1h"), for logs.
type Rate struct {
	Count  float64
	Period time.Duration
	Text   string
}

// Limit is one [[ratelimit]].
type Limit struct {
	Name string // unique: the store key and the hold key begin with it
	Key  string // KeyClientIP, ...
	Per  string // PerMail, ...
	Rate
	Strict  bool
	Action  string
	OnError string // filters.OnErrorAccept or filters.OnErrorTempfail
	// Overrides are other rates for some key values, by lower-cased value.
	Overrides map[string]Rate
}

// Options configure the check.
type Options struct {
	Limits []Limit
	Store  state.Store
	Now    func() time.Time // nil: time.Now
}

// StorePrefix begins every key the limits keep in the store.
const StorePrefix = "rl:"

// alertPrefix begins the keys that make the paniclog alert of a hold
// once per key and period.
const alertPrefix = "rl-alert:"

// StoreKey is the store key of the rate behind hold key hold ("NAME:VALUE").
func StoreKey(hold string) string { return StorePrefix + hold }

// HoldKeys are what `mxgate hold release` clears in the store for hold
// key hold: the rate, so the released user starts afresh, and the alert's
// mark, so a new burst is reported again.
func HoldKeys(hold string) []string { return []string{StoreKey(hold), alertPrefix + hold} }

// Check is the rate limits' check.
type Check struct{ o Options }

// New returns the check of o's limits.
func New(o Options) *Check {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Check{o: o}
}

func (k *Check) Name() string { return "ratelimit" }

// Waits for the store at MAIL and RCPT only.
func (k *Check) Waits(s filters.Stage) bool { return s == filters.StageMail || s == filters.StageRcpt }

func (k *Check) Open(_ context.Context, c *filters.Conn) filters.Session {
	return &session{k: k, ip: c.IP}
}

type session struct {
	filters.Pass
	k  *Check
	ip netip.Addr
	// conn is each per-conn limit's answer for this connection, by hold
	// key: counted once, at the first MAIL that reaches it, and standing
	// for every later MAIL (Exim keeps per_conn results per connection),
	// or a client over the limit would pass with its second MAIL.
	conn map[string]connAnswer
	// hold is the transaction's hold key, "" when no limit holds it.
	hold string
}

func (s *session) Mail(ctx context.Context, tx *filters.Tx) filters.Verdict {
	// A new transaction: whatever an earlier, refused MAIL held is gone.
	s.hold = ""
	return s.apply(ctx, tx, func(l *Limit) bool { return l.Per == PerMail || l.Per == PerConn })
}

func (s *session) Rcpt(ctx context.Context, tx *filters.Tx, _ string) filters.Verdict {
	return s.apply(ctx, tx, func(l *Limit) bool { return l.Per == PerRcpt })
}

// Data holds an accepted message that a limit with action "hold" caught.
func (s *session) Data(context.Context, *filters.Message) filters.Verdict {
	if s.hold == "" {
		return filters.Verdict{}
	}
	return filters.Verdict{Hold: s.hold, ReasonCode: "ratelimit-hold"}
}

func (s *session) Reset(context.Context) { s.hold = "" }

// apply counts one event on every limit that counts it, and answers for
// the first one over: later limits are not counted for a refused command.
func (s *session) apply(ctx context.Context, tx *filters.Tx, counts func(*Limit) bool) filters.Verdict {
	var v filters.Verdict
	for i := range s.k.o.Limits {
		l := &s.k.o.Limits[i]
		if !counts(l) {
			continue
		}
		lv := s.check(ctx, l, tx)
		v.Trace = append(v.Trace, lv.Trace...)
		v.Logs = append(v.Logs, lv.Logs...)
		if lv.Refuses() {
			lv.Trace, lv.Logs = v.Trace, v.Logs
			return lv
		}
	}
	return v
}

// value is what l counts by in tx: "" when the client has none.
func (s *session) value(l *Limit, tx *filters.Tx) string {
	switch l.Key {
	case KeyClientIP:
		return s.ip.String()
	case KeyAuthUser:
		// Lower-cased as the sender is: a backend that ignores case
		// (Dovecot's %Lu) must not give each spelling its own count.
		return strings.ToLower(tx.AuthUser)
	case KeySender:
		return strings.ToLower(tx.Sender)
	case KeySenderDomain:
		return strings.ToLower(tx.SenderDomain)
	}
	return ""
}

// check counts one event on l: Exim's "true when rate >= limit".
func (s *session) check(ctx context.Context, l *Limit, tx *filters.Tx) filters.Verdict {
	val := s.value(l, tx)
	if val == "" {
		return filters.Verdict{Trace: []string{fmt.Sprintf("ratelimit %s: no %s: not counted", l.Name, l.Key)}}
	}
	r := l.Rate
	if o, ok := l.Overrides[val]; ok { // val is lower-cased already
		r = o
	}
	hold := l.Name + ":" + val
	if l.Per == PerConn {
		if a, ok := s.conn[hold]; ok {
			if a.held {
				s.hold = hold
			}
			v := a.v
			v.Logs = nil
			v.Trace = []string{fmt.Sprintf("ratelimit %s: %s %s: counted once per connection: %s", l.Name, l.Key, val, a.what)}
			return v
		}
		v := s.count(ctx, l, val, hold, r)
		if !v.failed {
			if s.conn == nil {
				s.conn = map[string]connAnswer{}
			}
			what := "under"
			if v.Refuses() || s.hold == hold {
				what = "over"
			}
			s.conn[hold] = connAnswer{v: v.Verdict, held: s.hold == hold, what: what}
		}
		return v.Verdict
	}
	return s.count(ctx, l, val, hold, r).Verdict
}

// connAnswer is a per-conn limit's answer at the connection's first MAIL.
type connAnswer struct {
	v    filters.Verdict
	held bool
	what string // "under" or "over", for the trace
}

// counted is count's verdict; failed: the store could not be asked,
// so nothing was counted.
type counted struct {
	filters.Verdict
	failed bool
}

// count counts one event on l for val (hold key hold) at rate r.
func (s *session) count(ctx context.Context, l *Limit, val, hold string, r Rate) counted {
	rate, err := s.k.o.Store.Rate(ctx, StoreKey(hold), state.RateOptions{
		Period: r.Period, Count: 1, Limit: r.Count, Strict: l.Strict, Now: s.k.o.Now(),
	})
	if err != nil {
		return counted{s.failed(l, val, err), true}
	}
	what := fmt.Sprintf("ratelimit %s: %s %s: rate %.1f / %s, limit %s", l.Name, l.Key, val, rate, periodText(r), r.Text)
	if rate < r.Count {
		return counted{Verdict: filters.Verdict{Trace: []string{what + ": under"}}}
	}
	// Exim's log_message of its ratelimit examples, after "rate limit
	// exceeded" that a grep for it finds.
	log := fmt.Sprintf("rate limit exceeded: %s %s %s: Sender rate %.1f / %s (limit %s)", l.Name, l.Key, val, rate, periodText(r), r.Text)
	switch l.Action {
	case ActionReject:
		return counted{Verdict: filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Rate limit exceeded",
			Log: log, ReasonCode: "ratelimit", Trace: []string{what + ": over: rejected"}}}
	case ActionHold:
		s.hold = hold
		v := filters.Verdict{Trace: []string{what + ": over: the message will be held as " + hold}}
		// One alert per key and period, across every gateway sharing the
		// store: a burst of thousands is one line, not thousands.
		if n, err := s.k.o.Store.Incr(ctx, alertPrefix+hold, 1, r.Period); err == nil && n == 1 {
			v.Logs = append(v.Logs, filters.LogLine{Kind: filters.PanicLog, Text: fmt.Sprintf(
				"ratelimit hold: %s over %s (rate %.1f): its mail is held; `mxgate hold release %s`", hold, r.Text, rate, hold)})
		}
		return counted{Verdict: v}
	}
	return counted{Verdict: filters.Verdict{Action: filters.Tempfail, Code: 451, Enhanced: [3]int{4, 7, 0}, Text: "Rate limit exceeded",
		Log: log, ReasonCode: "ratelimit", Trace: []string{what + ": over: deferred"}}}
}

// failed is l's on_error for a store that could not be asked.
func (s *session) failed(l *Limit, val string, err error) filters.Verdict {
	why := "state store failed"
	if errors.Is(err, state.ErrUnavailable) {
		why = "state store unavailable"
	}
	line := fmt.Sprintf("ratelimit %s: %s for %s %s: %v (on_error=%s)", l.Name, why, l.Key, val, err, l.OnError)
	var v filters.Verdict
	// The failure that opened the store's breaker is logged; the answers
	// while it cools down are not, or a dead Redis would flood paniclog.
	if !errors.Is(err, state.ErrCoolingDown) {
		v.Logs = []filters.LogLine{{Kind: filters.PanicLog, Text: line}}
	}
	if l.OnError != filters.OnErrorTempfail {
		v.Trace = []string{line + ": not counted"}
		return v
	}
	v.Action, v.Code, v.Enhanced = filters.Tempfail, 451, [3]int{4, 3, 0}
	v.Text = "Temporary local problem - please try later"
	v.Log, v.ReasonCode = "ratelimit "+l.Name+": "+why, "ratelimit-defer"
	v.Trace = []string{line + ": deferred"}
	return v
}

// periodText is the period as Exim's $sender_rate_period shows it.
func periodText(r Rate) string {
	if _, p, ok := strings.Cut(r.Text, "/"); ok {
		return p
	}
	return r.Period.String()
}
