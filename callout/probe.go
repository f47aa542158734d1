package callout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/hints"
	"mxgate/smtptext"
)

// probe asks the sender domain's mail hosts, in preference order, until
// one gives a definite answer, and returns the Result with the records
// to cache.
func (c *Checker) probe(ctx context.Context, a address) (Result, []hints.Entry) {
	now := time.Now()
	targets, err := c.targets(ctx, a.domain)
	if err != nil {
		res := Result{Verdict: Unknown, Reply: err.Error()}
		var recs []hints.Entry
		if errors.Is(err, errNoDomain) || errors.Is(err, errNullMX) || errors.Is(err, errNoMail) {
			res.Verdict = Reject
			recs = append(recs, c.record(keyAddress+a.key, res, now))
		} else if ctx.Err() != nil {
			res.Reply = fmt.Sprintf("%v after %v: %s", context.Cause(ctx), c.o.Deadline, err)
		}
		c.logf("callout for <%s>: %s", a.key, res.Reply)
		return res, recs
	}
	st := probeState{
		random:     c.o.Random,
		postmaster: c.o.Postmaster,
	}
	// A domain known to refuse random local parts need not be asked again,
	// nor one known to accept postmaster.
	if _, v, ok := c.lookup(keyRandom+a.domain, now); ok && v == Reject {
		st.random = false
	}
	if _, v, ok := c.lookup(keyPostmaster+a.domain, now); ok && v == Accept {
		st.postmaster = false
	}
	var (
		recs        []hints.Entry
		answered    *Result // the last host that spoke SMTP without deciding
		lastFailure string
		allTimeouts = true
		limited     bool
	)
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		out := c.converse(ctx, t, a, &st)
		recs = append(recs, out.recs...)
		if out.res.Verdict == Accept && out.res.Reply == "" {
			c.logf("callout for <%s> to %s: accepted", a.key, out.res.Host)
		} else {
			c.logf("callout for <%s> to %s: %s", a.key, out.res.Host, out.res.Reply)
		}
		if out.res.Verdict != Unknown {
			return out.res, recs
		}
		if out.answered {
			r := out.res
			answered = &r
			continue
		}
		lastFailure = out.res.Host + ": " + out.res.Reply
		allTimeouts = allTimeouts && out.timeout
		limited = limited || out.limited
	}
	if answered != nil {
		return *answered, recs
	}
	var res Result
	switch {
	case limited:
		// Our politeness, not the domain, kept the answer away.
		return Result{Verdict: Unknown, Reply: "callout held back: " + lastFailure}, recs
	case context.Cause(ctx) == errDeadline:
		res.Reply = fmt.Sprintf("callout deadline %v reached (%s)", c.o.Deadline, lastFailure)
	case ctx.Err() != nil:
		// Close: no verdict about the domain.
		return Result{Verdict: Unknown, Reply: "callout interrupted: " + context.Cause(ctx).Error()}, recs
	case allTimeouts:
		res.Reply = fmt.Sprintf("all MX hosts timed out (%s)", lastFailure)
	default:
		res.Reply = fmt.Sprintf("all MX hosts unreachable (%s)", lastFailure)
	}
	// No host spoke SMTP: remember that for a while rather than knock again
	// for every forged sender of the domain.
	recs = append(recs, hints.Entry{Key: keyUnreachable + a.domain, Rec: hints.Record{
		Verdict: int(Unknown), Reply: res.Reply, Stored: now, Expires: now.Add(UnreachableTTL),
	}})
	return res, recs
}

// probeState is what one probe still has to ask, updated as hosts answer.
type probeState struct {
	random     bool
	postmaster bool
}

// outcome is one SMTP conversation.
type outcome struct {
	res      Result
	recs     []hints.Entry
	answered bool // the host spoke SMTP (a greeting or a reply)
	timeout  bool // it failed on a timeout or the deadline
	limited  bool // our own per-host limits held the probe back
}

// converse holds one SMTP conversation with t: EHLO, MAIL FROM, the
// random and sender RCPTs, the postmaster RCPT, QUIT. Never DATA.
func (c *Checker) converse(ctx context.Context, t target, a address, st *probeState) outcome {
	host := t.String()
	release, err := c.hosts.acquire(ctx, t.ip)
	if err != nil {
		return outcome{res: Result{Verdict: Unknown, Reply: err.Error(), Host: host}, limited: true}
	}
	defer release()
	d := net.Dialer{Timeout: c.o.Timeout}
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(t.ip, uint16(c.o.Port)).String())
	if err != nil {
		return c.failed(ctx, host, "connect", err)
	}
	return c.talk(ctx, conn, host, a, st)
}

// talk is the SMTP conversation on conn, which it closes. It reads
// whatever the remote sends: any bytes give an outcome, never a panic.
func (c *Checker) talk(ctx context.Context, conn net.Conn, host string, a address, st *probeState) outcome {
	now := time.Now()
	// The client's deadlines are per command only; the probe's deadline
	// closes the connection under it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	cl := smtp.NewClient(conn)
	cl.CommandTimeout = c.o.Timeout
	defer cl.Close()
	if err := cl.Hello(c.o.Hostname); err != nil {
		return c.failed(ctx, host, "greeting/EHLO", err)
	}
	if err := cl.Mail(c.o.MailFrom, nil); err != nil {
		out := c.failed(ctx, host, "MAIL FROM", err)
		if code(err)/100 == 5 {
			// Refusing the callout's sender (a bounce's <>) refuses the
			// domain's bounces: a fail for every sender of the domain.
			out.res.Verdict = Reject
			out.recs = append(out.recs, c.record(keyMailFrom+a.domain, out.res, now))
		}
		return out
	}
	var recs []hints.Entry
	if st.random {
		rnd := fmt.Sprintf("%s-%d-testing@%s", c.o.Hostname, now.Unix(), a.domain)
		err := cl.Rcpt(rnd, nil)
		switch code(err) / 100 {
		case 2:
			res := Result{Verdict: Accept, Host: host, Reply: fmt.Sprintf("random address <%s> accepted: the domain accepts any local part, <%s> is not proven", rnd, a.key)}
			_ = cl.Quit()
			return outcome{res: res, answered: true, recs: []hints.Entry{c.record(keyRandom+a.domain, res, now)}}
		case 5:
			st.random = false
			recs = append(recs, c.record(keyRandom+a.domain, Result{Verdict: Reject, Reply: replyText(err), Host: host}, now))
		default:
			if _, ok := err.(*smtp.SMTPError); !ok {
				return c.failed(ctx, host, "RCPT TO (random)", err)
			}
			// A 4xx says nothing about the domain; the sender is still asked.
		}
		if err := c.restart(cl); err != nil {
			out := c.failed(ctx, host, "RSET/MAIL FROM", err)
			out.recs = recs
			return out
		}
	}
	err := cl.Rcpt(a.rcpt, nil)
	var res Result
	switch code(err) / 100 {
	case 2:
		res = Result{Verdict: Accept, Host: host}
	case 5:
		res = Result{Verdict: Reject, Reply: replyText(err), Host: host}
		recs = append(recs, c.record(keyAddress+a.key, res, now))
		_ = cl.Quit()
		return outcome{res: res, answered: true, recs: recs}
	default:
		out := c.failed(ctx, host, "RCPT TO", err)
		out.recs = recs
		return out
	}
	if st.postmaster {
		pm := "postmaster@" + a.domain
		err := c.restart(cl)
		if err == nil {
			err = cl.Rcpt(pm, nil)
		}
		switch code(err) / 100 {
		case 2:
			st.postmaster = false
			recs = append(recs, c.record(keyPostmaster+a.domain, Result{Verdict: Accept, Host: host}, now))
		case 5:
			res := Result{Verdict: Reject, Reply: fmt.Sprintf("domain does not accept postmaster: %s", replyText(err)), Host: host}
			recs = append(recs, c.record(keyPostmaster+a.domain, res, now))
			_ = cl.Quit()
			return outcome{res: res, answered: true, recs: recs}
		default:
			// The sender's answer stands alone without the postmaster's:
			// the callout cannot tell, and the address is not cached.
			out := c.failed(ctx, host, "RCPT TO:<"+pm+">", err)
			out.recs = recs
			return out
		}
	}
	recs = append(recs, c.record(keyAddress+a.key, res, now))
	_ = cl.Quit()
	return outcome{res: res, answered: true, recs: recs}
}

// restart begins a new transaction on the same connection.
func (c *Checker) restart(cl *smtp.Client) error {
	if err := cl.Reset(); err != nil {
		return err
	}
	return cl.Mail(c.o.MailFrom, nil)
}

// failed describes a conversation that ended without a definite answer.
func (c *Checker) failed(ctx context.Context, host, stage string, err error) outcome {
	out := outcome{res: Result{Verdict: Unknown, Host: host}}
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		out.answered = true
		out.res.Reply = replyText(err)
	case ctx.Err() != nil:
		out.timeout = true
		out.res.Reply = fmt.Sprintf("%s: %v", stage, context.Cause(ctx))
	case errors.As(err, &ne) && ne.Timeout():
		out.timeout = true
		out.res.Reply = fmt.Sprintf("%s: no reply within %v", stage, c.o.Timeout)
	default:
		out.res.Reply = clean(fmt.Sprintf("%s: %v", stage, err))
	}
	return out
}

// record is res as cached under key, for the lifetime its kind and
// verdict get.
func (c *Checker) record(key string, res Result, now time.Time) hints.Entry {
	var ttl time.Duration
	domain := strings.HasPrefix(key, "d:")
	switch {
	case res.Verdict == Accept && domain:
		ttl = DomainPositiveTTL
	case res.Verdict == Accept:
		ttl = c.o.PositiveTTL
	case domain:
		ttl = DomainNegativeTTL
	default:
		ttl = c.o.NegativeTTL
	}
	return hints.Entry{Key: key, Rec: hints.Record{Verdict: int(res.Verdict), Reply: res.Reply, Host: res.Host, Stored: now, Expires: now.Add(ttl)}}
}

func (c *Checker) logf(format string, args ...any) {
	c.o.Log(fmt.Sprintf(format, args...))
}

// code is the SMTP reply code of err: 250 for nil (success), 0 when err
// is not a server reply.
func code(err error) int {
	if err == nil {
		return 250
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// maxReply bounds a remote reply: it is quoted in our own SMTP reply and
// in the log.
const maxReply = 400

// replyText is the server's reply as it was on the wire, one line: "550
// 5.1.1 <a@b>: no such user".
func replyText(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return clean(err.Error())
	}
	return clean(smtptext.FromError(se))
}

// clean makes remote text safe for an SMTP reply and a log line:
// printable ASCII only, bounded.
func clean(s string) string { return smtptext.CleanMax(s, maxReply) }
