package rcptverify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/address"
	"mxgate/smtptext"
	"mxgate/starttls"
)

// calloutStore asks one store by LMTP or SMTP: LHLO/EHLO once per
// connection (again after STARTTLS), then per lookup MAIL FROM:<>,
// RCPT TO:<key> and RSET, never DATA, on the pool's connections.
type calloutStore struct {
	where    string // "lmtp 127.0.0.1:24", for logs
	hostname string
	timeout  time.Duration
	pool     *pool[*storeConn]
	panic    func(string)

	mu        sync.Mutex
	lastPanic string // the refusal written to paniclog last, and when
	panicAt   time.Time
}

// storeConn is one open conversation with the store.
type storeConn struct {
	nc   net.Conn // the TCP or unix connection (under TLS, if any)
	cl   *smtp.Client
	host string // the remote as Exim names it in "response ... from HOST [IP]"
}

func (c *storeConn) Close() error { return c.cl.Close() }

func newCalloutStore(st Store, o Options) *calloutStore {
	t := st.Target
	network, addr := t.endpoint()
	s := &calloutStore{
		where:    t.Scheme + " " + addr,
		hostname: o.Hostname,
		timeout:  o.Timeout,
		panic:    o.Panic,
	}
	lmtp := t.Scheme == "lmtp" || t.Scheme == "lmtp+unix"
	mode := st.StartTLS
	if network == "unix" {
		mode = TLSNone // a local socket: nobody on the path
	}
	tc := &tls.Config{
		ServerName: t.Host,
		RootCAs:    o.RootCAs,
		// Opportunistic TLS without verification still stops passive
		// eavesdropping on the addresses asked.
		InsecureSkipVerify: !st.TLSVerify,
		MinVersion:         tls.VersionTLS12,
	}
	dial := func(ctx context.Context, mode string) (*storeConn, error) {
		d := net.Dialer{Timeout: st.ConnectTimeout}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		c := &storeConn{nc: nc, host: display(t.Host, network, addr, nc.RemoteAddr())}
		stop := context.AfterFunc(ctx, func() { nc.Close() })
		phase, err := s.open(ctx, c, lmtp, mode, tc)
		if !stop() || err != nil && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		if err == nil {
			return c, nil
		}
		nc.Close()
		var he *starttls.HandshakeError
		switch {
		case phase == "":
			return nil, err
		case errors.As(err, &he):
			return nil, fmt.Errorf("%s: %w", phase, err) // the pool may try again in clear
		}
		return nil, fmt.Errorf("%s: %s", phase, describe(err))
	}
	s.pool = newPool(o.MaxConnections, o.IdleTimeout, func(ctx context.Context) (*storeConn, error) {
		c, err := dial(ctx, mode)
		var he *starttls.HandshakeError
		if errors.As(err, &he) && mode != TLSRequired && !st.TLSVerify && ctx.Err() == nil {
			// A store whose TLS is broken is asked in clear, as delivery
			// to it goes on in clear.
			c, err = dial(ctx, TLSNone)
		}
		return c, err
	})
	return s
}

// open greets the store on c.nc and, per mode, starts TLS. A failure
// comes with the step that failed ("greeting/LHLO"), or none when the
// error says it all.
func (s *calloutStore) open(ctx context.Context, c *storeConn, lmtp bool, mode string, tc *tls.Config) (phase string, err error) {
	hello := "EHLO"
	if lmtp {
		hello = "LHLO"
	}
	c.cl = s.client(c.nc, lmtp)
	if err := c.cl.Hello(s.hostname); err != nil {
		return "greeting/" + hello, err
	}
	if mode == TLSNone {
		return "", nil
	}
	if offered, _ := c.cl.Extension("STARTTLS"); !offered {
		if mode == TLSRequired {
			c.cl.Quit()
			return "", errors.New(`starttls = "required", but the store did not offer STARTTLS`)
		}
		return "", nil
	}
	tlsConn, err := starttls.Client(ctx, c.nc, tc, s.timeout)
	var te *textproto.Error
	switch {
	case err == nil:
	case errors.As(err, &te) && mode != TLSRequired:
		return "", nil // refused: RFC 3207 lets the client go on in clear
	case errors.As(err, &te):
		c.cl.Quit()
		return "", fmt.Errorf(`starttls = "required", but STARTTLS was refused: %s`, smtptext.CleanMax(fmt.Sprintf("%d %s", te.Code, te.Msg), maxReply))
	default:
		return "STARTTLS", err
	}
	// A new client forgets what was learnt in clear, as RFC 3207 demands;
	// it waits for a greeting, which after STARTTLS only we can supply.
	// c.nc stays the raw connection: closing it is what stops a lookup.
	c.cl = s.client(&greeted{Conn: tlsConn, greeting: []byte("220 TLS session started\r\n")}, lmtp)
	if err := c.cl.Hello(s.hostname); err != nil {
		return hello + " after STARTTLS", err
	}
	return "", nil
}

func (s *calloutStore) client(nc net.Conn, lmtp bool) *smtp.Client {
	var cl *smtp.Client
	if lmtp {
		cl = smtp.NewClientLMTP(nc)
	} else {
		cl = smtp.NewClient(nc)
	}
	cl.CommandTimeout = s.timeout
	return cl
}

// greeted hands out greeting before what the connection reads.
type greeted struct {
	net.Conn
	greeting []byte
}

func (g *greeted) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// endpoint is where t is dialled: its socket for lmtp+unix, else TCP.
func (t Target) endpoint() (network, addr string) {
	if t.Scheme == "lmtp+unix" {
		return "unix", t.Path
	}
	return "tcp", net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// display is the store as Exim names a host in a callout's log line,
// "NAME [IP]"; a unix socket is its path.
func display(host, network, addr string, remote net.Addr) string {
	if network == "unix" {
		return addr
	}
	ip := host
	if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		ip = ap.Addr().Unmap().WithZone("").String()
	}
	return host + " [" + ip + "]"
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
		res = Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: MAIL FROM:<> refused: %s", s.where, reply(se))}
		if se.Code/100 == 5 {
			s.refused(c, "MAIL FROM:<>", se)
		}
		return res, false, false
	}
	err := c.cl.Rcpt(wire(key), nil)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		res = Result{Verdict: Found, Detail: fmt.Sprintf("accepted by %s", s.where)}
	case !errors.As(err, &se):
		return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: RCPT TO: %s", s.where, describe(err))}, false, false
	default:
		res = s.rcptRefused(c, key, se)
	}
	return res, c.cl.Reset() == nil, false
}

// rcptRefused is what a refused RCPT TO says of the user. Only a
// mailbox-address status (X.1.x) or, without an enhanced code, one of
// the replies that mean a bad mailbox says there is no such user; a full
// mailbox (X.2.2) says there is one; any other refusal is the store
// refusing our verification, which an admin has to see, and says
// nothing of the user.
func (s *calloutStore) rcptRefused(c *storeConn, key string, se *smtp.SMTPError) Result {
	enh := se.EnhancedCode
	switch {
	case enh[1] == 2 && enh[2] == 2:
		return Result{Verdict: Found, Detail: fmt.Sprintf("over quota at %s: %s", s.where, reply(se))}
	case se.Code/100 == 5 && (se.Code == 550 || se.Code == 551 || se.Code == 553) && (enh == smtp.EnhancedCode{} || enh[1] == 1):
		// Exim's words for a failed recipient callout.
		return Result{Verdict: NotFound, Detail: fmt.Sprintf("response to \"RCPT TO:<%s>\" from %s was: %s", key, c.host, reply(se))}
	case se.Code/100 == 5:
		s.refused(c, "RCPT TO:<"+key+">", se)
		return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: RCPT TO:<%s> refused: %s", s.where, key, reply(se))}
	}
	return Result{Verdict: Defer, Detail: fmt.Sprintf("callout to %s: RCPT TO:<%s>: %s", s.where, key, reply(se))}
}

// panicEvery bounds the paniclog lines of a store that keeps refusing
// with one reply, whatever the address: one a minute, not one per RCPT.
const panicEvery = time.Minute

// refused writes a paniclog line for a store that refuses our
// verification itself: a configuration problem, not an answer.
func (s *calloutStore) refused(c *storeConn, cmd string, se *smtp.SMTPError) {
	why := reply(se)
	now := time.Now()
	s.mu.Lock()
	same := why == s.lastPanic && now.Sub(s.panicAt) < panicEvery
	if !same {
		s.lastPanic, s.panicAt = why, now
	}
	s.mu.Unlock()
	if !same {
		s.panic(fmt.Sprintf("recipient verify: the store %s refuses our callouts: response to \"%s\" from %s was: %s",
			s.where, cmd, c.host, why))
	}
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
