package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mxgate/callout"
	"mxgate/config"
)

// Sender verification by callout (Exim's verify = sender/callout): the
// probe of the sender's own MX starts when MAIL arrives and is awaited at
// the first RCPT that the relay policy and the DNS lists let through, so
// the client's pipelined commands overlap the probe. The null sender,
// senders in callout.exempt_domains and clients in relay.trusted_networks
// are never probed. A test session (-bh) probes for real, as Exim's -bhc
// does, but with a cache of its own in memory: the daemon holds the cache
// file locked, and a test must not change what the daemon remembers.

// newCallout builds the sender verifier of [callout]; nil when it is off.
func newCallout(cfg *config.Config, log logger, test bool) (*callout.Checker, error) {
	o := cfg.Callout
	if !o.Enabled {
		return nil, nil
	}
	opts := callout.Options{
		Hostname:           cfg.Hostname,
		Resolvers:          o.Resolver,
		Port:               o.Port,
		Random:             o.Has("random"),
		Postmaster:         o.Has("postmaster"),
		DeferOK:            o.Has("defer_ok"),
		Timeout:            time.Duration(o.Timeout),
		Deadline:           time.Duration(o.Deadline),
		CacheSize:          o.CacheSize,
		PositiveTTL:        time.Duration(o.PositiveTTL),
		NegativeTTL:        time.Duration(o.NegativeTTL),
		PerHostConcurrency: o.PerHostConcurrency,
		PerHostRate:        float64(o.PerHostRate),
		Log:                func(text string) { log.Main("", text) },
	}
	if o.Has("use_postmaster") {
		opts.MailFrom = "postmaster@" + cfg.Hostname
	}
	if !test {
		dir := filepath.Join(cfg.DataDir, "db")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("gateway: callout cache directory: %w", err)
		}
		opts.CacheFile = filepath.Join(dir, "callout.db")
	}
	c, err := callout.New(opts)
	if err != nil {
		return nil, fmt.Errorf("gateway: sender callout: %w", err)
	}
	return c, nil
}

// closeCallout closes the callout cache once no session can ask it any
// more.
func (s *Server) closeCallout() {
	if s.callout == nil {
		return
	}
	if err := s.callout.Close(); err != nil {
		s.log.Panic(fmt.Sprintf("closing the callout cache %s: %v", filepath.Join(s.cfg.DataDir, "db", "callout.db"), err))
	}
}

// senderVerify is the callout of one transaction, started at MAIL.
type senderVerify struct {
	sender  string
	pending *callout.Pending
	result  *callout.Result // set at the first RCPT that waits for it
}

// startCallout begins the probe of sender, whose domain is domain, unless
// callouts are off or this sender or client is never probed.
func (s *session) startCallout(sender, domain string) *senderVerify {
	srv := s.srv
	if srv.callout == nil {
		return nil
	}
	switch {
	case sender == "":
		srv.trace.printf("sender verify: not done for the null sender")
		return nil
	case srv.policy.Trusted(s.conn.ip):
		srv.trace.printf("sender verify for <%s>: not done: host in relay.trusted_networks", sender)
		return nil
	}
	if e := exemptDomain(srv.cfg.Callout.ExemptDomains, domain); e != "" {
		srv.trace.printf("sender verify for <%s>: not done: %s in callout.exempt_domains", sender, e)
		return nil
	}
	srv.trace.printf("sender verify for <%s>: callout started", sender)
	return &senderVerify{sender: sender, pending: srv.callout.Start(s.conn.ctx, sender)}
}

// exemptDomain returns the entry of list that covers domain (the domain
// itself or a parent of it), or "".
func exemptDomain(list []string, domain string) string {
	domain = strings.ToLower(domain)
	for _, e := range list {
		if domain == e || strings.HasSuffix(domain, "."+e) {
			return e
		}
	}
	return ""
}

// calloutResult awaits the probe of the transaction once; later RCPTs
// reuse its result. The probe ends by callout.deadline on its own; the
// wait's own bound, one command timeout later, only keeps a session from
// hanging on a checker that fails to.
func (s *session) calloutResult(tx *transaction) *callout.Result {
	sv := tx.callout
	if sv == nil {
		return nil
	}
	s.mu.Lock()
	r := sv.result
	s.mu.Unlock()
	if r != nil {
		return r
	}
	srv := s.srv
	cfg := srv.cfg.Callout
	ctx, cancel := context.WithTimeout(s.conn.ctx, time.Duration(cfg.Deadline)+time.Duration(cfg.Timeout))
	res := sv.pending.Wait(ctx)
	cancel()

	host := s.hostDesc(tx.helo)
	cached := ""
	if res.Cached {
		cached = " (cached)"
	}
	switch res.Verdict {
	case callout.Accept:
		by := ""
		if res.Host != "" {
			by = " by " + res.Host
		}
		srv.trace.printf("sender verify for <%s>: accepted%s%s", sv.sender, by, cached)
	case callout.Reject:
		srv.trace.printf("sender verify for <%s>: refused%s: %s: rejected", sv.sender, cached, verifyReason(res))
		srv.log.Reject("", fmt.Sprintf("H=%s sender verify fail for <%s>: %s", host, sv.sender, verifyReason(res)))
	default:
		if cfg.Has("defer_ok") {
			srv.trace.printf("sender verify for <%s>: no answer%s: %s: accepted (callout.options defer_ok)", sv.sender, cached, res.Reply)
			srv.log.Main("", fmt.Sprintf("H=%s sender verify defer for <%s>: %s; accepted (defer_ok)", host, sv.sender, res.Reply))
		} else {
			srv.trace.printf("sender verify for <%s>: no answer%s: %s: deferred", sv.sender, cached, res.Reply)
			srv.log.Reject("", fmt.Sprintf("H=%s sender verify defer for <%s>: %s", host, sv.sender, res.Reply))
		}
	}
	s.mu.Lock()
	sv.result = &res
	s.mu.Unlock()
	return &res
}

// verifyReason is the why of a refusal in the log: the remote server's
// own reply and who gave it, in Exim's words where there was one.
func verifyReason(r callout.Result) string {
	if r.Host == "" {
		return r.Reply
	}
	return "response from " + r.Host + " was: " + r.Reply
}

// calloutRefusal turns the probe's result into the RCPT refusal and its
// log line, or returns nil when the recipient may be accepted. The
// remote server's reply is quoted in the first refusal of a session only,
// as Exim does: a client that sends many recipients gets it once.
func (s *session) calloutRefusal(tx *transaction, rcpt string) error {
	r := s.calloutResult(tx)
	if r == nil {
		return nil
	}
	what := fmt.Sprintf("H=%s F=<%s>", s.hostDesc(tx.helo), tx.sender)
	switch {
	case r.Verdict == callout.Reject:
		s.srv.log.Reject("", fmt.Sprintf("%s rejected RCPT <%s>: Sender verify failed", what, rcpt))
		text := "Sender verify failed"
		s.mu.Lock()
		details := !s.calloutDetailed
		s.calloutDetailed = true
		s.mu.Unlock()
		if details {
			text = verifyDetails(tx.sender, *r) + text
		}
		return s.refuse(tx.helo, 550, [3]int{5, 1, 7}, text)
	case r.Verdict == callout.Unknown && !s.srv.cfg.Callout.Has("defer_ok"):
		s.srv.log.Reject("", fmt.Sprintf("%s temporarily rejected RCPT <%s>: Could not complete sender verify", what, rcpt))
		return s.refuse(tx.helo, 451, [3]int{4, 7, 1}, "Could not complete sender verify")
	}
	return nil
}

// verifyDetails are the continuation lines of the 550, Exim's:
//
//	550-Verification failed for <a@example.test>
//	550-Called:   mx.example.test [192.0.2.1]
//	550-Response: 550 5.1.1 <a@example.test>: no such user
//
// The remote reply is the remote server's text: it is cut to one line of
// printable ASCII so it cannot forge lines of our reply.
func verifyDetails(sender string, r callout.Result) string {
	text := "Verification failed for <" + sender + ">\n"
	if r.Host == "" {
		return text + printable(r.Reply) + "\n"
	}
	return text + "Called:   " + printable(r.Host) + "\nResponse: " + printable(r.Reply) + "\n"
}

// maxQuoted bounds a quoted remote reply, well inside the 512 octets of
// an SMTP reply line.
const maxQuoted = 300

func printable(s string) string {
	b := make([]byte, 0, min(len(s), maxQuoted))
	for i := 0; i < len(s) && len(b) < maxQuoted; i++ {
		c := s[i]
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			c = ' '
		case c < 0x20 || c >= 0x7f:
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}
