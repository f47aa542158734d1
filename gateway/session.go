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
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/address"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/header"
	"mxgate/mainlog"
	"mxgate/spool"
)

// session is one go-smtp session: from HELO/EHLO to QUIT, or to STARTTLS,
// after which go-smtp starts a new one on the same conn. With CHUNKING,
// go-smtp runs Data in its own goroutine while Reset and Logout may come
// from the connection's goroutine, so the transaction is behind mu and
// Data works on a copy; the checks are asked under the conn's flowMu.
type session struct {
	srv  *Server
	c    *smtp.Conn
	conn *conn

	mu sync.Mutex
	tx *transaction // nil until MAIL is accepted
	// heloAsked is the greeting the checks were told about, at the first
	// MAIL after it; heloRefusal their refusal of it, which answers every
	// MAIL until the next greeting.
	heloAsked   string
	heloRefusal *filters.Outcome
}

// transaction is what MAIL fixes for one message; Data reads it without
// touching go-smtp's Conn, which is not safe from Data's goroutine.
type transaction struct {
	filters.Tx
	txn    int    // the connection's count of MAIL commands, for events
	proto  string // Exim's P=: smtp, esmtp, esmtps
	cipher string // Exim's X= value, "" without TLS
}

var errConnClosed = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection closed"}

// errLocal answers a message mxgate itself failed to keep.
var errLocal = replyOf(filters.LocalProblem())

const bareNewlineText = "Message contains bare CR or LF characters (see https://www.postfix.org/smtp-smuggling.html)"

// replyOf is a verdict's SMTP reply.
func replyOf(v filters.Verdict) *smtp.SMTPError { return reply(v.Code, v.Enhanced, v.Text) }

// cfg is the config of the generation the connection was accepted under.
func (s *session) cfg() *config.Config { return s.conn.gen.cfg }

// hostDesc is Exim's H= for the client: "name (helo) [ip]", the name its
// reverse DNS (known since the greeting), left out when there is none.
func (s *session) hostDesc(helo string) string {
	return mainlog.Host(s.conn.host.Name, helo, s.conn.ip)
}

// reply is go-smtp's form of a reply. smtp.max_errors is enforced on
// every error reply, refusals included, by Server.errorReply.
func reply(code int, enh [3]int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.conn.closed.Load() {
		return errConnClosed
	}
	srv := s.srv
	helo := SafeHelo(s.c.Hostname())
	tx := &transaction{Tx: filters.Tx{Helo: helo, Sender: from}, proto: "smtp", txn: int(s.conn.txn.Add(1))}
	tx.AuthUser, tx.AuthMech = s.conn.authState()
	srv.mu.Lock()
	draining := srv.draining
	srv.mu.Unlock()
	if draining {
		s.conn.closeAfterWrite()
		return s.refused("mail", tx, "", refusal{reasonCode: "shutting-down"}, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
			Message: s.cfg().Hostname + " Service shutting down, try again later"})
	}
	s.mu.Lock()
	nested := s.tx != nil
	s.mu.Unlock()
	if nested {
		srv.trace.printf("MAIL <%s>: sender already given", from)
		return s.refused("mail", tx, "", refusal{reasonCode: "bad-sequence"}, reply(503, [3]int{5, 5, 1}, "Sender already given"))
	}
	if opts != nil && opts.Size > int64(s.cfg().SMTP.MaxMessageSize) {
		srv.trace.printf("MAIL <%s>: SIZE=%d is over smtp.max_message_size %d", from, opts.Size, s.cfg().SMTP.MaxMessageSize)
		srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> rejected MAIL: message too big: SIZE=%d max=%d",
			s.hostDesc(helo), from, opts.Size, s.cfg().SMTP.MaxMessageSize))
		return s.refused("mail", tx, "", refusal{reasonCode: "message-too-big"}, reply(552, [3]int{5, 3, 4}, "Message size exceeds maximum permitted"))
	}
	if from != "" {
		a, err := address.Parse(from)
		if err != nil {
			srv.trace.printf("MAIL <%s>: %v", from, err)
			srv.log.Reject("", fmt.Sprintf("H=%s rejected MAIL <%s>: %v", s.hostDesc(helo), from, err))
			return s.refused("mail", tx, "", refusal{reasonCode: "sender-syntax", reason: err.Error()}, reply(501, [3]int{5, 1, 7}, "Bad sender address syntax"))
		}
		tx.Sender, tx.SenderDomain = a.String(), a.Domain
	}
	if srv.spool != nil {
		// Exim's check_spool_space: a full spool costs the client a 452
		// now, not a 451 after the whole message.
		var size int64
		if opts != nil {
			size = opts.Size
		}
		if short := srv.spool.CheckSpace(size); short != nil {
			srv.log.Reject("", fmt.Sprintf("H=%s temporarily rejected MAIL <%s>: %v", s.hostDesc(helo), from, short))
			return s.refused("mail", tx, "", refusal{reasonCode: "spool-space", reason: short.Error()}, reply(452, [3]int{4, 3, 1}, "Insufficient system storage"))
		}
	}
	host := s.hostDesc(helo)
	if v := s.conn.connectRefusal(); v != nil {
		srv.log.Reject("", fmt.Sprintf("H=%s %s", host, RefusalLog(*v, "MAIL <"+from+">")))
		return s.refused("mail", tx, "", refusal{check: s.conn.refusalCheck, reasonCode: v.ReasonCode, list: v.List, reason: v.Log}, replyOf(*v))
	}
	ctx := s.conn.ctx
	var out filters.Outcome
	s.conn.checks(func(f *filters.Flow) {
		if s.heloAsked != helo {
			s.heloAsked, s.heloRefusal = helo, nil
			hout := f.Helo(ctx, helo)
			srv.report(hout, "", host, s.conn, tx.txn)
			if hout.Verdict.Refuses() {
				// It holds for every MAIL until the next greeting.
				s.heloRefusal = &hout
			}
		}
		if s.heloRefusal != nil {
			out.Verdict, out.Events = s.heloRefusal.Verdict, s.heloRefusal.Events
			return
		}
		out = f.Mail(ctx, &tx.Tx)
		srv.report(out, "", host, s.conn, tx.txn)
		if out.Verdict.Refuses() {
			f.Reset(ctx)
		}
	})
	if v := out.Verdict; v.Refuses() {
		srv.log.Reject("", fmt.Sprintf("H=%s %s", host, RefusalLog(v, "MAIL <"+from+">")))
		return s.refused("mail", tx, "", checkRefusal(out), replyOf(v))
	}
	if st, ok := s.c.TLSConnectionState(); ok {
		tx.proto = "esmtps"
		tx.cipher = cipherDesc(st)
	} else if s.conn.usedEHLO() {
		tx.proto = "esmtp"
	}
	if tx.AuthUser != "" {
		tx.proto += "a" // Exim's esmtpsa: authenticated
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
	srv := s.srv
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return s.refused("rcpt", nil, to, refusal{reasonCode: "bad-sequence"}, reply(503, [3]int{5, 5, 1}, "MAIL first"))
	}
	host := s.hostDesc(tx.Helo)
	a, err := address.Parse(to)
	if err != nil {
		v := address.RcptSyntax(to, err)
		for _, line := range v.Trace {
			srv.trace.printf("%s", line)
		}
		srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> %s", host, tx.Sender, RefusalLog(v, "RCPT <"+to+">")))
		return s.refused("rcpt", tx, to, refusal{reasonCode: v.ReasonCode, reason: v.Log}, replyOf(v))
	}
	rcpt := a.String()
	var out filters.Outcome
	s.conn.checks(func(f *filters.Flow) {
		out = f.Rcpt(s.conn.ctx, &tx.Tx, rcpt)
	})
	s.srv.report(out, "", host, s.conn, tx.txn)
	if v := out.Verdict; v.Refuses() {
		srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> %s", host, tx.Sender, RefusalLog(v, "RCPT <"+rcpt+">")))
		return s.refused("rcpt", tx, rcpt, checkRefusal(out), replyOf(v))
	}
	if srv.trace != nil {
		var why []string
		for _, e := range out.Events {
			if e.Verdict.Log != "" {
				why = append(why, e.Verdict.Log)
			}
		}
		srv.trace.printf("RCPT <%s>: accepted: %s", to, strings.Join(why, "; "))
	}
	s.mu.Lock()
	// A repeated recipient is accepted but delivered once.
	if !slices.Contains(tx.Rcpts, rcpt) {
		tx.Rcpts = append(tx.Rcpts, rcpt)
	}
	s.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
	s.conn.checks(func(f *filters.Flow) { f.Reset(s.conn.ctx) })
}

func (s *session) Logout() error {
	s.Reset()
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
		tx.Rcpts = slices.Clone(s.tx.Rcpts)
	}
	s.mu.Unlock()
	if len(tx.Rcpts) == 0 {
		// go-smtp only calls Data after an accepted RCPT; this is a
		// RSET racing a BDAT chunk.
		return s.refused("data", &tx, "", refusal{reasonCode: "bad-sequence"}, &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"})
	}
	host := s.hostDesc(tx.Helo)
	dr := &deadlineReader{r: r, c: s.conn, timeout: time.Duration(s.cfg().SMTP.DataTimeout)}

	// A test session reads and checks the message like any other but
	// writes it nowhere (an unlinked temporary file the checks read).
	var (
		w        *spool.Writer
		id       spool.ID
		sink     io.Writer
		openBody func() (io.ReadCloser, error)
	)
	if srv.trace != nil {
		id = srv.ids.Next()
		tb, err := newTraceBody()
		if err != nil {
			srv.log.Panic(fmt.Sprintf("H=%s F=<%s>: %v", host, tx.Sender, err))
			return s.afterDrain(dr, tx, func() error {
				return s.refused("data", &tx, "", refusal{reasonCode: "local-problem", reason: err.Error()}, errLocal)
			})
		}
		defer tb.Close()
		sink, openBody = tb, tb.open
	} else {
		var err error
		if w, err = srv.spool.Create(); err != nil {
			srv.log.Panic(fmt.Sprintf("H=%s F=<%s>: cannot create spool file: %v", host, tx.Sender, err))
			return s.afterDrain(dr, tx, func() error {
				return s.refused("data", &tx, "", refusal{reasonCode: "local-problem", reason: err.Error()}, errLocal)
			})
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

	reject := s.cfg().SMTP.BareNewline != "normalize"
	le := &lineEnds{r: &limitReader{r: dr, max: int64(s.cfg().SMTP.MaxMessageSize)}}
	br := dataReaders.Get().(*bufio.Reader)
	br.Reset(le)
	// Dropped before it goes back: a pooled reader must not keep the
	// message's reader chain (and its connection) alive.
	defer func() { br.Reset(nil); dataReaders.Put(br) }()
	body := &bodySink{w: sink, le: le, reject: reject}
	headers, first, _, err := header.ReadFrom(br, maxHeaderBlock)
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
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: bare CR or LF in message (SMTP smuggling)", host, tx.Sender))
		return s.refused("data", &tx, "", refusal{reasonCode: "bare-newline"}, reply(550, [3]int{5, 5, 2}, bareNewlineText))
	}
	if s.conn.closed.Load() {
		// No client to answer (failed STARTTLS, forced shutdown): a
		// message never acknowledged must not be delivered.
		abort()
		return errConnClosed
	}

	now := time.Now()
	m := &filters.Message{
		ID:         id,
		Sender:     tx.Sender,
		Recipients: tx.Rcpts,
		ClientIP:   s.conn.ip,
		Helo:       tx.Helo,
		Trusted:    s.conn.gen.policy.Trusted(s.conn.ip),
		AuthUser:   tx.AuthUser,
		Headers: append([]spool.Header{Received(ReceivedInfo{
			Helo: tx.Helo, Name: s.conn.host.Name, IP: s.conn.ip.String(), Hostname: s.cfg().Hostname,
			With: strings.ToUpper(tx.proto), ID: id, Sender: tx.Sender,
			Recipients: tx.Rcpts, Time: now,
		})}, headers...),
		BodySize: body.n,
		OpenBody: openBody,
	}
	if w != nil {
		m.ReplaceBody = func(r io.Reader) (int64, error) { return w.ReplaceBody(&lineEnds{r: r}) }
	}
	var out filters.Outcome
	s.conn.checks(func(f *filters.Flow) { out = f.Data(s.conn.ctx, m) })
	// The checks may have changed the envelope (a milter's new sender or
	// recipients) and the headers (stamps, edits, removals).
	tx.Sender, tx.Rcpts = m.Sender, m.Recipients
	env := &spool.Envelope{
		ID:               id,
		Sender:           m.Sender,
		Recipients:       m.Recipients,
		Received:         now,
		HeloName:         tx.Helo,
		HostAddress:      netip.AddrPortFrom(s.conn.ip, uint16(s.conn.port)).String(),
		ReceivedProtocol: tx.proto,
		DeliverFirstTime: true,
		Headers:          m.Headers,
	}
	s.srv.report(out, string(id), host, s.conn, tx.txn)
	if es := ScanEvents(out); len(es) > 0 {
		srv.traceScan(es)
		srv.log.Main(string(id), fmt.Sprintf("H=%s F=<%s> content scan: %s: %s", host, tx.Sender, filters.Strictest(es).Action, ScanFacts(es)))
	}
	size := env.HeaderSize() + 1 + m.BodySize
	v := out.Verdict
	switch v.Action {
	case filters.Reject, filters.Tempfail:
		abort()
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> %s", host, tx.Sender, RefusalLog(filters.Verdict{Action: v.Action, Log: v.Text}, "after DATA")))
		return s.refusedData(tx, id, out, replyOf(v))
	case filters.Discard:
		abort()
		if srv.trace != nil {
			return acceptedReply(id, " (discarded; not queued: -bh test session)")
		}
		// Exim's log of a message its DATA ACL discarded: received, and
		// "delivered" nowhere.
		srv.log.Main(string(id), "<= "+senderText(tx.Sender)+" "+s.arrival(tx, size, env.Headers))
		srv.log.Main(string(id), "=> blackhole (DATA ACL discarded recipients): "+DiscardText(v))
		srv.log.Main(string(id), "Completed")
		s.emitMessage(event.Discarded, tx, env, size, out)
		return acceptedReply(id, "")
	case filters.Quarantine:
		if srv.trace != nil {
			return acceptedReply(id, " (quarantined; not queued: -bh test session)")
		}
		ctx, cancel := context.WithTimeout(srv.ctx, time.Duration(s.cfg().SMTP.CommandTimeout))
		err := srv.spool.Quarantine(ctx, w, env, v.Reason)
		cancel()
		if err != nil { // the files are gone: the client must retry
			srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: quarantine commit failed, message not kept: %v", id, host, tx.Sender, err))
			return s.refused("data", &tx, "", refusal{reasonCode: "local-problem", reason: err.Error()}, errLocal)
		}
		srv.log.Main(string(id), fmt.Sprintf("quarantined: %s %s: %s", senderText(tx.Sender), s.arrival(tx, size, env.Headers), v.Reason))
		s.emitMessage(event.Quarantined, tx, env, size, out)
		return acceptedReply(id, "")
	}
	// Exim's "warn" lines: what let the message through with a stamp.
	warn := func() {
		for _, w := range Warnings(out) {
			srv.log.Main(string(id), fmt.Sprintf("H=%s Warning: %s", host, w))
		}
	}
	// A rate limit with action "hold" keeps the message frozen under its
	// key until `mxgate hold release` (or drop).
	hold := HoldOf(out)
	if hold != "" {
		env.Frozen, env.Hold = now, hold
	}
	if srv.trace != nil {
		if hold != "" {
			srv.trace.printf("DATA: held as %s (rate limit action = hold): frozen in the queue", hold)
		}
		if le.Bare {
			srv.trace.printf("DATA: bare CR or LF in message normalized (smtp.bare_newline = normalize)")
		}
		warn()
		srv.trace.printf("DATA: accepted: S=%d; not queued: test session", size)
		return acceptedReply(id, " (not queued: -bh test session)")
	}
	ctx, cancel := context.WithTimeout(srv.ctx, time.Duration(s.cfg().SMTP.CommandTimeout))
	err = w.Commit(ctx, env)
	cancel()
	if err != nil { // Commit has removed the files
		srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: spool commit failed, message not queued: %v", id, host, tx.Sender, err))
		return s.refused("data", &tx, "", refusal{reasonCode: "local-problem", reason: err.Error()}, errLocal)
	}
	// The Warning lines go before "<=", where Exim's warn ACL puts them.
	warn()
	srv.spool.LogArrival(env, s.arrival(tx, size, env.Headers), srv.log)
	s.emitMessage(event.Accepted, tx, env, size, out)
	if hold != "" {
		// As the queue logs a freeze; no delivery is started.
		info := " (rate limit hold " + hold + ")"
		srv.log.Main(string(id), "Frozen"+info)
		if err := srv.spool.MsglogRaw(id, "*** Frozen"+info); err != nil {
			srv.log.Panic(fmt.Sprintf("%s msglog write failed: %v", id, err))
		}
		return acceptedReply(id, "")
	}
	srv.onCommit(id)
	return acceptedReply(id, "")
}

// HoldOf is the hold key a check (a rate limit with action "hold") gave
// the message, "" for none.
func HoldOf(out filters.Outcome) string {
	for _, e := range out.Events {
		if e.Verdict.Hold != "" {
			return e.Verdict.Hold
		}
	}
	return ""
}

func acceptedReply(id spool.ID, note string) error {
	return reply(250, [3]int{2, 0, 0}, "OK id="+string(id)+note)
}

func senderText(sender string) string {
	if sender == "" {
		return "<>"
	}
	return sender
}

// traceBody keeps a test session's message body, so its checks read it as
// they would a spooled one. The file is unlinked at once: it never
// outlives the session.
type traceBody struct {
	f *os.File
	n int64
}

func newTraceBody() (*traceBody, error) {
	f, err := os.CreateTemp("", "mxgate-bh-")
	if err != nil {
		return nil, fmt.Errorf("temporary file for the message body: %w", err)
	}
	os.Remove(f.Name())
	return &traceBody{f: f}, nil
}

func (b *traceBody) Write(p []byte) (int, error) {
	n, err := b.f.Write(p)
	b.n += int64(n)
	return n, err
}

func (b *traceBody) open() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(b.f, 0, b.n)), nil
}

func (b *traceBody) Close() error { return b.f.Close() }

// arrival is what the "<=" line says after the sender:
// "H=name (helo) [ip]:port P=esmtp S=size id=message-id".
func (s *session) arrival(tx transaction, size int64, headers []spool.Header) string {
	return Arrival(s.hostDesc(tx.Helo), s.conn.port, tx.proto, tx.cipher, tx.AuthMech, tx.AuthUser, size, headers)
}

// Arrival is what Exim's "<=" line says after the sender, for a client
// host (mainlog.Host) and port: "H=name (helo) [ip]:port P=esmtp
// S=size id=message-id", with X= for a cipher and A= for a login.
func Arrival(host string, port int, proto, cipher, authMech, authUser string, size int64, headers []spool.Header) string {
	line := fmt.Sprintf("H=%s:%d P=%s", host, port, proto)
	if cipher != "" {
		line += " X=" + cipher + " CV=no"
	}
	if authUser != "" {
		// Exim's A=authenticator:id; a space or "=" would end the field.
		line += " A=" + authMech + ":" + logLogin(authUser)
	}
	line += fmt.Sprintf(" S=%d", size)
	if mid := header.MessageID(headers); mid != "" {
		line += " id=" + mid
	}
	return line
}

// dataFailed answers a DATA whose message could not be read or stored. The
// rest of the message is read first where the client is still sending it,
// so its lines are never taken for commands.
func (s *session) dataFailed(dr io.Reader, tx transaction, id spool.ID, err error) error {
	srv := s.srv
	host := s.hostDesc(tx.Helo)
	var se spoolError
	switch {
	case isTimeout(err):
		return s.timedOut(tx)
	case errors.Is(err, errMessageTooBig), errors.Is(err, smtp.ErrDataTooLarge):
		srv.trace.printf("DATA: message over smtp.max_message_size %d", s.cfg().SMTP.MaxMessageSize)
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: message too big: max=%d",
			host, tx.Sender, s.cfg().SMTP.MaxMessageSize))
		return s.afterDrain(dr, tx, func() error {
			return s.refused("data", &tx, "", refusal{reasonCode: "message-too-big"}, reply(552, [3]int{5, 3, 4}, "Message size exceeds maximum permitted"))
		})
	case errors.Is(err, header.ErrTooBig):
		srv.trace.printf("DATA: %v", err)
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: %v", host, tx.Sender, err))
		return s.afterDrain(dr, tx, func() error {
			return s.refused("data", &tx, "", refusal{reasonCode: "header-too-big"}, reply(552, [3]int{5, 3, 4}, "Message header block too large"))
		})
	case errors.Is(err, smtp.ErrTooLongLine):
		srv.trace.printf("DATA: line longer than smtp.max_line_length %d", s.cfg().SMTP.MaxLineLength)
		// go-smtp closes the connection after this reply.
		srv.log.Reject(string(id), fmt.Sprintf("H=%s F=<%s> rejected after DATA: line longer than %d bytes",
			host, tx.Sender, s.cfg().SMTP.MaxLineLength))
		return s.refused("data", &tx, "", refusal{reasonCode: "line-too-long"}, &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
			Message: fmt.Sprintf("Message has a line longer than %d bytes", s.cfg().SMTP.MaxLineLength)})
	case errors.As(err, &se):
		srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: %v", id, host, tx.Sender, err))
		return s.afterDrain(dr, tx, func() error {
			return s.refused("data", &tx, "", refusal{reasonCode: "local-problem", reason: err.Error()}, errLocal)
		})
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
func (s *session) afterDrain(dr io.Reader, tx transaction, answer func() error) error {
	if _, err := io.Copy(io.Discard, dr); isTimeout(err) {
		return s.timedOut(tx)
	}
	return answer()
}

// timedOut ends a session whose client went quiet in DATA: the connection
// closes after the 421, so nothing it sends later is read as a command.
func (s *session) timedOut(tx transaction) error {
	s.conn.closeAfterWrite()
	s.srv.log.Main("", fmt.Sprintf("SMTP data timeout (message abandoned) on connection from %s F=<%s>", s.hostDesc(tx.Helo), tx.Sender))
	return s.refused("data", &tx, "", refusal{reasonCode: "data-timeout"}, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: s.cfg().Hostname + " SMTP incoming data timeout - closing connection"})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
