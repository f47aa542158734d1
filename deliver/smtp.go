package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpTransport speaks SMTP or LMTP to one downstream host or unix socket.
type smtpTransport struct {
	lmtp    bool
	network string // "tcp" or "unix"
	addr    string // host:port or socket path
	host    string // URL host: TLS server name and the name in "name [ip]"; "" for unix
	o       Options
}

func (t *smtpTransport) Name() string {
	if t.lmtp {
		return "lmtp"
	}
	return "smtp"
}

func (t *smtpTransport) proto() string {
	if t.lmtp {
		return "LMTP"
	}
	return "SMTP"
}

// Deliver makes one attempt. When an opportunistic TLS handshake fails the
// connection is unusable, so, like Exim's tls_tempfail_tryclear, it connects
// once more and stays in clear text — unless certificates are verified, when
// clear text would defeat the point.
func (t *smtpTransport) Deliver(ctx context.Context, m *Message) []Result {
	rs, retryClear := t.attempt(ctx, m, t.o.StartTLS)
	if retryClear {
		rs, _ = t.attempt(ctx, m, tlsNone)
	}
	return rs
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
	t      *smtpTransport
	ctx    context.Context
	rs     []Result
	groups []*rcptGroup
	host   string
}

func (s *session) set(g *rcptGroup, st Status, why Reason, reply, err string) {
	for _, i := range g.idx {
		s.rs[i].Status, s.rs[i].Reason, s.rs[i].Reply, s.rs[i].Err = st, why, reply, err
	}
	g.done = true
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
	st, why, reply, text := outcome(s.ctx, s.t.proto(), after, err)
	s.rest(st, why, reply, text)
	return reply != ""
}

func (t *smtpTransport) attempt(ctx context.Context, m *Message, tlsMode string) (rs []Result, retryClear bool) {
	s := &session{t: t, ctx: ctx, rs: results(m, "", Deferred, NoReason, "")}
	if err := checkAddr(m.Sender); err != nil {
		return results(m, "", Failed, BadAddress, "sender "+err.Error()), false
	}
	byWire := make(map[string]*rcptGroup)
	for i, r := range m.Recipients {
		if err := checkAddr(r); err != nil {
			s.rs[i].Status, s.rs[i].Reason, s.rs[i].Err = Failed, BadAddress, err.Error()
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
	if len(s.groups) == 0 {
		return s.rs, false
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
		s.host = t.display("")
		s.rest(Deferred, LocalError, "", "error opening message: "+err.Error())
		return s.rs, false
	}
	defer src.Close()

	d := net.Dialer{Timeout: t.o.ConnectTimeout}
	raw, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		s.host = t.display("")
		why, text := dialError(ctx, err)
		s.rest(Deferred, why, "", text)
		return s.rs, false
	}
	s.host = t.display(raw.RemoteAddr().String())
	// Unblocks whatever read or write is in progress when ctx ends.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	wc := &wireConn{Conn: raw, writeTimeout: t.o.DataTimeout}
	c := t.client(wc)
	defer func() { c.Close() }()

	if err := c.Hello(t.o.Hostname); err != nil {
		after := "initial connection"
		if wc.written > 0 {
			after = t.helloVerb() + " " + t.o.Hostname
		}
		s.fail(after, err)
		return s.rs, false
	}

	if t.network == "tcp" && tlsMode != tlsNone {
		offered, _ := c.Extension("STARTTLS")
		switch {
		case offered:
			err := t.startTLS(ctx, wc)
			var he *handshakeError
			var te *textproto.Error
			switch {
			case err == nil:
				c = t.client(wc)
				if err := c.Hello(t.o.Hostname); err != nil {
					s.fail(t.helloVerb()+" "+t.o.Hostname, err)
					return s.rs, false
				}
			case errors.As(err, &he) && tlsMode == tlsOpportunistic && !t.o.TLSVerify:
				return s.rs, true
			case errors.As(err, &he):
				s.rest(Deferred, TLSFailure, "", "TLS session failure: "+he.err.Error())
				return s.rs, false
			case errors.As(err, &te) && tlsMode == tlsOpportunistic:
				// Refused STARTTLS (RFC 3207: the client may go on in clear).
			case errors.As(err, &te):
				_, _, reply, _ := outcome(ctx, t.proto(), "STARTTLS", err)
				s.rest(Deferred, TLSRequired, reply, "a TLS session is required, but STARTTLS was refused: "+reply)
				c.Quit()
				return s.rs, false
			default:
				why, text := trouble(ctx, "in response to STARTTLS", err)
				s.rest(Deferred, why, "", text)
				return s.rs, false
			}
		case tlsMode == tlsRequired:
			s.rest(Deferred, TLSRequired, "", "a TLS session is required, but the server did not offer TLS support")
			c.Quit()
			return s.rs, false
		}
	}

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
			c.Quit()
			return s.rs, false
		}
		for _, g := range s.groups {
			if !isASCII(g.wire) {
				s.set(g, Failed, BadAddress, "", noUTF8)
			}
		}
		if !slices.ContainsFunc(s.groups, func(g *rcptGroup) bool { return !g.done }) {
			c.Quit()
			return s.rs, false
		}
	}
	from := wireAddr(m.Sender)
	if err := c.Mail(from, opts); err != nil {
		if s.fail("MAIL FROM:<"+from+">", err) {
			c.Quit()
		}
		return s.rs, false
	}

	var accepted []*rcptGroup
	for _, g := range s.groups {
		if g.done {
			continue
		}
		err := c.Rcpt(g.wire, nil)
		if err == nil {
			accepted = append(accepted, g)
			continue
		}
		st, why, reply, text := outcome(ctx, t.proto(), "RCPT TO:<"+g.wire+">", err)
		if reply == "" {
			s.rest(st, why, "", text)
			return s.rs, false
		}
		s.set(g, st, why, reply, text)
	}
	if len(accepted) == 0 {
		c.Quit()
		return s.rs, false
	}

	w, err := c.Data()
	if err != nil {
		if s.fail("DATA", err) {
			c.Quit()
		}
		return s.rs, false
	}
	if _, err := io.Copy(&lineWriter{w: w}, sourceReader{src}); err != nil {
		// Dropping the connection is the only way to abort DATA: the
		// server discards a message that did not end with the dot.
		why, text := trouble(ctx, "while sending the message body", err)
		s.rest(Deferred, why, "", text)
		return s.rs, false
	}

	if t.lmtp {
		t.lmtpReplies(s, w, accepted)
	} else if resp, err := w.CloseWithResponse(); err != nil {
		s.fail("end of data", err)
	} else {
		s.rest(Delivered, NoReason, "250 "+oneLine(resp.StatusText), "")
	}
	c.Quit()
	return s.rs, false
}

// lmtpReplies decides each accepted recipient from its own reply after the
// final dot (RFC 2033). Replies missing because the connection broke are
// deferrals.
func (t *smtpTransport) lmtpReplies(s *session, w *smtp.DataCommand, accepted []*rcptGroup) {
	ok, err := w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	errors.As(err, &perRcpt)
	connErr := err
	if j, isJoin := err.(interface{ Unwrap() []error }); isJoin && perRcpt != nil {
		// go-smtp joins the connection error with the replies it had.
		if errs := j.Unwrap(); len(errs) == 2 {
			connErr = errs[0]
		}
	}
	for _, g := range accepted {
		if r, found := ok[g.wire]; found {
			s.set(g, Delivered, NoReason, "250 "+oneLine(r.StatusText), "")
			continue
		}
		if se, found := perRcpt[g.wire]; found {
			st, why, reply, text := outcome(s.ctx, t.proto(), "end of data", se)
			s.set(g, st, why, reply, text)
			continue
		}
		if connErr == nil {
			connErr = io.ErrUnexpectedEOF
		}
		why, text := trouble(s.ctx, "in response to end of data", connErr)
		s.set(g, Deferred, why, "", text)
	}
}

func (t *smtpTransport) client(wc *wireConn) *smtp.Client {
	var c *smtp.Client
	if t.lmtp {
		c = smtp.NewClientLMTP(wc)
	} else {
		c = smtp.NewClient(wc)
	}
	c.CommandTimeout = t.o.CommandTimeout
	c.SubmissionTimeout = t.o.DataTimeout
	return c
}

func (t *smtpTransport) helloVerb() string {
	if t.lmtp {
		return "LHLO"
	}
	return "EHLO"
}

// display is the host as the mainlog's H= shows it: "name [ip]", the socket
// path for LMTP over a unix socket. remote is the connection's remote
// address; before a connection exists only a literal IP host is known.
func (t *smtpTransport) display(remote string) string {
	if t.network == "unix" {
		return t.addr
	}
	ip := t.host
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = ap.Addr().Unmap().WithZone("").String()
	} else if _, err := netip.ParseAddr(t.host); err != nil {
		return t.host
	}
	return t.host + " [" + ip + "]"
}

// handshakeError is a failed TLS handshake after the server agreed to
// STARTTLS: the connection is lost, unlike a refused STARTTLS.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// startTLS speaks STARTTLS on the raw connection, beside the go-smtp client
// (which has no exported StartTLS, and whose helpers say EHLO localhost),
// then puts the TLS connection under wc. The caller makes a new client on
// wc, which forgets everything learnt in clear text as RFC 3207 demands; the
// greeting that client waits for is supplied by wc, since after STARTTLS the
// server sends none.
func (t *smtpTransport) startTLS(ctx context.Context, wc *wireConn) error {
	raw := wc.Conn
	if err := raw.SetDeadline(time.Now().Add(t.o.CommandTimeout)); err != nil {
		return err
	}
	defer raw.SetDeadline(time.Time{})
	if _, err := io.WriteString(raw, "STARTTLS\r\n"); err != nil {
		return err
	}
	br := bufio.NewReader(raw)
	if _, _, err := textproto.NewReader(br).ReadResponse(220); err != nil {
		return err
	}
	if br.Buffered() > 0 {
		// Anything the server sent after its 220 would be read as if it
		// came over TLS: refuse it (the CVE-2011-0411 class of bug).
		return &handshakeError{errors.New("remote host sent clear-text data after its STARTTLS reply")}
	}
	tc := tls.Client(raw, &tls.Config{
		ServerName: t.host,
		// Opportunistic TLS without verification is still better than
		// clear text: it stops passive eavesdropping.
		InsecureSkipVerify: !t.o.TLSVerify,
		MinVersion:         tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return &handshakeError{err}
	}
	wc.Conn = tc
	wc.greeting = []byte("220 " + t.host + " TLS session started\r\n")
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
