package callout

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mxgate/filters"
	"mxgate/smtptext"
)

// Sender verification as a check of the pipeline (Exim's verify =
// sender/callout): the probe of the sender's own MX starts at MAIL and is
// awaited at the first RCPT that the checks before it let through, so the
// client's pipelined commands overlap the probe. The null sender, senders
// in ExemptDomains and clients Skip names are never probed.

// CheckOptions configure the pipeline check over a Checker.
type CheckOptions struct {
	ExemptDomains []string // senders in these domains and their subdomains are never probed
	// Wait bounds the wait at RCPT; the probe ends by its own deadline,
	// so this only keeps a session from hanging on a checker that fails to.
	Wait time.Duration
	// Skip says which clients are never probed (relay.trusted_networks).
	Skip func(netip.Addr) bool
}

// Check is the sender callout's check.
type Check struct {
	c *Checker
	o CheckOptions
}

// NewCheck returns the pipeline check of c.
func NewCheck(c *Checker, o CheckOptions) *Check { return &Check{c: c, o: o} }

func (k *Check) Name() string { return "callout" }

// Waits at RCPT for the probe; MAIL only starts it.
func (k *Check) Waits(s filters.Stage) bool { return s == filters.StageRcpt }

func (k *Check) Open(ctx context.Context, c *filters.Conn) filters.Session {
	return &session{k: k, ctx: ctx, trusted: k.o.Skip != nil && k.o.Skip(c.IP)}
}

type session struct {
	filters.Pass
	k       *Check
	ctx     context.Context
	trusted bool
	// detailed: a refusal has quoted the remote server's reply in this
	// session already; Exim quotes it once.
	detailed bool

	sender  string
	probe   bool // MAIL named a sender to probe
	pending *Pending
	result  *Result // set at the first RCPT that waits for it
}

func (s *session) Mail(_ context.Context, tx *filters.Tx) filters.Verdict {
	s.sender, s.probe, s.pending, s.result = tx.Sender, false, nil, nil
	switch {
	case tx.Sender == "":
		return trace("sender verify: not done for the null sender")
	case s.trusted:
		return trace(fmt.Sprintf("sender verify for <%s>: not done: host in relay.trusted_networks", tx.Sender))
	case tx.AuthUser != "":
		// The sender policy ([auth]) decides what a logged-in user may
		// send as.
		return trace(fmt.Sprintf("sender verify for <%s>: not done: authenticated as %s", tx.Sender, tx.AuthUser))
	}
	if e := exemptDomain(s.k.o.ExemptDomains, tx.SenderDomain); e != "" {
		return trace(fmt.Sprintf("sender verify for <%s>: not done: %s in callout.exempt_domains", tx.Sender, e))
	}
	s.probe = true
	return filters.Verdict{}
}

// MailAccepted starts the probe once every check has accepted MAIL: a
// client refused at MAIL (by a milter, say) never makes us call out.
func (s *session) MailAccepted(_ context.Context, tx *filters.Tx) filters.Verdict {
	if !s.probe {
		return filters.Verdict{}
	}
	s.pending = s.k.c.Start(s.ctx, tx.Sender)
	return trace(fmt.Sprintf("sender verify for <%s>: callout started", tx.Sender))
}

func trace(line string) filters.Verdict { return filters.Verdict{Trace: []string{line}} }

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

func (s *session) Rcpt(ctx context.Context, tx *filters.Tx, _ string) filters.Verdict {
	if s.pending == nil {
		return filters.Verdict{}
	}
	var v filters.Verdict
	if s.result == nil {
		v = s.await(ctx)
	}
	r := s.result
	switch {
	case r.Verdict == Reject:
		v.Action, v.Code, v.Enhanced = filters.Reject, 550, [3]int{5, 1, 7}
		v.Text = "Sender verify failed"
		v.Log = "Sender verify failed"
		v.ReasonCode = "sender-verify-failed"
		if !s.detailed {
			s.detailed = true
			v.Text = verifyDetails(s.sender, *r) + v.Text
		}
	case r.Verdict == Unknown && !s.k.c.o.DeferOK:
		v.Action, v.Code, v.Enhanced = filters.Tempfail, 451, [3]int{4, 7, 1}
		v.Text = "Could not complete sender verify"
		v.Log = v.Text
		v.ReasonCode = "sender-verify-defer"
	}
	return v
}

// await waits for the probe once per transaction and says what it found.
func (s *session) await(ctx context.Context) filters.Verdict {
	wctx, cancel := context.WithTimeout(ctx, s.k.o.Wait)
	res := s.pending.Wait(wctx)
	cancel()
	s.result = &res

	var v filters.Verdict
	cached := ""
	if res.Cached {
		cached = " (cached)"
	}
	switch res.Verdict {
	case Accept:
		by := ""
		if res.Host != "" {
			by = " by " + res.Host
		}
		v.Trace = []string{fmt.Sprintf("sender verify for <%s>: accepted%s%s", s.sender, by, cached)}
	case Reject:
		v.Trace = []string{fmt.Sprintf("sender verify for <%s>: refused%s: %s: rejected", s.sender, cached, verifyReason(res))}
		v.Logs = []filters.LogLine{{Kind: filters.RejectLog, Host: true, Text: fmt.Sprintf("sender verify fail for <%s>: %s", s.sender, verifyReason(res))}}
	default:
		if s.k.c.o.DeferOK {
			v.Trace = []string{fmt.Sprintf("sender verify for <%s>: no answer%s: %s: accepted (callout.options defer_ok)", s.sender, cached, res.Reply)}
			v.Logs = []filters.LogLine{{Kind: filters.MainLog, Host: true, Text: fmt.Sprintf("sender verify defer for <%s>: %s; accepted (defer_ok)", s.sender, res.Reply)}}
		} else {
			v.Trace = []string{fmt.Sprintf("sender verify for <%s>: no answer%s: %s: deferred", s.sender, cached, res.Reply)}
			v.Logs = []filters.LogLine{{Kind: filters.RejectLog, Host: true, Text: fmt.Sprintf("sender verify defer for <%s>: %s", s.sender, res.Reply)}}
		}
	}
	return v
}

func (s *session) Reset(context.Context) {
	s.sender, s.probe, s.pending, s.result = "", false, nil, nil
}

// verifyReason is the why of a refusal in the log: the remote server's
// own reply and who gave it, in Exim's words where there was one.
func verifyReason(r Result) string {
	if r.Host == "" {
		return r.Reply
	}
	return "response from " + r.Host + " was: " + r.Reply
}

// verifyDetails are the continuation lines of the 550, Exim's:
//
//	550-Verification failed for <a@example.test>
//	550-Called:   mx.example.test [192.0.2.1]
//	550-Response: 550 5.1.1 <a@example.test>: no such user
//
// The remote reply is the remote server's text: it is cut to one line of
// printable ASCII so it cannot forge lines of our reply.
func verifyDetails(sender string, r Result) string {
	text := "Verification failed for <" + sender + ">\n"
	if r.Host == "" {
		return text + smtptext.Clean(r.Reply) + "\n"
	}
	return text + "Called:   " + smtptext.Clean(r.Host) + "\nResponse: " + smtptext.Clean(r.Reply) + "\n"
}
