package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/address"
	"mxgate/filters"
	"mxgate/filters/milter"
	"mxgate/spool"
)

// session is one go-smtp session: from HELO/EHLO to QUIT, or to STARTTLS,
// after which go-smtp starts a new one on the same conn. With CHUNKING,
// go-smtp runs Data in its own goroutine while Reset and Logout may come
// from the connection's goroutine, so the transaction is behind mu and
// Data works on a copy.
type session struct {
	srv  *Server
	c    *smtp.Conn
	conn *conn

	mu sync.Mutex
	tx *transaction // nil until MAIL is accepted
	// calloutDetailed: a sender verify refusal has quoted the remote
	// server's reply in this session already.
	calloutDetailed bool

	milter        *milter.Session  // opened at the first MAIL; nil without [[milter]]
	milterRefusal *milter.Decision // a milter refused the connection at HELO
}

// transaction is what MAIL fixes for one message; Data reads it without
// touching go-smtp's Conn, which is not safe from Data's goroutine.
type transaction struct {
	sender string // wire form (Address.String), "" = null sender
	rcpts  []string
	helo   string // safeHelo of the greeting
	proto  string // Exim's P=: smtp, esmtp, esmtps
	cipher string // Exim's X= value, "" without TLS

	domains *domainLookups // DNS lists on the sender domain and HELO name, started at MAIL
	verdict *verdict       // of the DNS lists, fixed at the first RCPT
	callout *senderVerify  // the sender's callout, started at MAIL
}

var (
	errConnClosed = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection closed"}
	errLocal      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local problem: message not queued"}
)

const bareNewlineText = "Message contains bare CR or LF characters (see https://www.postfix.org/smtp-smuggling.html)"

// hostDesc is Exim's H= for a client without reverse DNS: "(helo) [ip]".
func (s *session) hostDesc(helo string) string {
	return fmt.Sprintf("(%s) [%s]", helo, s.conn.ip)
}

// refuse turns a refusal into go-smtp's reply. smtp.max_errors is
// enforced on every error reply, refusals included, by Server.errorReply.
func (s *session) refuse(_ string, code int, enh [3]int, text string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.conn.closed.Load() {
		return errConnClosed
	}
	srv := s.srv
	helo := safeHelo(s.c.Hostname())
	srv.mu.Lock()
	draining := srv.draining
	srv.mu.Unlock()
	if draining {
		s.conn.closeAfterWrite()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
			Message: srv.cfg.Hostname + " Service shutting down, try again later"}
	}
	s.mu.Lock()
	nested := s.tx != nil
	s.mu.Unlock()
	if nested {
		srv.trace.printf("MAIL <%s>: sender already given", from)
		return s.refuse(helo, 503, [3]int{5, 5, 1}, "Sender already given")
	}
	if opts != nil && opts.Size > int64(srv.cfg.SMTP.MaxMessageSize) {
		srv.trace.printf("MAIL <%s>: SIZE=%d is over smtp.max_message_size %d", from, opts.Size, srv.cfg.SMTP.MaxMessageSize)
		srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> rejected MAIL: message too big: SIZE=%d max=%d",
			s.hostDesc(helo), from, opts.Size, srv.cfg.SMTP.MaxMessageSize))
		return s.refuse(helo, 552, [3]int{5, 3, 4}, "Message size exceeds maximum permitted")
	}
	var sender, senderDomain string
	if from != "" {
		a, err := address.Parse(from)
		if err != nil {
			srv.trace.printf("MAIL <%s>: %v", from, err)
			srv.log.Reject("", fmt.Sprintf("H=%s rejected MAIL <%s>: %v", s.hostDesc(helo), from, err))
			return s.refuse(helo, 501, [3]int{5, 1, 7}, "Bad sender address syntax")
		}
		sender, senderDomain = a.String(), a.Domain
	}
	tx := &transaction{sender: sender, helo: helo, proto: "smtp"}
	if err := s.milterMail(tx, from); err != nil {
		return err
	}
	tx.domains = s.startDomains(senderDomain, helo)
	tx.callout = s.startCallout(sender, senderDomain)
	if st, ok := s.c.TLSConnectionState(); ok {
		tx.proto = "esmtps"
		tx.cipher = cipherDesc(st)
	} else if s.conn.usedEHLO() {
		tx.proto = "esmtp"
	}
	s.mu.Lock()
	s.tx = tx
	s.mu.Unlock()
	srv.trace.printf("MAIL <%s>: accepted", from)
	return nil
}

// cipherDesc is Exim's X= as an OpenSSL build writes it:
// "TLS1.3:TLS_AES_128_GCM_SHA256:128".
func cipherDesc(st tls.ConnectionState) string {
	name := tls.CipherSuiteName(st.CipherSuite)
	bits := 128
	switch {
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		bits = 256
	case strings.Contains(name, "3DES"):
		bits = 168
	}
	return fmt.Sprintf("%s:%s:%d", strings.ReplaceAll(tls.VersionName(st.Version), " ", ""), name, bits)
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.conn.closed.Load() {
		return errConnClosed
	}
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return s.refuse(safeHelo(s.c.Hostname()), 503, [3]int{5, 5, 1}, "MAIL first")
	}
	a, ref := s.srv.policy.Recipient(s.conn.ip, to)
	if ref != nil {
		s.srv.trace.printf("RCPT <%s>: %s", to, ref.Log)
		s.srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> rejected RCPT <%s>: %s", s.hostDesc(tx.helo), tx.sender, to, ref.Log))
		return s.refuse(tx.helo, ref.Code, ref.Enhanced, ref.Text)
	}
	rcpt := a.String()
	if err := s.rblRefusal(tx, rcpt); err != nil {
		return err
	}
	if err := s.calloutRefusal(tx, rcpt); err != nil {
		return err
	}
	if err := s.milterRcpt(tx, rcpt); err != nil {
		return err
	}
	if s.srv.trace != nil {
		why := "host in relay.trusted_networks"
		if _, ref := s.srv.policy.Recipient(netip.Addr{}, to); ref == nil {
			why = a.Domain + " in relay.domains"
		}
		s.srv.trace.printf("RCPT <%s>: accepted: %s", to, why)
	}
	s.mu.Lock()
	// A repeated recipient is accepted but delivered once.
	if !slices.Contains(tx.rcpts, rcpt) {
		tx.rcpts = append(tx.rcpts, rcpt)
	}
	s.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
	s.milterReset()
}

func (s *session) Logout() error {
	s.milterClose()
	return nil
}

// deadlineReader re-arms the connection's read deadline before every read:
// go-smtp sets one deadline when it reads the DATA line, which would cut
// off any upload longer than the command timeout.
type deadlineReader struct {
	r       io.Reader
	c       *conn
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if err := d.c.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
		return 0, err
	}
	return d.r.Read(p)
}

// limitReader fails with errMessageTooBig once more than max bytes came.
type limitReader struct {
	r      io.Reader
	n, max int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return n, errMessageTooBig
	}
	return n, err
}

// spoolError marks a failed write to the spool, a local problem rather
// than the client's.
type spoolError struct{ err error }

func (e spoolError) Error() string { return "writing spool file: " + e.err.Error() }
func (e spoolError) Unwrap() error { return e.err }

// bodySink counts what is written to the -D file; once a bare line end
// was seen in reject mode the message is lost anyway and is not written.
type bodySink struct {
	w      io.Writer
	le     *lineEnds
	reject bool
	n      int64
}

func (b *bodySink) Write(p []byte) (int, error) {
	if b.reject && b.le.Bare {
		return len(p), nil
	}
	n, err := b.w.Write(p)
	b.n += int64(n)
	if err != nil {
		return n, spoolError{err}
	}
	return n, nil
}

func (s *session) Data(r io.Reader) error {
	srv := s.srv
	srv.mu.Lock()
	if srv.forced {
		srv.mu.Unlock()
		return errConnClosed
	}
	srv.inData.Add(1) // under mu: before Shutdown's Wait
	srv.mu.Unlock()
	defer srv.inData.Done()

	s.mu.Lock()
	var tx transaction
	if s.tx != nil {
		tx = *s.tx
		tx.rcpts = slices.Clone(s.tx.rcpts)
	}
	s.mu.Unlock()
	if len(tx.rcpts) == 0 {
		// go-smtp only calls Data after an accepted RCPT; this is a
		// RSET racing a BDAT chunk.
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	}
	host := s.hostDesc(tx.helo)
	dr := &deadlineReader{r: r, c: s.conn, timeout: time.Duration(srv.cfg.SMTP.DataTimeout)}

	// A test session reads and checks the message like any other but
	// writes it nowhere (a temporary file, if content filters read it).
	var (
		w        *spool.Writer
		id       spool.ID
		sink     io.Writer = io.Discard
		openBody func() (io.ReadCloser, error)
	)
	if srv.trace != nil {
		id = srv.ids.Next()
		tb, err := srv.newTraceBody()
		if err != nil {
			srv.log.Panic(fmt.Sprintf("H=%s F=<%s>: %v", host, tx.sender, err))
			return s.afterDrain(dr, tx, func() error { return errLocal })
		}
		if tb != nil {
			defer tb.Close()
			sink, openBody = tb, tb.open
		}
	} else {
		var err error
		if w, err = srv.spool.Create(); err != nil {
			srv.log.Panic(fmt.Sprintf("H=%s F=<%s>: cannot create spool file: %v", host, tx.sender, err))
			return s.afterDrain(dr, tx, func() error { return errLocal })
		}
		id, sink, openBody = w.ID(), w, w.OpenBody
	}
	abort := func() {
		if w == nil {
			return
		}
		if err := w.Abort(); err != nil {
			srv.log.Panic(fmt.Sprintf("%s: removing aborted spool files: %v", id, err))
		}
	}

	reject := srv.cfg.SMTP.BareNewline != "normalize"
	le := &lineEnds{r: &limitReader{r: dr, max: int64(srv.cfg.SMTP.MaxMessageSize)}}
	br := bufio.NewReaderSize(le, 64<<10)
	body := &bodySink{w: sink, le: le, reject: reject}
	headers, first, _, err := readHeader(br, maxHeaderBlock)
	if err == nil {
		if _, err = body.Write(first); err == nil {
			_, err = io.Copy(body, br)
		}
	}
	if err != nil {
		abort()
		return s.dataFailed(dr, tx, id, err)
	}
	if le.Bare && reject {
		abort()
		srv.trace.printf("DATA: bare CR or LF in message (smtp.bare_newline = reject)")
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: bare CR or LF in message (SMTP smuggling)", host, tx.sender))
		return s.refuse(tx.helo, 550, [3]int{5, 5, 2}, bareNewlineText)
	}
	if s.conn.closed.Load() {
		// No client to answer (failed STARTTLS, forced shutdown): a
		// message never acknowledged must not be delivered.
		abort()
		return errConnClosed
	}

	headers, stamped := srv.stampHeaders(headers, tx.verdict)
	now := time.Now()
	env := &spool.Envelope{
		ID:               id,
		Sender:           tx.sender,
		Recipients:       tx.rcpts,
		Received:         now,
		HeloName:         tx.helo,
		HostAddress:      netip.AddrPortFrom(s.conn.ip, uint16(s.conn.port)).String(),
		ReceivedProtocol: tx.proto,
		DeliverFirstTime: true,
		Headers: append([]spool.Header{received(receivedInfo{
			Helo: tx.helo, IP: s.conn.ip.String(), Hostname: srv.cfg.Hostname,
			With: strings.ToUpper(tx.proto), ID: id, Sender: tx.sender,
			Recipients: tx.rcpts, Time: now,
		})}, headers...),
	}
	if srv.filters != nil || s.milter != nil {
		// Before the milters, which may stamp X-Spam-* of their own.
		srv.removeSpamHeaders(env.Headers)
	}
	if srv.cfg.MsgAuth.Enabled || s.milter != nil {
		srv.removeForgedAuthres(env.Headers)
	}
	m := scanned{tx: tx, env: env, bodySize: body.n, openBody: openBody, w: w, abort: abort}
	if s.milter != nil {
		m.milter = s.milterData(&m)
		tx, body.n = m.tx, m.bodySize
	}
	if srv.filters != nil || m.milter.Action != filters.Accept {
		if reply := s.filter(m); reply != nil {
			return reply
		}
	}
	if err := s.dkimSign(m); err != nil {
		abort()
		srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: DKIM signing failed, message not queued: %v", id, host, tx.sender, err))
		return errLocal
	}
	size := env.HeaderSize() + 1 + body.n
	// Exim's "warn" line: the score of a message let through with a stamp.
	warn := func() {
		if stamped {
			srv.log.Main(string(id), fmt.Sprintf("H=%s Warning: %s", host, scoreText(tx.verdict.result)))
		}
	}
	if srv.trace != nil {
		if le.Bare {
			srv.trace.printf("DATA: bare CR or LF in message normalized (smtp.bare_newline = normalize)")
		}
		warn()
		srv.trace.printf("DATA: accepted: S=%d; not queued: test session", size)
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
			Message: "OK id=" + string(id) + " (not queued: -bh test session)"}
	}
	ctx, cancel := context.WithTimeout(srv.ctx, time.Duration(srv.cfg.SMTP.CommandTimeout))
	err = w.Commit(ctx, env)
	cancel()
	if err != nil { // Commit has removed the files
		srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: spool commit failed, message not queued: %v", id, host, tx.sender, err))
		return errLocal
	}

	line := s.arrival(tx, size, headers)
	sender := senderText(tx.sender)
	warn()
	srv.log.Main(string(id), "<= "+sender+" "+line)
	if err := srv.spool.Msglog(id, "Received from "+sender+" "+line); err != nil {
		srv.log.Panic(fmt.Sprintf("%s: writing msglog: %v", id, err))
	}
	srv.onCommit(id)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK id=" + string(id)}
}

// arrival is what the "<=" line says after the sender:
// "H=(helo) [ip]:port P=esmtp S=size id=message-id".
func (s *session) arrival(tx transaction, size int64, headers []spool.Header) string {
	line := fmt.Sprintf("H=%s:%d P=%s", s.hostDesc(tx.helo), s.conn.port, tx.proto)
	if tx.cipher != "" {
		line += " X=" + tx.cipher + " CV=no"
	}
	line += fmt.Sprintf(" S=%d", size)
	if mid := messageID(headers); mid != "" {
		line += " id=" + mid
	}
	return line
}

// dataFailed answers a DATA whose message could not be read or stored. The
// rest of the message is read first where the client is still sending it,
// so its lines are never taken for commands.
func (s *session) dataFailed(dr io.Reader, tx transaction, id spool.ID, err error) error {
	srv := s.srv
	host := s.hostDesc(tx.helo)
	var se spoolError
	switch {
	case isTimeout(err):
		return s.timedOut(tx)
	case errors.Is(err, errMessageTooBig), errors.Is(err, smtp.ErrDataTooLarge):
		srv.trace.printf("DATA: message over smtp.max_message_size %d", srv.cfg.SMTP.MaxMessageSize)
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: message too big: max=%d",
			host, tx.sender, srv.cfg.SMTP.MaxMessageSize))
		return s.afterDrain(dr, tx, func() error {
			return s.refuse(tx.helo, 552, [3]int{5, 3, 4}, "Message size exceeds maximum permitted")
		})
	case errors.Is(err, errHeaderTooBig):
		srv.trace.printf("DATA: %v", err)
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: %v", host, tx.sender, err))
		return s.afterDrain(dr, tx, func() error {
			return s.refuse(tx.helo, 552, [3]int{5, 3, 4}, "Message header block too large")
		})
	case errors.Is(err, smtp.ErrTooLongLine):
		srv.trace.printf("DATA: line longer than smtp.max_line_length %d", srv.cfg.SMTP.MaxLineLength)
		// go-smtp closes the connection after this reply.
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: line longer than %d bytes",
			host, tx.sender, srv.cfg.SMTP.MaxLineLength))
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
			Message: fmt.Sprintf("Message has a line longer than %d bytes", srv.cfg.SMTP.MaxLineLength)}
	case errors.As(err, &se):
		srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: %v", id, host, tx.sender, err))
		return s.afterDrain(dr, tx, func() error { return errLocal })
	case errors.Is(err, smtp.ErrDataReset):
		// RSET or QUIT between BDAT chunks: nobody waits for a reply.
		return errConnClosed
	default:
		srv.log.Main("", fmt.Sprintf("SMTP connection from %s lost while reading message data: %v", host, err))
		return errConnClosed
	}
}

// afterDrain reads what is left of the message and then gives the reply,
// unless the client stalls meanwhile, which ends the session instead.
func (s *session) afterDrain(dr io.Reader, tx transaction, reply func() error) error {
	if _, err := io.Copy(io.Discard, dr); isTimeout(err) {
		return s.timedOut(tx)
	}
	return reply()
}

// timedOut ends a session whose client went quiet in DATA: the connection
// closes after the 421, so nothing it sends later is read as a command.
func (s *session) timedOut(tx transaction) error {
	s.conn.closeAfterWrite()
	s.srv.log.Main("", fmt.Sprintf("SMTP data timeout (message abandoned) on connection from %s F=<%s>", s.hostDesc(tx.helo), tx.sender))
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: s.srv.cfg.Hostname + " SMTP incoming data timeout - closing connection"}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
