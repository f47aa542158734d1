package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mxgate/config"
	"mxgate/rbl"
	"mxgate/spool"
)

// The DNS lists run alongside the session: the client's IP lists start
// when it connects, the sender-domain and HELO lists at MAIL, and the
// verdict is awaited at the first RCPT (or before the greeting, with
// rbl.reject_at = "connect"), so a session waits for the slowest lookup,
// never for their sum. Clients in relay.trusted_networks are never looked
// up.

// rblHeader is the header that carries a score between tag_score and
// reject_score. One from the client is removed, so no sender can vouch
// for itself.
const rblHeader = "X-RBL-Score"

// newChecker builds the lookups of cfg's lists; nil when there are none.
func newChecker(cfg *config.Config, log logger) (*rbl.Checker, error) {
	r := cfg.RBL
	if len(r.Lists) == 0 {
		return nil, nil
	}
	// Parse fills these; a config built in code must not refuse everybody.
	if r.RejectScore < 1 || r.TagScore < 1 || r.TagScore > r.RejectScore {
		return nil, fmt.Errorf("gateway: rbl.reject_score %d and rbl.tag_score %d: want 1 <= tag_score <= reject_score", r.RejectScore, r.TagScore)
	}
	if r.RejectAt != "rcpt" && r.RejectAt != "connect" && r.RejectAt != "" {
		return nil, fmt.Errorf("gateway: rbl.reject_at must be \"rcpt\" or \"connect\", got %q", r.RejectAt)
	}
	lists := make([]rbl.List, len(r.Lists))
	for i, l := range r.Lists {
		lists[i] = rbl.List{Zone: l.Zone, Kind: rbl.Kind(l.Kind), Match: l.Match, Weight: l.Weight, OnError: l.OnError}
	}
	c, err := rbl.New(rbl.Options{
		Lists:     lists,
		Resolvers: r.Resolver,
		Timeout:   time.Duration(r.Timeout),
		CacheSize: r.CacheSize,
		MinTTL:    time.Duration(r.MinTTL),
		MaxTTL:    time.Duration(r.MaxTTL),
		Panic:     log.Panic,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: DNS lists: %w", err)
	}
	return c, nil
}

// rblTimeout bounds every wait for a verdict; the lookups themselves end
// by then too.
func (s *Server) rblTimeout() time.Duration {
	if d := time.Duration(s.cfg.RBL.Timeout); d > 0 {
		return d
	}
	return rbl.DefaultTimeout
}

// startChecks begins the IP lists of a newly admitted client. It returns
// at once: the accept loop never waits for DNS.
func (s *Server) startChecks(c *conn, implicitTLS bool) {
	if s.rbl == nil {
		return
	}
	if s.policy.Trusted(c.ip) {
		s.trace.printf("DNS lists: not checked: host in relay.trusted_networks")
		return
	}
	c.rblChecked = true
	c.ipLookups = s.rbl.StartIP(c.ctx, c.ip)
	// Under implicit TLS the greeting is encrypted, so a refusal in its
	// place could not be read; such clients are refused at RCPT.
	c.holdGreeting = s.cfg.RBL.RejectAt == "connect" && !implicitTLS
}

// ipResult is the verdict of the client's IP lists, awaited once per
// connection (until ctx ends) and kept for every later transaction.
func (c *conn) ipResult(ctx context.Context) rbl.Result {
	c.ipOnce.Do(func() {
		if c.ipLookups == nil {
			return
		}
		c.ipRes = c.ipLookups.Wait(ctx)
		c.srv.reportLookups(c.ipRes, rbl.KindIP, c.ip.String())
	})
	return c.ipRes
}

// greetingRefusal decides, before the greeting, whether a client is
// refused at connect (rbl.reject_at = "connect"), and returns the reply
// that replaces the greeting, or nil. Only the IP lists count here; the
// domain lists and lookup failures are dealt with at RCPT.
func (c *conn) greetingRefusal() []byte {
	s := c.srv
	ctx, cancel := context.WithTimeout(c.ctx, s.rblTimeout())
	r := c.ipResult(ctx)
	cancel()
	if r.Score < s.cfg.RBL.RejectScore {
		s.trace.printf("DNS lists at connect: %s: below reject_score %d: greeting", scoreText(r), s.cfg.RBL.RejectScore)
		return nil
	}
	hit, _ := r.Strongest()
	s.trace.printf("DNS lists at connect: %s: reject_score %d reached: connection refused", scoreText(r), s.cfg.RBL.RejectScore)
	s.log.Reject("", fmt.Sprintf("H=[%s] rejected connection in \"connect\" ACL: %s", c.ip, listedLog(hit, "client", r)))
	return []byte("554 5.7.1 " + refusalText(hit, "client") + "\r\n")
}

// verdict is what the DNS lists decided for one transaction.
type verdict struct {
	action  verdictAction
	result  rbl.Result
	hit     rbl.Hit // the list named in a refusal
	hitKind string  // what hit.Key is: "client", "sender domain", "HELO name"
	zone    string  // the failed list named in a tempfail
}

type verdictAction int

const (
	rblAccept verdictAction = iota
	rblTag
	rblReject
	rblTempfail
)

// domainLookups are the RHSBL lookups of one transaction, started at MAIL.
type domainLookups struct {
	sender, helo       *rbl.Pending
	senderKey, heloKey string
}

// startDomains begins the sender-domain lists on the sender's domain (none
// for the null sender) and the HELO lists on the HELO name, if it is a
// domain name.
func (s *session) startDomains(senderDomain, helo string) *domainLookups {
	srv := s.srv
	if srv.rbl == nil || !s.conn.rblChecked {
		return nil
	}
	d := &domainLookups{}
	if senderDomain != "" {
		d.senderKey = senderDomain
		d.sender = srv.rbl.StartDomain(s.conn.ctx, rbl.KindSenderDomain, senderDomain)
	}
	if heloIsDomain(helo) {
		d.heloKey = strings.ToLower(helo)
		d.helo = srv.rbl.StartDomain(s.conn.ctx, rbl.KindHELO, d.heloKey)
	}
	return d
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

// rblVerdict awaits the lists of the transaction (once: later RCPTs reuse
// the verdict) and weighs them. All waits share one deadline, so a dead
// resolver holds a RCPT for at most rbl.timeout.
func (s *session) rblVerdict(tx *transaction) *verdict {
	s.mu.Lock()
	v := tx.verdict
	s.mu.Unlock()
	if v != nil || !s.conn.rblChecked {
		return v
	}
	srv := s.srv
	ctx, cancel := context.WithTimeout(s.conn.ctx, srv.rblTimeout())
	ipRes := s.conn.ipResult(ctx)
	var sender, helo rbl.Result
	if d := tx.domains; d != nil {
		if d.sender != nil {
			sender = d.sender.Wait(ctx)
			srv.reportLookups(sender, rbl.KindSenderDomain, d.senderKey)
		}
		if d.helo != nil {
			helo = d.helo.Wait(ctx)
			srv.reportLookups(helo, rbl.KindHELO, d.heloKey)
		}
	}
	cancel()

	cfg := srv.cfg.RBL
	v = &verdict{result: rbl.Merge(ipRes, sender, helo)}
	r := v.result
	switch {
	case r.Score >= cfg.RejectScore:
		v.action = rblReject
		v.hit, _ = r.Strongest()
		v.hitKind = "HELO name"
		switch {
		case hasHit(ipRes, v.hit):
			v.hitKind = "client"
		case hasHit(sender, v.hit):
			v.hitKind = "sender domain"
		}
		srv.trace.printf("DNS lists: %s: reject_score %d reached: rejected", scoreText(r), cfg.RejectScore)
	case r.Tempfail():
		v.action = rblTempfail
		for _, e := range r.Errors {
			if e.Tempfail {
				v.zone = e.Zone
				break
			}
		}
		srv.trace.printf("DNS lists: %s: lookup at %s failed (on_error = tempfail): deferred", scoreText(r), v.zone)
	case r.Score >= cfg.TagScore:
		v.action = rblTag
		srv.trace.printf("DNS lists: %s: tag_score %d reached: %s stamped", scoreText(r), cfg.TagScore, rblHeader)
	default:
		srv.trace.printf("DNS lists: %s: accepted", scoreText(r))
	}
	s.mu.Lock()
	tx.verdict = v
	s.mu.Unlock()
	return v
}

func hasHit(r rbl.Result, h rbl.Hit) bool {
	for _, x := range r.Hits {
		if x.Zone == h.Zone && x.Key == h.Key {
			return true
		}
	}
	return false
}

// rblRefusal turns a verdict into the RCPT refusal and its log line, or
// returns nil when the recipient may be accepted.
func (s *session) rblRefusal(tx *transaction, rcpt string) error {
	v := s.rblVerdict(tx)
	if v == nil {
		return nil
	}
	what := fmt.Sprintf("H=%s F=<%s>", s.hostDesc(tx.helo), tx.sender)
	switch v.action {
	case rblReject:
		s.srv.log.Reject("", fmt.Sprintf("%s rejected RCPT <%s>: %s", what, rcpt, listedLog(v.hit, v.hitKind, v.result)))
		return s.refuse(tx.helo, 554, [3]int{5, 7, 1}, refusalText(v.hit, v.hitKind))
	case rblTempfail:
		s.srv.log.Reject("", fmt.Sprintf("%s temporarily rejected RCPT <%s>: DNS list lookup defer at %s", what, rcpt, v.zone))
		return s.refuse(tx.helo, 451, [3]int{4, 7, 1}, "Temporary local problem checking "+v.zone+"; try again later")
	}
	return nil
}

// deferText is a lookup error as a mainlog line may show it: eximstats
// counts every line holding "refused" as a rejection, and a resolver whose
// port is closed is not one.
func deferText(err error) string {
	return strings.ReplaceAll(err.Error(), "refused", "REFUSED")
}

// reportLookups traces every list of kind looked up for key, and logs
// the lookups that failed (Exim's dnslist_defer lines).
func (s *Server) reportLookups(r rbl.Result, kind rbl.Kind, key string) {
	for _, e := range r.Errors {
		s.log.Main("", fmt.Sprintf("DNS list lookup defer for %s at %s: %s", e.Key, e.Zone, deferText(e.Err)))
	}
	if s.trace == nil {
		return
	}
	for _, l := range s.cfg.RBL.Lists {
		if rbl.Kind(l.Kind) != kind {
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
		s.trace.printf("%s", line)
	}
}

// refusalText is the 554's text, as Postfix words it:
// "Service unavailable; client [192.0.2.1] blocked using bl.test (reason)".
func refusalText(h rbl.Hit, kind string) string {
	t := "Service unavailable; " + keyText(h, kind) + " blocked using " + h.Zone
	if h.Text != "" {
		t += " (" + h.Text + ")"
	}
	return t
}

func keyText(h rbl.Hit, kind string) string {
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
func listedLog(h rbl.Hit, kind string, r rbl.Result) string {
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
func scoreText(r rbl.Result) string {
	return "RBL score " + scoreValue(r)
}

// scoreValue is the X-RBL-Score header's value: "2 (bl.test=3, wl.test=-1)".
func scoreValue(r rbl.Result) string {
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

// stampHeaders removes any X-RBL-Score the client sent (marked deleted,
// as Exim does, so the -H file still shows it) and, for a tagged
// transaction, appends ours. It reports whether it stamped.
func (s *Server) stampHeaders(headers []spool.Header, v *verdict) ([]spool.Header, bool) {
	if s.rbl == nil {
		return headers, false
	}
	for i, h := range headers {
		name, _, _ := strings.Cut(h.Text, ":")
		if strings.EqualFold(strings.TrimRight(name, " \t"), rblHeader) && h.Type != '*' {
			headers[i].Type = '*'
			s.trace.printf("DATA: %s header from the client removed", rblHeader)
		}
	}
	if v == nil || v.action != rblTag {
		return headers, false
	}
	return append(headers, spool.Header{Type: spool.HeaderType(rblHeader), Text: rblHeader + ": " + scoreValue(v.result) + "\n"}), true
}
