package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/filters"
	"mxgate/hostlookup"
	"mxgate/mainlog"
	"mxgate/smtptext"
)

// listener wraps a TCP listener: it enforces the connection limits before
// go-smtp sees a connection (go-smtp has no connect hook) and hands out
// *conn so the gateway can watch what go-smtp writes.
type listener struct {
	net.Listener
	srv *Server
	// implicitTLS: a refused client expects a TLS handshake, so a
	// plaintext 421 would only be noise; it is just closed.
	implicitTLS bool
	// submission: a listen_submission listener, which offers AUTH after
	// STARTTLS.
	submission bool
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			c.Close()
			l.srv.log.Main("", fmt.Sprintf("connection from %v refused: unparsable peer address: %v", c.RemoteAddr(), err))
			continue
		}
		ip := ap.Addr().Unmap()
		gc, why := l.srv.admit(c, ip, int(ap.Port()))
		if gc != nil {
			gc.mayAuth = l.srv.auth != nil && (l.implicitTLS || l.submission)
			gc.listener = l.name()
			gc.emitConnect()
			gc.open(l.implicitTLS)
			return gc, nil
		}
		l.srv.log.Main("", fmt.Sprintf("Connection from [%s] refused: %s", ip, why))
		l.srv.emitConnRefused(nil, ip, l.name(), why, nil)
		l.srv.refuse(c, l.implicitTLS)
	}
}

// name is the listener's name in events: "smtp", "smtps", "submission".
func (l *listener) name() string {
	switch {
	case l.implicitTLS:
		return "smtps"
	case l.submission:
		return "submission"
	}
	return "smtp"
}

// conn is a client connection as go-smtp sees it (under TLS when the
// client used STARTTLS or implicit TLS). It fixes what go-smtp leaves to
// the application:
//   - after a failed STARTTLS handshake go-smtp writes "550 5.0.0
//     Handshake error" and carries on in plaintext with pipelined
//     commands still buffered; conn closes the connection on that write;
//   - a session cannot close its connection after a reply; closeAfterWrite
//     asks conn to do it right after the next reply is written;
//   - a read timeout is sticky, so a client that stalled in DATA or
//     between BDAT chunks never has its later bytes read as commands
//     (go-smtp issue #196);
//   - go-smtp has no connect hook, so the checks' connect stage runs on
//     the first write, and a client they refuse gets its 554 in place of
//     the greeting.
type conn struct {
	net.Conn
	srv  *Server
	gen  *generation // the rules of this connection, from its accept to its end
	ip   netip.Addr
	port int

	// name is the connection's Conn in events ("" when nothing listens),
	// start its admission; listener the listener's name. txn counts its
	// MAIL commands, across STARTTLS.
	name, listener string
	start          time.Time
	txn            atomic.Int32

	// ctx ends when the connection closes: lookups for a client that has
	// gone are not waited for.
	ctx    context.Context
	cancel context.CancelFunc

	// lookup is the client's host name lookup, started as it is
	// admitted (nil: none); host is its result, set before the connect
	// stage, so every command's H= and the Received header have it.
	// fconn is what the checks know of the client: the name is added to
	// it (under flowMu) before their connect stage.
	lookup *hostlookup.Pending
	host   hostlookup.Result
	fconn  *filters.Conn

	// flow is the checks' state for this connection, opened before go-smtp
	// sees the conn; flowMu keeps one goroutine at a time in it (with
	// CHUNKING, Data runs beside the connection's goroutine).
	flowMu      sync.Mutex
	flow        *filters.Flow
	implicitTLS bool
	// mayAuth: AUTH is offered here (a submission or implicit TLS
	// listener with [auth]); go-smtp itself keeps it off before TLS.
	mayAuth bool
	// authUser and authMech are the client's login once AUTH succeeded
	// ("plain", "login"); kept on the conn, which outlives go-smtp's
	// sessions.
	authUser, authMech string
	greetOnce          sync.Once
	// refusal is the connect stage's refusal of a client whose greeting is
	// encrypted: it answers every MAIL instead.
	refusal      *filters.Verdict
	refusalCheck string // the check that refused

	closed    atomic.Bool
	closeOnce sync.Once

	mu            sync.Mutex
	closeNextW    bool
	startTLS      bool  // go-smtp answered STARTTLS with 220
	ehlo          bool  // the last greeting was EHLO (false: HELO)
	readErr       error // sticky read timeout
	errorsCounted int
	// emitted is the last refusal the session made a Refused event of;
	// errorReply makes one of any other (go-smtp's own).
	emitted smtp.SMTPError
}

var (
	replyStartTLS     = []byte("220 2.0.0 Ready to start TLS\r\n")
	replyHandshakeErr = []byte("550 5.0.0 Handshake error\r\n")
	replyEHLO         = []byte("250-Hello ")
	replyHELO         = []byte("250 2.0.0 Hello ")
)

func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.readErr
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		c.readErr = err
		c.mu.Unlock()
	}
	return n, err
}

// Write passes p on and then looks at it. go-smtp writes each reply line
// with one Write, so a reply is recognised by equality or prefix; under
// TLS the bytes are records and match nothing, which is fine: the greeting
// verb only matters in plaintext (TLS sessions are "esmtps" anyway) and
// STARTTLS is over by then.
func (c *conn) Write(p []byte) (int, error) {
	var refusal []byte
	c.greetOnce.Do(func() { refusal = c.connect() })
	if refusal != nil {
		_, err := c.Conn.Write(refusal)
		c.Close()
		// go-smtp stops at its next read, which the close fails.
		return len(p), err
	}
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	closeNow := c.closeNextW
	switch {
	case bytes.Equal(p, replyStartTLS):
		c.startTLS = true
	case c.startTLS && bytes.Equal(p, replyHandshakeErr):
		closeNow = true
	case bytes.HasPrefix(p, replyEHLO):
		c.ehlo = true
	case bytes.HasPrefix(p, replyHELO):
		c.ehlo = false
	}
	c.mu.Unlock()
	if closeNow {
		c.Close()
	}
	return n, err
}

// SetReadDeadline refuses once the connection is closed, whatever the
// socket says: go-smtp sets the deadline before reading the next command
// and stops on this error instead of running commands still buffered.
func (c *conn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.cancel()
		// Free the slot before the client can see the close, so it may
		// reconnect at once.
		c.srv.release(c)
		err = c.Conn.Close()
		// After the cancel, a Data in the checks returns soon.
		c.checks(func(f *filters.Flow) { f.Close() })
		// Only now may the generation's checks close.
		c.srv.leave(c.gen)
		c.emitDisconnect()
	})
	return err
}

// checks runs fn with the connection's checks, one goroutine at a time;
// the lock is released however fn ends.
func (c *conn) checks(fn func(*filters.Flow)) {
	c.flowMu.Lock()
	defer c.flowMu.Unlock()
	fn(c.flow)
}

// open starts the host name lookup of a client just admitted and opens
// the checks' session: they start their lookups (the DNS lists of its
// IP) while go-smtp greets it.
func (c *conn) open(implicitTLS bool) {
	c.implicitTLS = implicitTLS
	if c.srv.hosts != nil {
		c.lookup = c.srv.hosts.Start(c.ctx, c.ip)
	}
	c.fconn = &filters.Conn{IP: c.ip, Port: c.port, ImplicitTLS: implicitTLS}
	c.flow = c.gen.pipeline.Open(c.ctx, c.fconn)
}

// resolveHost waits for the host name lookup (bounded by
// host_lookup.timeout) and hands its result to the checks. A client
// without a name is served all the same: only Exim's "no host name
// found" line marks one whose address has no name at all.
func (c *conn) resolveHost() {
	s := c.srv
	if c.lookup == nil {
		c.checks(func(*filters.Flow) { c.fconn.HostResolve = hostlookup.Fail.String() })
		return
	}
	s.trace.printf("looking up host name for %s", c.ip)
	res := c.lookup.Wait()
	for _, line := range res.Trace(c.ip) {
		s.trace.printf("%s", line)
	}
	if res.Status == hostlookup.Fail {
		s.log.Main("", "no host name found for IP address "+c.ip.String())
	}
	c.host = res
	c.checks(func(*filters.Flow) {
		c.fconn.HostName, c.fconn.HostPTR, c.fconn.HostResolve = res.Name, res.PTR, res.Status.String()
	})
}

// connect runs the checks' connect stage before the greeting and returns
// the reply that replaces it, or nil. Under implicit TLS a refusal could
// not be read in place of the greeting: it is kept for the first MAIL.
func (c *conn) connect() []byte {
	s := c.srv
	c.resolveHost()
	host := mainlog.Host(c.host.Name, "", c.ip)
	var out filters.Outcome
	c.checks(func(f *filters.Flow) { out = f.Connect(c.ctx) })
	s.report(out, "", host, c, 0)
	v := out.Verdict
	if !v.Refuses() {
		return nil
	}
	// Kept for MAIL too: under implicit TLS the refusal cannot replace
	// the greeting, and whatever reached MAIL first must not pass.
	c.refusal, c.refusalCheck = &v, decider(out)
	if c.implicitTLS {
		return nil
	}
	s.log.Reject("", fmt.Sprintf("H=%s %s", host, RefusalLog(v, `connection in "connect" ACL`)))
	s.emitConnRefused(c, c.ip, c.listener, "", &out)
	return []byte(strings.Join(smtptext.Lines(v.Code, v.Enhanced, v.Text), "\r\n") + "\r\n")
}

// connectRefusal is the connect stage's refusal kept for MAIL, or nil.
func (c *conn) connectRefusal() *filters.Verdict {
	c.greetOnce.Do(func() { c.connect() })
	return c.refusal
}

// closeAfterWrite makes the next write (the reply go-smtp is about to
// send for the current command) the last one.
func (c *conn) closeAfterWrite() {
	c.mu.Lock()
	c.closeNextW = true
	c.mu.Unlock()
}

// countError counts one error reply and returns the count so far on this
// connection (across STARTTLS, which starts a new go-smtp session).
func (c *conn) countError() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errorsCounted++
	return c.errorsCounted
}

// errorReply is go-smtp's ErrorReply hook (our fork, doc/go-smtp-fork.md):
// it sees every 4xx and 5xx reply of a session before it is written,
// whether go-smtp made it (syntax, sequence, unknown command) or a session
// method returned it (refusals), and on every transport. It counts them
// against smtp.max_errors; past the limit the reply becomes a 421 and
// go-smtp closes the connection after writing it. A 421 is not counted:
// the connection ends with it anyway.
func (s *Server) errorReply(sc *smtp.Conn, reply *smtp.SMTPError) *smtp.SMTPError {
	raw := sc.Conn()
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	c, ok := raw.(*conn)
	if ok {
		c.protocolRefused(sc, reply)
	}
	if reply.Code == 421 {
		return nil
	}
	if !ok || c.countError() <= c.gen.cfg.SMTP.MaxErrors {
		return nil
	}
	host := mainlog.Host(c.host.Name, SafeHelo(sc.Hostname()), c.ip)
	maxErrors := c.gen.cfg.SMTP.MaxErrors
	s.trace.printf("more than smtp.max_errors %d refusals: closing the connection", maxErrors)
	s.log.Reject("", fmt.Sprintf("SMTP call from %s dropped: too many syntax or protocol errors (more than smtp.max_errors=%d refusals)", host, maxErrors))
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: s.fixed.Hostname + " Too many errors, closing connection"}
}

func (c *conn) usedEHLO() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ehlo
}

// reasonShuttingDown is admit's why once Shutdown has begun.
const reasonShuttingDown = "shutting down"

// admit counts a new connection against the limits, or says why not.
func (s *Server) admit(c net.Conn, ip netip.Addr, port int) (*conn, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	limits := s.gen.cfg.SMTP
	switch {
	case s.draining:
		return nil, reasonShuttingDown
	case s.total >= limits.MaxConnections:
		return nil, "too many connections"
	case s.perIP[ip] >= limits.MaxConnectionsPerIP:
		return nil, "too many connections from that IP address"
	}
	s.total++
	s.perIP[ip]++
	s.gen.conns++
	gc := &conn{Conn: c, srv: s, gen: s.gen, ip: ip, port: port}
	gc.ctx, gc.cancel = context.WithCancel(s.ctx)
	s.conns[gc] = struct{}{}
	return gc, ""
}

func (s *Server) release(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	delete(s.conns, c)
}

// leave ends a connection's use of its generation; the last one to leave
// a replaced generation retires it.
func (s *Server) leave(g *generation) {
	s.mu.Lock()
	g.conns--
	last := g.replaced && g.conns == 0
	s.mu.Unlock()
	if last {
		g.retire()
	}
}

// refuse answers a connection over a limit without holding up the accept
// loop: a client that does not read cannot stall other arrivals.
func (s *Server) refuse(c net.Conn, implicitTLS bool) {
	s.mu.Lock()
	if implicitTLS || s.draining {
		s.mu.Unlock()
		c.Close()
		return
	}
	// Added under mu, so every Add happens before Shutdown's Wait.
	s.refusing.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.refusing.Done()
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(time.Duration(s.fixed.SMTP.CommandTimeout)))
		fmt.Fprintf(c, "421 4.7.0 %s Too many connections, try again later\r\n", s.fixed.Hostname)
	}()
}
