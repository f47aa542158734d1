package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"mxgate/starttls"
)

// smtpTransport speaks SMTP or LMTP to one downstream host or unix socket:
// the [downstream] transport and the smarthost.
type smtpTransport struct{ p *peer }

// Close ends the sessions kept open between messages (QUIT, as long as
// ctx lets it); the transport must not be used after it.
func (t *smtpTransport) Close(ctx context.Context) { t.p.pool.Close(ctx) }

func (t *smtpTransport) Name() string {
	if t.p.lmtp {
		return "lmtp"
	}
	return "smtp"
}

func (t *smtpTransport) Deliver(ctx context.Context, m *Message) []Result {
	rs, _ := t.p.deliver(ctx, m)
	return rs
}

// peer is one server a session talks to, and how: the fixed downstream,
// or one address of an MX host. Every SMTP and LMTP session of the
// program goes through peer.deliver.
type peer struct {
	lmtp        bool
	network     string // "tcp" or "unix"
	addr        string // host:port or socket path
	host        string // TLS server name and the name in "name [ip]"; "" for unix
	o           Options
	tls         tlsPolicy
	implicitTLS bool  // smtps: TLS from the first byte
	pool        *pool // the sessions kept open between messages
}

func (p *peer) proto() string {
	if p.lmtp {
		return "LMTP"
	}
	return "SMTP"
}

// tlsPolicy is how a session uses TLS with its peer.
type tlsPolicy struct {
	mode  string         // tlsOpportunistic, tlsNone or tlsRequired
	pkix  bool           // verify the chain against roots and the name host
	roots *x509.CertPool // nil = the system's
	// check, when set, must accept the server's certificates (DANE);
	// its error fails the handshake.
	check func(tls.ConnectionState) error
	// observe, when set, sees every completed handshake (MTA-STS
	// testing mode reports what enforcing would have refused), and clear
	// every session that goes on without TLS.
	observe func(tls.ConnectionState)
	clear   func()
	// why names what demands TLS in Err ("" for starttls = "required"):
	// "MTA-STS policy of example.test".
	why string
}

// verifies reports whether the session checks the server's certificate,
// when falling back to clear text would defeat the point.
func (tp tlsPolicy) verifies() bool { return tp.pkix || tp.check != nil }

// required is the Err prefix for a session that must be encrypted.
func (tp tlsPolicy) required() string {
	if tp.why == "" {
		return "a TLS session is required"
	}
	return "a TLS session is required (" + tp.why + ")"
}

// deliver makes one attempt. When an opportunistic TLS handshake fails the
// connection is unusable, so, like Exim's tls_tempfail_tryclear, it connects
// once more and stays in clear text — unless certificates are verified, when
// clear text would defeat the point. own[i] tells that recipient i's
// result is its own (a reply to its RCPT or after LMTP's dot, an address
// that cannot be sent), not the session's: the MX transport tries the next
// host only for the others.
func (p *peer) deliver(ctx context.Context, m *Message) (rs []Result, own []bool) {
	rs, own, retryClear := p.attempt(ctx, m, p.tls.mode)
	if retryClear {
		rs, own, _ = p.attempt(ctx, m, tlsNone)
	}
	return rs, own
}

// rcptGroup is one distinct wire address and the indexes of the input
// recipients that map to it. Each is sent once: LMTP replies are keyed by
// address in go-smtp, and a duplicate RCPT would mean a duplicate delivery.
type rcptGroup struct {
	wire string
	idx  []int
	done bool
}

// session is the state of one attempt: results so far and the recipients
// still undecided.
type session struct {
	p      *peer
	ctx    context.Context
	rs     []Result
	own    []bool
	groups []*rcptGroup
	host   string
	// rejected, when set, is the whole result: the sender cannot be sent.
	rejected []Result
}

func (s *session) set(g *rcptGroup, st Status, why Reason, reply, err string) {
	for _, i := range g.idx {
		s.rs[i].Status, s.rs[i].Reason, s.rs[i].Reply, s.rs[i].Err = st, why, reply, err
	}
	g.done = true
}

// setOwn decides g from its own reply or address.
func (s *session) setOwn(g *rcptGroup, st Status, why Reason, reply, err string) {
	s.set(g, st, why, reply, err)
	for _, i := range g.idx {
		s.own[i] = true
	}
}

// rest decides every recipient not decided yet.
func (s *session) rest(st Status, why Reason, reply, err string) {
	for _, g := range s.groups {
		if !g.done {
			s.set(g, st, why, reply, err)
		}
	}
}

// fail decides the rest from err at step after, and reports whether the
// server answered (the connection is still good for a polite QUIT).
func (s *session) fail(after string, err error) (replied bool) {
	st, why, reply, text := outcome(s.ctx, s.p.proto(), after, err)
	s.rest(st, why, reply, text)
	return reply != ""
}

// attempt is one try at m over a session from p's pool: a kept one, or a
// new one opened with tlsMode (retryClear: its opportunistic handshake
// failed). A kept session the server had ended is replaced once.
func (p *peer) attempt(ctx context.Context, m *Message, tlsMode string) (rs []Result, own []bool, retryClear bool) {
	s := p.newSession(ctx, m)
	if s.rejected != nil {
		return s.rejected, s.own, false
	}
	if len(s.groups) == 0 {
		return s.rs, s.own, false
	}
	defer func() {
		for _, g := range s.groups {
			for _, i := range g.idx {
				s.rs[i].Host = s.host
			}
		}
	}()

	// Open the spooled message before bothering the remote host: a local
	// problem must not look like a remote one.
	src, err := m.open()
	if err != nil {
		s.host = p.display("")
		s.rest(Deferred, LocalError, "", "error opening message: "+err.Error())
		return s.rs, s.own, false
	}
	defer src.Close()

	l, err := p.pool.get(ctx, destKey{p.network, p.addr, p.host})
	if err != nil {
		s.host = p.display("")
		s.rest(Deferred, Abandoned, "", "delivery abandoned: "+err.Error())
		return s.rs, s.own, false
	}
	healthy := false
	defer func() { l.release(healthy) }()
	for try := 0; ; try++ {
		if l.c != nil && !p.accepts(l.c) {
			// Opened under another TLS policy that this one does not
			// trust: its slot serves a new connection.
			l.c.quit(ctx)
			l.c = nil
		}
		reused := l.c != nil
		if reused {
			p.replayTLS(l.c)
		} else {
			c, retry := p.open(ctx, s, tlsMode)
			if c == nil {
				return s.rs, s.own, retry
			}
			l.c = c
		}
		s.host = l.c.host
		// Unblocks whatever read or write is in progress when ctx ends.
		raw := l.c.raw
		stop := context.AfterFunc(ctx, func() { raw.Close() })
		var stale bool
		stale, healthy = p.transaction(s, l.c, m, src, reused)
		if !stop() {
			healthy = false
		}
		if stale && try == 0 {
			// The server ended a session it had kept idle (closed it,
			// or 421): nothing was delivered, so a new connection tries
			// the whole transaction again.
			l.c.c.Close()
			l.c = nil
			s = p.newSession(ctx, m)
			continue
		}
		return s.rs, s.own, false
	}
}

// newSession is the state of a transaction of m, before any command: its
// recipients grouped by wire address, those that cannot be sent decided.
// rejected is set when the sender cannot be sent: the whole result.
func (p *peer) newSession(ctx context.Context, m *Message) *session {
	s := &session{p: p, ctx: ctx, rs: results(m, "", Deferred, NoReason, ""), own: make([]bool, len(m.Recipients))}
	if err := checkAddr(m.Sender); err != nil {
		for i := range s.own {
			s.own[i] = true
		}
		s.rejected = results(m, "", Failed, BadAddress, "sender "+err.Error())
		return s
	}
	byWire := make(map[string]*rcptGroup)
	for i, r := range m.Recipients {
		if err := checkAddr(r); err != nil {
			s.rs[i].Status, s.rs[i].Reason, s.rs[i].Err = Failed, BadAddress, err.Error()
			s.own[i] = true
			continue
		}
		w := wireAddr(r)
		g := byWire[w]
		if g == nil {
			g = &rcptGroup{wire: w}
			byWire[w] = g
			s.groups = append(s.groups, g)
		}
		g.idx = append(g.idx, i)
	}
	return s
}

// accepts reports whether c, opened for another delivery, satisfies p's
// TLS policy: an MX host's connection may have been opened for a domain
// whose policy asked less (opportunistic) than this one's (MTA-STS
// enforce, DANE). Its certificates are checked again, as a handshake
// would.
func (p *peer) accepts(c *conn) bool {
	if c.owner == p {
		return true
	}
	if c.tls == nil {
		return p.tls.mode != tlsRequired
	}
	if p.tls.pkix && verifyPKIX(*c.tls, p.host, p.tls.roots) != nil {
		return false
	}
	return p.tls.check == nil || p.tls.check(*c.tls) == nil
}

// replayTLS tells p's policy about a reused connection as a new one's
// handshake, or its absence, would have: MTA-STS testing mode logs per
// message.
func (p *peer) replayTLS(c *conn) {
	if c.owner == p {
		return
	}
	switch {
	case c.tls != nil && p.tls.observe != nil:
		p.tls.observe(*c.tls)
	case c.tls == nil && p.network == "tcp" && p.tls.clear != nil:
		p.tls.clear()
	}
}

// open makes a new session ready for MAIL: connect, TLS, EHLO or LHLO,
// AUTH. On failure it returns nil, with every recipient decided or (retry)
// an opportunistic handshake that failed, to be tried again in clear.
func (p *peer) open(ctx context.Context, s *session, tlsMode string) (cn *conn, retry bool) {
	d := net.Dialer{Timeout: p.o.ConnectTimeout}
	raw, err := d.DialContext(ctx, p.network, p.addr)
	if err != nil {
		s.host = p.display("")
		why, text := dialError(ctx, err)
		s.rest(Deferred, why, "", text)
		return nil, false
	}
	s.host = p.display(raw.RemoteAddr().String())
	// Unblocks whatever read or write is in progress when ctx ends.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	wc := &wireConn{Conn: raw, writeTimeout: p.o.DataTimeout}
	encrypted := false
	if p.implicitTLS {
		if err := p.handshake(ctx, wc); err != nil {
			why, text := TLSFailure, "TLS session failure: "+errors.Unwrap(err).Error()
			if ctx.Err() != nil {
				why, text = trouble(ctx, "", err)
			}
			s.rest(Deferred, why, "", text)
			raw.Close()
			return nil, false
		}
		encrypted = true
	}
	c := p.client(wc)
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()

	if err := c.Hello(p.o.Hostname); err != nil {
		after := "initial connection"
		if wc.written > 0 {
			after = p.helloVerb() + " " + p.o.Hostname
		}
		s.fail(after, err)
		return nil, false
	}

	if p.network == "tcp" && !encrypted && tlsMode != tlsNone {
		offered, _ := c.Extension("STARTTLS")
		switch {
		case offered:
			err := p.startTLS(ctx, wc)
			var he *starttls.HandshakeError
			var te *textproto.Error
			switch {
			case err == nil:
				encrypted = true
				c = p.client(wc)
				if err := c.Hello(p.o.Hostname); err != nil {
					s.fail(p.helloVerb()+" "+p.o.Hostname, err)
					return nil, false
				}
			case errors.As(err, &he) && tlsMode == tlsOpportunistic && !p.tls.verifies():
				return nil, true
			case errors.As(err, &he):
				s.rest(Deferred, TLSFailure, "", "TLS session failure: "+he.Err.Error())
				return nil, false
			case errors.As(err, &te) && tlsMode == tlsOpportunistic:
				// Refused STARTTLS (RFC 3207: the client may go on in clear).
			case errors.As(err, &te):
				_, _, reply, _ := outcome(ctx, p.proto(), "STARTTLS", err)
				s.rest(Deferred, TLSRequired, reply, p.tls.required()+", but STARTTLS was refused: "+reply)
				c.Quit()
				return nil, false
			default:
				why, text := trouble(ctx, "in response to STARTTLS", err)
				s.rest(Deferred, why, "", text)
				return nil, false
			}
		case tlsMode == tlsRequired:
			s.rest(Deferred, TLSRequired, "", p.tls.required()+", but the server did not offer TLS support")
			c.Quit()
			return nil, false
		}
	}

	if !encrypted && p.network == "tcp" && p.tls.clear != nil {
		p.tls.clear()
	}
	if p.o.AuthUser != "" && !p.authenticate(s, c, encrypted) {
		return nil, false
	}
	cn = &conn{raw: raw, c: c, host: s.host, owner: p}
	if tc, isTLS := wc.Conn.(*tls.Conn); isTLS {
		cs := tc.ConnectionState()
		cn.tls = &cs
	}
	if !stop() {
		s.rest(Deferred, Abandoned, "", "delivery abandoned: "+context.Cause(ctx).Error())
		return nil, false
	}
	ok = true
	return cn, false
}

// transaction sends m on cn, which is ready for MAIL (reused: after a
// transaction, so RSET first). stale says that a reused connection turned
// out to be one the server had ended (RSET failed, a 421, the connection
// closed) before anything was delivered: the caller tries again on a new
// one. healthy says the session is still in step, fit for another
// message.
func (p *peer) transaction(s *session, cn *conn, m *Message, src io.Reader, reused bool) (stale, healthy bool) {
	c := cn.c
	opts := &smtp.MailOptions{Size: m.Size}
	if utf8, _ := c.Extension("SMTPUTF8"); utf8 {
		opts.UTF8 = !isASCII(m.Sender) || slices.ContainsFunc(s.groups, func(g *rcptGroup) bool { return !isASCII(g.wire) })
	} else {
		// Without SMTPUTF8 a non-ASCII address cannot be sent at all, now
		// or later: the sender's fails the message, a recipient's fails
		// that recipient.
		const noUTF8 = "a non-ASCII address needs SMTPUTF8, which the remote host does not offer"
		if !isASCII(m.Sender) {
			s.rest(Failed, BadAddress, "", "sender "+noUTF8)
			return false, true
		}
		for _, g := range s.groups {
			if !isASCII(g.wire) {
				s.setOwn(g, Failed, BadAddress, "", noUTF8)
			}
		}
		if !slices.ContainsFunc(s.groups, func(g *rcptGroup) bool { return !g.done }) {
			return false, true
		}
	}
	var pending []*rcptGroup
	var to []string
	for _, g := range s.groups {
		if !g.done {
			pending = append(pending, g)
			to = append(to, g.wire)
		}
	}
	from := wireAddr(m.Sender)
	cn.messages++
	resetErr, mailErr, rcptErrs := c.Envelope(reused, from, opts, to)
	if resetErr != nil {
		return true, false
	}
	if mailErr != nil {
		if reused && ended(s.ctx, mailErr) {
			return true, false
		}
		return false, s.fail("MAIL FROM:<"+from+">", mailErr) && !is421(mailErr)
	}
	if reused && slices.ContainsFunc(rcptErrs, func(err error) bool { return err != nil && ended(s.ctx, err) }) {
		return true, false
	}
	var accepted []*rcptGroup
	healthy = true
	for i, g := range pending {
		err := rcptErrs[i]
		if err == nil {
			accepted = append(accepted, g)
			continue
		}
		st, why, reply, text := outcome(s.ctx, p.proto(), "RCPT TO:<"+g.wire+">", err)
		if reply == "" {
			s.rest(st, why, "", text)
			return false, false
		}
		healthy = healthy && !is421(err)
		s.setOwn(g, st, why, reply, text)
	}
	if len(accepted) == 0 {
		return false, healthy
	}

	w, err := c.DataWire()
	if err != nil {
		if reused && ended(s.ctx, err) && healthy {
			return true, false
		}
		return false, s.fail("DATA", err) && healthy && !is421(err)
	}
	body := &wireBody{w: w}
	_, err = io.Copy(body, sourceReader{src})
	if err == nil {
		err = body.finish()
	}
	if err != nil {
		// Dropping the connection is the only way to abort DATA: the
		// server discards a message that did not end with the dot.
		why, text := trouble(s.ctx, "while sending the message body", err)
		s.rest(Deferred, why, "", text)
		return false, false
	}

	if p.lmtp {
		return false, p.lmtpReplies(s, w, accepted) && healthy
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return false, s.fail("end of data", err) && healthy && !is421(err)
	}
	s.rest(Delivered, NoReason, "250 "+oneLine(resp.StatusText), "")
	return false, healthy
}

// is421 reports a 421 reply: the server is closing the session.
func is421(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code == 421
}

// ended reports whether err says the server ended the session (a 421, or
// the connection closed), rather than refused a command or ran out of
// time.
func ended(ctx context.Context, err error) bool {
	if is421(err) {
		return true
	}
	why, _ := trouble(ctx, "", err)
	return why == ConnectionLost
}

// authenticate logs in to a smarthost with AUTH PLAIN, or LOGIN when the
// server offers only that, and reports whether it may go on. A password
// never crosses the network in clear text, and a refused login defers
// rather than bounces: the fix is in our configuration, not the message.
func (p *peer) authenticate(s *session, c *smtp.Client, encrypted bool) bool {
	if !encrypted {
		s.rest(Deferred, AuthFailed, "", "AUTH is configured, but the session is not encrypted: the password is not sent in clear text")
		c.Quit()
		return false
	}
	var mech string
	var client sasl.Client
	switch {
	case c.SupportsAuth(sasl.Plain):
		mech, client = sasl.Plain, sasl.NewPlainClient("", p.o.AuthUser, p.o.AuthPassword)
	case c.SupportsAuth(sasl.Login):
		mech, client = sasl.Login, sasl.NewLoginClient(p.o.AuthUser, p.o.AuthPassword)
	default:
		s.rest(Deferred, AuthFailed, "", "AUTH is configured, but the server offers neither AUTH PLAIN nor AUTH LOGIN")
		c.Quit()
		return false
	}
	err := c.Auth(client)
	if err == nil {
		return true
	}
	_, why, reply, text := outcome(s.ctx, p.proto(), "AUTH "+mech, err)
	if reply != "" {
		why = AuthFailed
	}
	s.rest(Deferred, why, reply, text)
	if reply != "" {
		c.Quit()
	}
	return false
}

// lmtpReplies decides each accepted recipient from its own reply after the
// final dot (RFC 2033). Replies missing because the connection broke are
// deferrals. It reports whether every reply came, none a 421: the session
// is fit for another message.
func (p *peer) lmtpReplies(s *session, w *smtp.DataCommand, accepted []*rcptGroup) (healthy bool) {
	ok, err := w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	errors.As(err, &perRcpt)
	_, onlyReplies := err.(smtp.LMTPDataError)
	healthy = err == nil || onlyReplies
	for _, se := range perRcpt {
		healthy = healthy && se.Code != 421
	}
	connErr := err
	if j, isJoin := err.(interface{ Unwrap() []error }); isJoin && perRcpt != nil {
		// go-smtp joins the connection error with the replies it had.
		if errs := j.Unwrap(); len(errs) == 2 {
			connErr = errs[0]
		}
	}
	for _, g := range accepted {
		if r, found := ok[g.wire]; found {
			s.setOwn(g, Delivered, NoReason, "250 "+oneLine(r.StatusText), "")
			continue
		}
		if se, found := perRcpt[g.wire]; found {
			st, why, reply, text := outcome(s.ctx, p.proto(), "end of data", se)
			s.setOwn(g, st, why, reply, text)
			continue
		}
		if connErr == nil {
			connErr = io.ErrUnexpectedEOF
		}
		why, text := trouble(s.ctx, "in response to end of data", connErr)
		s.set(g, Deferred, why, "", text)
		healthy = false
	}
	return healthy
}

func (p *peer) client(wc *wireConn) *smtp.Client {
	var c *smtp.Client
	if p.lmtp {
		c = smtp.NewClientLMTP(wc)
	} else {
		c = smtp.NewClient(wc)
	}
	c.CommandTimeout = p.o.CommandTimeout
	c.SubmissionTimeout = p.o.DataTimeout
	return c
}

func (p *peer) helloVerb() string {
	if p.lmtp {
		return "LHLO"
	}
	return "EHLO"
}

// display is the host as the mainlog's H= shows it: "name [ip]", the socket
// path for LMTP over a unix socket. remote is the connection's remote
// address; before a connection exists only a literal IP host is known.
func (p *peer) display(remote string) string {
	if p.network == "unix" {
		return p.addr
	}
	ip := p.host
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = ap.Addr().Unmap().WithZone("").String()
	} else if ap, err := netip.ParseAddrPort(p.addr); err == nil {
		ip = ap.Addr().Unmap().WithZone("").String()
	} else if _, err := netip.ParseAddr(p.host); err != nil {
		return p.host
	}
	return p.host + " [" + ip + "]"
}

// startTLS speaks STARTTLS on wc's connection and puts the TLS connection
// under wc. The caller makes a new client on wc; the greeting that client
// waits for is supplied by wc, since after STARTTLS the server sends none.
func (p *peer) startTLS(ctx context.Context, wc *wireConn) error {
	tc, err := starttls.Client(ctx, wc.Conn, p.tlsConfig(), p.o.CommandTimeout)
	if err != nil {
		return err
	}
	wc.Conn = tc
	wc.greeting = []byte("220 " + p.host + " TLS session started\r\n")
	return nil
}

// handshake runs the implicit-TLS handshake on wc's connection under the
// CommandTimeout, and on success puts the TLS connection under wc. Its
// error is a *starttls.HandshakeError.
func (p *peer) handshake(ctx context.Context, wc *wireConn) error {
	tc, err := starttls.Handshake(ctx, wc.Conn, p.tlsConfig(), p.o.CommandTimeout)
	if err != nil {
		return err
	}
	wc.Conn = tc
	return nil
}

func (p *peer) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		ServerName: p.host,
		RootCAs:    p.tls.roots,
		// Opportunistic TLS without verification is still better than
		// clear text: it stops passive eavesdropping.
		InsecureSkipVerify: !p.tls.pkix,
		MinVersion:         tls.VersionTLS12,
	}
	if p.tls.check != nil || p.tls.observe != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if p.tls.observe != nil {
				p.tls.observe(cs)
			}
			if p.tls.check != nil {
				return p.tls.check(cs)
			}
			return nil
		}
	}
	return cfg
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
