package rbl

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mxgate/filters"
	"mxgate/spool"
)

// The DNS lists as a check of the pipeline: the client's IP lists start
// when it connects, the sender-domain and HELO lists at MAIL, and the
// verdict is awaited at the first RCPT (or before the greeting, with
// reject_at = "connect"), so a session waits for the slowest lookup, never
// for their sum.

// Header carries a score between tag_score and reject_score. One from the
// client is removed (the check owns it), so no sender can vouch for itself.
const Header = "X-RBL-Score"

// CheckOptions configure the pipeline check over a Checker.
type CheckOptions struct {
	RejectScore int           // score at which RCPT is refused
	TagScore    int           // score from which the message is stamped
	AtConnect   bool          // refuse in place of the greeting (reject_at = "connect")
	Timeout     time.Duration // bounds every wait for a verdict
	// Skip says which clients are never looked up (relay.trusted_networks).
	Skip func(netip.Addr) bool
}

// Check is the DNS lists' check.
type Check struct {
	c *Checker
	o CheckOptions
}

// NewCheck returns the pipeline check of c.
func NewCheck(c *Checker, o CheckOptions) *Check { return &Check{c: c, o: o} }

func (k *Check) Name() string { return "rbl" }

// Waits at the first RCPT for the lists' verdict, and before the greeting
// with reject_at = "connect"; it only starts lookups elsewhere.
func (k *Check) Waits(s filters.Stage) bool {
	return s == filters.StageRcpt || s == filters.StageConnect && k.o.AtConnect
}

// Owns X-RBL-Score.
func (k *Check) Owns(name, _ string) bool { return strings.EqualFold(name, Header) }

// Open starts the client's IP lists, unless it is never looked up.
func (k *Check) Open(ctx context.Context, c *filters.Conn) filters.Session {
	s := &session{k: k, ctx: ctx, conn: c}
	if k.o.Skip != nil && k.o.Skip(c.IP) {
		s.skipped = true
		return s
	}
	s.ip = k.c.StartIP(ctx, c.IP)
	return s
}

type session struct {
	filters.Pass
	k       *Check
	ctx     context.Context // the connection's: lookups outlive no client
	conn    *filters.Conn
	skipped bool

	ip     *Pending
	ipOnce sync.Once
	ipRes  result

	// The transaction's lookups and its verdict, fixed at the first RCPT.
	sender, helo       *Pending
	senderKey, heloKey string
	decided            *decision
}

// result is a Pending's result with the trace and log lines of its lookups.
type result struct {
	Result
	notes filters.Verdict // Trace and Logs only
}

type decision struct {
	action  filters.Action
	r       Result
	hit     Hit
	hitKind string // "client", "sender domain", "HELO name"
	zone    string // the failed list named in a tempfail
}

func (s *session) Connect(ctx context.Context) filters.Verdict {
	if s.skipped {
		return filters.Verdict{Trace: []string{"DNS lists: not checked: host in relay.trusted_networks"}}
	}
	if !s.k.o.AtConnect || s.conn.ImplicitTLS {
		return filters.Verdict{}
	}
	wctx, cancel := context.WithTimeout(ctx, s.k.o.Timeout)
	r := s.ipResult(wctx)
	cancel()
	// The lookups are traced once per connection: no later RCPT repeats them.
	v := r.notes
	s.ipRes.notes = filters.Verdict{}
	if r.Score < s.k.o.RejectScore {
		v.Trace = append(v.Trace, fmt.Sprintf("DNS lists at connect: %s: below reject_score %d: greeting", scoreText(r.Result), s.k.o.RejectScore))
		return v
	}
	hit, _ := r.Strongest()
	v.Trace = append(v.Trace, fmt.Sprintf("DNS lists at connect: %s: reject_score %d reached: connection refused", scoreText(r.Result), s.k.o.RejectScore))
	v.Action, v.Code, v.Enhanced = filters.Reject, 554, [3]int{5, 7, 1}
	v.Text = refusalText(hit, "client")
	v.Log = listedLog(hit, "client", r.Result)
	v.ReasonCode, v.List = "rbl-listed", hit.Zone
	return v
}

// ipResult awaits the IP lists once per connection.
func (s *session) ipResult(ctx context.Context) result {
	s.ipOnce.Do(func() {
		if s.ip == nil {
			return
		}
		r := s.ip.Wait(ctx)
		s.ipRes = result{Result: r, notes: s.k.report(r, KindIP, s.conn.IP.String())}
		if r.Allowlisted() {
			s.conn.Allowlisted.Store(true)
		}
	})
	return s.ipRes
}

func (s *session) Mail(_ context.Context, tx *filters.Tx) filters.Verdict {
	s.sender, s.helo, s.decided = nil, nil, nil
	if s.skipped {
		return filters.Verdict{}
	}
	// A user who logged in is not judged by the address they send
	// from (a home connection in a policy list), as Exim's "accept
	// authenticated = *" before its dnslists.
	if tx.AuthUser != "" {
		return filters.Verdict{Trace: []string{"DNS lists: not checked: authenticated as " + tx.AuthUser}}
	}
	if tx.SenderDomain != "" {
		s.senderKey = tx.SenderDomain
		s.sender = s.k.c.StartDomain(s.ctx, KindSenderDomain, tx.SenderDomain)
	}
	if heloIsDomain(tx.Helo) {
		s.heloKey = strings.ToLower(tx.Helo)
		s.helo = s.k.c.StartDomain(s.ctx, KindHELO, s.heloKey)
	}
	return filters.Verdict{}
}

// Rcpt weighs the lists once per transaction; every RCPT gets the verdict.
func (s *session) Rcpt(ctx context.Context, tx *filters.Tx, _ string) filters.Verdict {
	if s.skipped || tx.AuthUser != "" {
		return filters.Verdict{}
	}
	var v filters.Verdict
	if s.decided == nil {
		v = s.decide(ctx)
	}
	d := s.decided
	switch d.action {
	case filters.Reject:
		v.Action, v.Code, v.Enhanced = filters.Reject, 554, [3]int{5, 7, 1}
		v.Text = refusalText(d.hit, d.hitKind)
		v.Log = listedLog(d.hit, d.hitKind, d.r)
		v.ReasonCode, v.List = "rbl-listed", d.hit.Zone
	case filters.Tempfail:
		v.Action, v.Code, v.Enhanced = filters.Tempfail, 451, [3]int{4, 7, 1}
		v.Text = "Temporary local problem checking " + d.zone + "; try again later"
		v.Log = "DNS list lookup defer at " + d.zone
		v.ReasonCode, v.List = "rbl-defer", d.zone
	}
	return v
}

// decide awaits the transaction's lists under one deadline, so a dead
// resolver holds a RCPT for at most the timeout, and weighs them.
func (s *session) decide(ctx context.Context) filters.Verdict {
	wctx, cancel := context.WithTimeout(ctx, s.k.o.Timeout)
	ipRes := s.ipResult(wctx)
	v := ipRes.notes
	s.ipRes.notes = filters.Verdict{}
	var sender, helo Result
	if s.sender != nil {
		sender = s.sender.Wait(wctx)
		s.k.addNotes(&v, s.k.report(sender, KindSenderDomain, s.senderKey))
	}
	if s.helo != nil {
		helo = s.helo.Wait(wctx)
		s.k.addNotes(&v, s.k.report(helo, KindHELO, s.heloKey))
	}
	cancel()

	o := s.k.o
	d := &decision{r: Merge(ipRes.Result, sender, helo)}
	r := d.r
	switch {
	case r.Score >= o.RejectScore:
		d.action = filters.Reject
		d.hit, _ = r.Strongest()
		d.hitKind = "HELO name"
		switch {
		case hasHit(ipRes.Result, d.hit):
			d.hitKind = "client"
		case hasHit(sender, d.hit):
			d.hitKind = "sender domain"
		}
		v.Trace = append(v.Trace, fmt.Sprintf("DNS lists: %s: reject_score %d reached: rejected", scoreText(r), o.RejectScore))
	case r.Tempfail():
		d.action = filters.Tempfail
		for _, e := range r.Errors {
			if e.Tempfail {
				d.zone = e.Zone
				break
			}
		}
		v.Trace = append(v.Trace, fmt.Sprintf("DNS lists: %s: lookup at %s failed (on_error = tempfail): deferred", scoreText(r), d.zone))
	case r.Score >= o.TagScore:
		d.action = filters.Tag
		v.Trace = append(v.Trace, fmt.Sprintf("DNS lists: %s: tag_score %d reached: %s stamped", scoreText(r), o.TagScore, Header))
	default:
		v.Trace = append(v.Trace, fmt.Sprintf("DNS lists: %s: accepted", scoreText(r)))
	}
	s.decided = d
	return v
}

// Data stamps a tagged message with its score; the Tag's Log is the
// Warning line of Exim's "warn" ACL.
func (s *session) Data(context.Context, *filters.Message) filters.Verdict {
	d := s.decided
	if d == nil || d.action != filters.Tag {
		return filters.Verdict{}
	}
	// The list that weighed most stands for the score in the metrics.
	hit, _ := d.r.Strongest()
	return filters.Verdict{
		Action:     filters.Tag,
		List:       hit.Zone,
		Headers:    []spool.Header{{Type: spool.HeaderType(Header), Text: Header + ": " + scoreValue(d.r) + "\n"}},
		Log:        scoreText(d.r),
		ReasonCode: "rbl-score",
	}
}

func (s *session) Reset(context.Context) { s.sender, s.helo, s.decided = nil, nil, nil }

func (k *Check) addNotes(v *filters.Verdict, n filters.Verdict) {
	v.Trace = append(v.Trace, n.Trace...)
	v.Logs = append(v.Logs, n.Logs...)
}

// report logs the lookups of r that failed (Exim's dnslist_defer lines)
// and traces every list of kind looked up for key.
func (k *Check) report(r Result, kind Kind, key string) filters.Verdict {
	var v filters.Verdict
	for _, e := range r.Errors {
		v.Logs = append(v.Logs, filters.LogLine{Text: fmt.Sprintf("DNS list lookup defer for %s at %s: %s", e.Key, e.Zone, deferText(e.Err))})
	}
	for _, l := range k.c.lists {
		if l.Kind != kind {
			continue
		}
		line := l.Zone + ": " + key + " not listed"
		for _, h := range r.Hits {
			if h.Zone == l.Zone {
				line = fmt.Sprintf("%s: %s listed (%s, weight %d)", l.Zone, key, joinAddrs(h.Values), h.Weight)
				if h.Text != "" {
					line += ": " + h.Text
				}
			}
		}
		for _, e := range r.Errors {
			if e.Zone == l.Zone {
				line = fmt.Sprintf("%s: %s lookup failed (on_error = %s): %v", l.Zone, key, l.OnError, e.Err)
			}
		}
		v.Trace = append(v.Trace, line)
	}
	return v
}

// heloIsDomain reports whether a HELO name is worth an RHSBL lookup: a
// dotted name, not an address literal nor junk.
func heloIsDomain(h string) bool {
	if !strings.Contains(h, ".") || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	_, err := netip.ParseAddr(h)
	return err != nil
}

func hasHit(r Result, h Hit) bool {
	for _, x := range r.Hits {
		if x.Zone == h.Zone && x.Key == h.Key {
			return true
		}
	}
	return false
}

// deferText is a lookup error as a mainlog line may show it: eximstats
// counts every line holding "refused" as a rejection, and a resolver whose
// port is closed is not one.
func deferText(err error) string {
	return strings.ReplaceAll(err.Error(), "refused", "REFUSED")
}

// refusalText is the 554's text, as Postfix words it:
// "Service unavailable; client [192.0.2.1] blocked using bl.test (reason)".
func refusalText(h Hit, kind string) string {
	t := "Service unavailable; " + keyText(h, kind) + " blocked using " + h.Zone
	if h.Text != "" {
		t += " (" + h.Text + ")"
	}
	return t
}

func keyText(h Hit, kind string) string {
	if kind == "client" {
		return "client [" + h.Key + "]"
	}
	return kind + " " + h.Key
}

// listedLog is the reason logged for a refusal, in the words of Exim's
// usual dnslists message ("$sender_host_address is listed at
// $dnslist_domain ($dnslist_value: $dnslist_text)"), which eximstats
// counts per list as "Listed at ZONE". When several lists add up to the
// score, the score says which.
func listedLog(h Hit, kind string, r Result) string {
	key := h.Key
	if kind != "client" {
		key = kind + " " + h.Key
	}
	t := key + " is listed at " + h.Zone + " (" + joinAddrs(h.Values)
	if h.Text != "" {
		t += ": " + h.Text
	}
	t += ")"
	if len(r.Hits) > 1 {
		t += "; " + scoreText(r)
	}
	return t
}

// scoreText is "RBL score 2 (bl.test=3, wl.test=-1)": the total and every
// list that answered, with its weight.
func scoreText(r Result) string {
	return "RBL score " + scoreValue(r)
}

// scoreValue is the X-RBL-Score header's value: "2 (bl.test=3, wl.test=-1)".
func scoreValue(r Result) string {
	if len(r.Hits) == 0 {
		return strconv.Itoa(r.Score)
	}
	parts := make([]string, len(r.Hits))
	for i, h := range r.Hits {
		parts[i] = h.Zone + "=" + strconv.Itoa(h.Weight)
	}
	return strconv.Itoa(r.Score) + " (" + strings.Join(parts, ", ") + ")"
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
