package rcptverify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/address"
	"mxgate/smtptext"
)

// calloutStore asks one store by LMTP or SMTP: LHLO/EHLO once per
// connection, then per lookup MAIL FROM:<>, RCPT TO:<key> and RSET, never
// DATA, on the pool's connections.
type calloutStore struct {
	where    string // "lmtp 127.0.0.1:24", for logs
	host     string // the remote as Exim names it in "response ... from HOST"
	hostname string
	timeout  time.Duration
	pool     *pool[*storeConn]
}

// storeConn is one open conversation with the store.
type storeConn struct {
	nc net.Conn
	cl *smtp.Client
}

func (c *storeConn) Close() error { return c.cl.Close() }

func newCalloutStore(t Target, o Options) *calloutStore {
	network, addr := "tcp", net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	if t.Scheme == "lmtp+unix" {
		network, addr = "unix", t.Path
	}
	s := &calloutStore{
		where:    t.Scheme + " " + addr,
		host:     addr,
		hostname: o.Hostname,
		timeout:  o.Timeout,
	}
	lmtp := t.Scheme == "lmtp" || t.Scheme == "lmtp+unix"
	hello := "EHLO"
	if lmtp {
		hello = "LHLO"
	}
	s.pool = newPool(o.MaxConnections, o.IdleTimeout, func(ctx context.Context) (*storeConn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		c := &storeConn{nc: nc}
		if lmtp {
			c.cl = smtp.NewClientLMTP(nc)
		} else {
			c.cl = smtp.NewClient(nc)
		}
		c.cl.CommandTimeout = s.timeout
		stop := context.AfterFunc(ctx, func() { nc.Close() })
		err = c.cl.Hello(s.hostname)
		if !stop() || err != nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("greeting/%s: %s", hello, describe(err))
		}
		return c, nil
	})
	return s
}

// probe asks the store about key. A reused connection that fails before
// the store said anything (it closed the connection while idle) is
// replaced by a new one, once.
func (s *calloutStore) probe(ctx context.Context, key string) Result {
	for attempt := 0; ; attempt++ {
		c, reused, err := s.pool.get(ctx)
		if err != nil {
			return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: %s", s.where, describe(err))}
		}
		res, healthy, stale := s.ask(ctx, c, key)
		s.pool.put(c, healthy)
		if stale && reused && attempt == 0 {
			continue
		}
		return res
	}
}

// ask is one lookup on c: healthy says c may be reused, stale that it
// failed before any reply (a connection the store had closed).
func (s *calloutStore) ask(ctx context.Context, c *storeConn, key string) (res Result, healthy, stale bool) {
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer func() {
		if !stop() {
			healthy = false
			if res.Verdict == Defer {
				res.Detail = fmt.Sprintf("callout to %s: %v", s.where, context.Cause(ctx))
			}
		}
	}()
	if err := c.cl.Mail("", nil); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: MAIL FROM:<>: %s", s.where, describe(err))}, false, true
		}
		// A store that refuses the null sender says nothing of the user.
		return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: MAIL FROM:<> refused: %s", s.where, reply(se))}, false, false
	}
	err := c.cl.Rcpt(wire(key), nil)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		res = Result{Verdict: Found, Detail: fmt.Sprintf("accepted by %s", s.where)}
	case !errors.As(err, &se):
		return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: RCPT TO: %s", s.where, describe(err))}, false, false
	case se.Code/100 == 5:
		// Exim's words for a failed recipient callout.
		res = Result{Verdict: NotFound, Detail: fmt.Sprintf("response to \"RCPT TO:<%s>\" from %s was: %s", key, s.host, reply(se))}
	default:
		res = Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: RCPT TO:<%s>: %s", s.where, key, reply(se))}
	}
	return res, c.cl.Reset() == nil, false
}

// wire is key as RCPT TO gives it: a local part that is not a
// dot-string quoted again (the gateway hands local parts over unquoted).
func wire(key string) string {
	at := strings.LastIndexByte(key, '@')
	return address.Address{Local: key[:at], Domain: key[at+1:]}.String()
}

// maxReply bounds a store's reply quoted in a log line.
const maxReply = 400

// reply is the store's reply as it was on the wire, one safe line.
func reply(se *smtp.SMTPError) string { return smtptext.CleanMax(smtptext.FromError(se), maxReply) }

// describe is a failure without a reply, one safe line.
func describe(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return reply(se)
	}
	return smtptext.CleanMax(err.Error(), maxReply)
}
