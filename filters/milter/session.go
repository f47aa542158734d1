package milter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	gomilter "github.com/emersion/go-milter"

	"mxgate/mainlog"
	"mxgate/spool"
)

// ConnInfo describes the SMTP connection the milters are told about.
type ConnInfo struct {
	Hostname   string // the gateway's own name, macro j
	DaemonName string // macro {daemon_name}
	ClientIP   netip.Addr
	ClientPort int
	Helo       string // sent as HELO on connect when Session.Helo is not called
	QueueID    string // macro i before DATA, when already known

	// The client's reverse DNS, as filters.Conn has it: HostName the
	// forward-confirmed name ({client_name}), HostPTR the first PTR name
	// ({client_ptr}), both "" when unknown (the macros then say
	// "[addr]", as Sendmail's do); HostResolve {client_resolve}, "OK",
	// "FAIL", "FORGED" or "TEMP" ("" is FAIL).
	HostName, HostPTR, HostResolve string
}

// Session is one SMTP connection's conversation with every milter. The
// connections to the milters are opened lazily, at the first stage. A
// Session is not safe for concurrent use.
type Session struct {
	h      *Host
	ci     ConnInfo
	peers  []*peer
	opened bool
	// discard is a Discard given before end of message: the message is
	// accepted and dropped, so Data reports it.
	discard *Decision
	// msgID is the queue ID of the message Data is handling, which every
	// log line of that time starts with; "" outside Data.
	msgID string
}

type peer struct {
	conf *milterConf
	cs   *gomilter.ClientSession
	conn *deadlineConn
	// sticky is the decision for every later stage of the connection: a
	// connect/HELO reject or tempfail, or the on_error decision after a
	// failure.
	sticky *Decision
	// doneConn: accepted the whole connection. doneMsg: accepted or
	// refused this message. inMsg: MAIL sent, end of message not yet.
	doneConn, doneMsg, inMsg, heloSent bool
}

// NewSession starts the milter conversation for one SMTP connection.
func (h *Host) NewSession(ctx context.Context, ci ConnInfo) *Session {
	s := &Session{h: h, ci: ci}
	for i := range h.milters {
		s.peers = append(s.peers, &peer{conf: &h.milters[i]})
	}
	return s
}

// logf logs one line about this session. A line written while a message
// is handled (Data: headers, body, end of message, modifications, failures,
// the abort after it) is logged with the message's queue ID, which the
// mainlog writes first, so `exigrep ID` finds it (and main.json has it as
// its id). Before DATA there is no ID yet (the gateway assigns it at DATA,
// as Exim does): those lines start with the client, "H=[ip]", or
// "H=name (helo) [ip]" once the host and HELO names are known, as
// Exim's lines of a connection do.
func (s *Session) logf(format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	if s.msgID != "" {
		s.h.log(s.msgID, text)
		return
	}
	s.h.log("", s.client()+" "+text)
}

// client is how a line of the connection names the client.
func (s *Session) client() string {
	return "H=" + mainlog.Host(s.ci.HostName, s.ci.Helo, s.ci.ClientIP)
}

// fail turns a milter failure into its on_error decision, which sticks for
// the rest of the connection, and drops the connection to it.
func (s *Session) fail(p *peer, stage string, err error) Decision {
	var d Decision
	switch p.conf.OnError {
	case "accept":
		d = Decision{Milter: p.conf.Name}
	case "reject":
		d = rejectDecision(p.conf.Name)
	default:
		d = tempfailDecision(p.conf.Name)
	}
	d.Reason = fmt.Sprintf("milter %s (%s) failed at %s: %v", p.conf.Name, p.conf.Address, stage, err)
	s.logf("%s; on_error %s", d.Reason, p.conf.OnError)
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.cs, p.conn = nil, nil
	p.sticky = &d
	return d
}

// open connects to every milter not yet connected, negotiates and sends
// the connect event (and HELO from ConnInfo when given).
func (s *Session) open(ctx context.Context) {
	if s.opened {
		return
	}
	s.opened = true
	for _, p := range s.peers {
		if d := s.connect(ctx, p); d.stops() {
			// A later milter is not asked after one refused.
			return
		}
	}
}

func (s *Session) connect(ctx context.Context, p *peer) Decision {
	c := p.conf
	dialer := &ctxDialer{ctx: ctx, timeout: c.ConnectTimeout}
	// The real bound is the stage deadline deadlineConn enforces;
	// EOMTimeout only makes go-milter set a deadline on every packet.
	cs, err := c.client(dialer, c.EOMTimeout).Session()
	if dialer.conn != nil {
		p.conn = dialer.conn
	}
	if err != nil {
		return s.fail(p, "connect", err)
	}
	p.cs = cs
	if err := checkAgreed(cs); err != nil {
		return s.fail(p, "option negotiation", err)
	}
	end := p.conn.stage(ctx, c.ConnectTimeout)
	defer end()
	ip := s.ci.ClientIP.Unmap()
	family, addr := gomilter.FamilyUnknown, ""
	if ip.IsValid() {
		family, addr = gomilter.FamilyInet, ip.String()
		if ip.Is6() {
			family = gomilter.FamilyInet6
		}
	}
	name, ptr, resolve := s.clientMacros(addr)
	// "_" is Postfix's: the PTR name and the address, marked when the
	// name did not confirm.
	under := ptr + " [" + addr + "]"
	if name != ptr {
		under += " (may be forged)"
	}
	if err := cs.Macros(gomilter.CodeConn,
		"j", s.ci.Hostname, "{daemon_name}", s.ci.DaemonName, "v", "mxgate",
		"_", under, "{client_addr}", addr, "{client_port}", strconv.Itoa(s.ci.ClientPort),
		"{client_name}", name, "{client_ptr}", ptr, "{client_resolve}", resolve); err != nil {
		return s.fail(p, "connect", err)
	}
	act, err := cs.Conn(name, family, uint16(s.ci.ClientPort), addr)
	if err != nil {
		return s.fail(p, "connect", err)
	}
	d := s.connDecision(p, "connect", act)
	if d.Action == Continue && s.ci.Helo != "" && !p.doneConn && p.sticky == nil {
		d = s.helo(p, s.ci.Helo)
	}
	return d
}

// clientMacros are the values of {client_name}, {client_ptr} and
// {client_resolve}, and the host name of the connect event: a name not
// known is the address in brackets, as Sendmail writes it (Postfix's
// milter client sends that too, for its "unknown").
func (s *Session) clientMacros(addr string) (name, ptr, resolve string) {
	name, ptr, resolve = s.ci.HostName, s.ci.HostPTR, s.ci.HostResolve
	if name == "" {
		name = "[" + addr + "]"
	}
	if ptr == "" {
		ptr = "[" + addr + "]"
	}
	if resolve == "" {
		resolve = "FAIL"
	}
	return name, ptr, resolve
}

// connDecision interprets a reply at connect or HELO.
func (s *Session) connDecision(p *peer, stage string, act *gomilter.Action) Decision {
	d, err := decide(p.conf.Name, act)
	if err != nil {
		return s.fail(p, stage, err)
	}
	switch d.Action {
	case Accept:
		p.doneConn = true
		return Decision{}
	case Discard:
		return s.fail(p, stage, fmt.Errorf("%w: discard is not allowed at %s", errProtocol, stage))
	case Reject, Tempfail:
		s.logf("milter %s: %s at %s: %s", p.conf.Name, d.Action, stage, d.Reply())
		p.sticky = &d
	}
	return d
}

func (s *Session) helo(p *peer, name string) Decision {
	p.heloSent = true
	act, err := p.cs.Helo(name)
	if err != nil {
		return s.fail(p, "HELO", err)
	}
	return s.connDecision(p, "HELO", act)
}

// decide maps a milter reply to a Decision. Replies outside the protocol
// (go-milter returns them as errors) never get here.
func decide(milter string, act *gomilter.Action) (Decision, error) {
	switch act.Code {
	case gomilter.ActContinue:
		return Decision{}, nil
	case gomilter.ActAccept:
		return Decision{Action: Accept, Milter: milter}, nil
	case gomilter.ActReject:
		return rejectDecision(milter), nil
	case gomilter.ActTempFail:
		return tempfailDecision(milter), nil
	case gomilter.ActDiscard:
		return Decision{Action: Discard, Milter: milter}, nil
	case gomilter.ActReplyCode:
		return replyDecision(milter, act.SMTPCode, act.SMTPText)
	}
	return Decision{}, fmt.Errorf("%w: reply %q", errProtocol, rune(act.Code))
}

// replyDecision parses a SMFIR_REPLYCODE reply: go-milter hands over the
// code and the rest, which starts with the enhanced code when there is one.
func replyDecision(milter string, code int, text string) (Decision, error) {
	d := Decision{Code: code, Milter: milter}
	switch code / 100 {
	case 4:
		d.Action, d.Enhanced = Tempfail, [3]int{4, 7, 1}
	case 5:
		d.Action, d.Enhanced = Reject, [3]int{5, 7, 1}
	default:
		return Decision{}, fmt.Errorf("%w: reply code %d is not 4xx or 5xx", errProtocol, code)
	}
	if first, rest, ok := strings.Cut(text, " "); ok || first != "" {
		if e, ok := parseEnhanced(first, code/100); ok {
			d.Enhanced, text = e, rest
		}
	}
	d.Text = text
	return d, nil
}

func parseEnhanced(s string, class int) ([3]int, bool) {
	var e [3]int
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return e, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || len(p) > 3 {
			return e, false
		}
		e[i] = n
	}
	return e, e[0] == class
}

// each runs fn for every milter still taking part in this message, in
// order, until one refuses. Sticky decisions of earlier stages are
// returned as they are.
func (s *Session) each(msg bool, fn func(p *peer) Decision) Decision {
	var final Decision
	for _, p := range s.peers {
		if p.sticky != nil {
			if p.sticky.stops() {
				return *p.sticky
			}
			continue
		}
		if p.cs == nil || p.doneConn || (msg && p.doneMsg) {
			continue
		}
		d := fn(p)
		if d.stops() {
			return d
		}
		if d.Action == Quarantine {
			final = d
		}
	}
	return final
}

// Helo sends the HELO/EHLO name to every milter.
func (s *Session) Helo(ctx context.Context, name string) Decision {
	s.open(ctx)
	s.ci.Helo = name
	return s.each(false, func(p *peer) Decision {
		end := p.conn.stage(ctx, p.conf.CommandTimeout)
		defer end()
		return s.helo(p, name)
	})
}

// msgDecision records a message-stage reply: accept or refusal ends the
// milter's part in this message; discard is remembered for Data.
func (s *Session) msgDecision(p *peer, stage string, act *gomilter.Action, perRcpt bool) Decision {
	d, err := decide(p.conf.Name, act)
	if err != nil {
		return s.fail(p, stage, err)
	}
	switch d.Action {
	case Accept:
		p.doneMsg = true
		return Decision{}
	case Discard:
		p.doneMsg = true
		s.discard = &d
		s.logf("milter %s: discard at %s", p.conf.Name, stage)
	case Reject, Tempfail:
		if !perRcpt {
			p.doneMsg = true
		}
		s.logf("milter %s: %s at %s: %s", p.conf.Name, d.Action, stage, d.Reply())
	}
	return d
}

// Mail sends MAIL FROM (from without <>, "" for the null sender) and the
// SASL login name and mechanism ("PLAIN"), if any.
func (s *Session) Mail(ctx context.Context, from, authAuthen, authType string) Decision {
	s.open(ctx)
	s.Abort(ctx) // a transaction left open (no RSET) ends here
	s.discard = nil
	return s.each(true, func(p *peer) Decision {
		end := p.conn.stage(ctx, p.conf.CommandTimeout)
		defer end()
		p.inMsg = true
		kv := []string{"{mail_addr}", from}
		if s.ci.QueueID != "" {
			kv = append(kv, "i", s.ci.QueueID)
		}
		if authAuthen != "" {
			kv = append(kv, "{auth_authen}", authAuthen, "{auth_type}", authType)
		}
		if err := p.cs.Macros(gomilter.CodeMail, kv...); err != nil {
			return s.fail(p, "MAIL", err)
		}
		act, err := p.cs.Mail(from, nil)
		if err != nil {
			return s.fail(p, "MAIL", err)
		}
		return s.msgDecision(p, "MAIL", act, false)
	})
}

// Rcpt sends one RCPT TO (without <>). Reject and Tempfail concern this
// recipient only.
func (s *Session) Rcpt(ctx context.Context, rcpt string) Decision {
	s.open(ctx)
	return s.each(true, func(p *peer) Decision {
		end := p.conn.stage(ctx, p.conf.CommandTimeout)
		defer end()
		kv := []string{"{rcpt_addr}", rcpt}
		if s.ci.QueueID != "" {
			kv = append(kv, "i", s.ci.QueueID)
		}
		if err := p.cs.Macros(gomilter.CodeRcpt, kv...); err != nil {
			return s.fail(p, "RCPT", err)
		}
		act, err := p.cs.Rcpt(rcpt, nil)
		if err != nil {
			return s.fail(p, "RCPT", err)
		}
		return s.msgDecision(p, "RCPT", act, true)
	})
}

// Data sends the headers, the body (LF line endings, as spooled; sent with
// CRLF) and end of message to every milter in order, each seeing the
// modifications of the milters before it, and returns the verdict with the
// modifications to apply. On Reject, Tempfail or Discard the modifications
// are of no use and empty.
func (s *Session) Data(ctx context.Context, queueID string, headers []spool.Header, body io.Reader) (Decision, Modifications) {
	s.msgID = queueID
	defer func() { s.msgID = "" }() // after the Abort below: its failures are the message's
	s.open(ctx)
	var mods Modifications
	// Milters that got no end of message (they accepted early, or the
	// chain stopped before them) are told the transaction is over.
	defer s.Abort(ctx)
	if s.discard != nil {
		return *s.discard, Modifications{}
	}
	body, cleanup, err := rereadable(body, s.activePeers())
	if err != nil {
		d := Decision{}
		for _, p := range s.peers {
			if p.cs != nil && p.sticky == nil {
				d = s.fail(p, "body", err)
				break
			}
		}
		return d, Modifications{}
	}
	defer cleanup()
	work := append([]spool.Header(nil), headers...)
	var replaced []byte
	d := s.each(true, func(p *peer) Decision {
		src := body
		if replaced != nil {
			src = bytes.NewReader(replaced)
		} else if sk, ok := body.(io.Seeker); ok {
			if _, err := sk.Seek(0, io.SeekStart); err != nil {
				return s.fail(p, "body", err)
			}
		}
		d, m := s.message(ctx, p, queueID, work, src)
		if d.stops() || p.sticky != nil {
			return d
		}
		s.record(p, &mods, m, &work, &replaced)
		return d
	})
	if d.stops() {
		return d, Modifications{}
	}
	if replaced != nil {
		mods.ReplaceBody = bytes.NewReader(replaced)
	}
	return d, mods
}

func (s *Session) activePeers() int {
	n := 0
	for _, p := range s.peers {
		if p.cs != nil && p.sticky == nil && !p.doneConn && !p.doneMsg {
			n++
		}
	}
	return n
}

// rereadable makes body readable once per milter: a seekable body is
// rewound; otherwise, with more than one milter, it is copied to a
// temporary file (never held in memory).
func rereadable(body io.Reader, readers int) (io.Reader, func(), error) {
	if _, ok := body.(io.Seeker); ok || readers < 2 {
		return body, func() {}, nil
	}
	f, err := os.CreateTemp("", "mxgate-milter-body-*")
	if err != nil {
		return nil, nil, fmt.Errorf("buffering the body for several milters: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, body); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("buffering the body for several milters in %s: %w", f.Name(), err)
	}
	return f, cleanup, nil
}

// message sends one milter the headers, body and end of message.
func (s *Session) message(ctx context.Context, p *peer, queueID string, headers []spool.Header, body io.Reader) (Decision, []gomilter.ModifyAction) {
	end := p.conn.stage(ctx, p.conf.CommandTimeout)
	stageEnded := false
	defer func() {
		if !stageEnded {
			end()
		}
	}()
	if err := p.cs.Macros(gomilter.CodeHeader, "i", queueID); err != nil {
		return s.fail(p, "header", err), nil
	}
	for _, h := range headers {
		if h.Type == '*' {
			continue
		}
		name, value := h.Name(), h.Value() // as a milter sees it without HDR_LEADSPC
		act, err := p.cs.HeaderField(name, value)
		if err != nil {
			return s.fail(p, "header "+name, err), nil
		}
		if d := s.msgDecision(p, "header", act, false); d.Action != Continue || p.doneMsg {
			return d, nil
		}
	}
	if err := p.cs.Macros(gomilter.CodeEOH, "i", queueID); err != nil {
		return s.fail(p, "end of headers", err), nil
	}
	act, err := p.cs.HeaderEnd()
	if err != nil {
		return s.fail(p, "end of headers", err), nil
	}
	if d := s.msgDecision(p, "end of headers", act, false); d.Action != Continue || p.doneMsg {
		return d, nil
	}
	end()
	stageEnded = true
	end = p.conn.stage(ctx, p.conf.EOMTimeout)
	defer end()
	if p.cs.ProtocolOpts&gomilter.OptNoBody == 0 {
		if d, stop := s.body(p, body); stop {
			return d, nil
		}
	}
	if err := p.cs.Macros(gomilter.CodeEOB, "i", queueID); err != nil {
		return s.fail(p, "end of message", err), nil
	}
	modActs, act, err := p.cs.End()
	if err != nil {
		return s.fail(p, "end of message", err), nil
	}
	p.inMsg = false
	d, err := decide(p.conf.Name, act)
	if err != nil {
		return s.fail(p, "end of message", err), nil
	}
	if d.Action == Accept {
		d = Decision{}
	}
	if d.stops() {
		s.logf("milter %s: %s at end of message%s", p.conf.Name, d.Action, replySuffix(d))
		return d, nil
	}
	for _, m := range modActs {
		if err := allowed(p.cs.ActionOpts, m); err != nil {
			return s.fail(p, "end of message", err), nil
		}
		if m.Code == gomilter.ActQuarantine {
			d = Decision{Action: Quarantine, Milter: p.conf.Name, Reason: m.Reason}
		}
	}
	return d, modActs
}

func replySuffix(d Decision) string {
	if d.Action == Discard {
		return ""
	}
	return ": " + d.Reply()
}

// body sends the body in chunks of at most 64 KiB, each LF turned into
// CRLF (the spool holds LF-only text). go-milter's BodyReadFrom loses the
// last bytes of a Read returning data with io.EOF, hence this loop.
func (s *Session) body(p *peer, body io.Reader) (Decision, bool) {
	in := make([]byte, 32*1024)
	chunk := make([]byte, 0, gomilter.MaxBodyChunk)
	flush := func() (Decision, bool) {
		if len(chunk) == 0 {
			return Decision{}, false
		}
		act, err := p.cs.BodyChunk(chunk)
		chunk = chunk[:0]
		if err != nil {
			return s.fail(p, "body", err), true
		}
		d := s.msgDecision(p, "body", act, false)
		return d, d.Action != Continue || p.doneMsg
	}
	for {
		n, err := body.Read(in)
		for _, b := range in[:n] {
			// Room for CR LF: a pair is never split across chunks.
			if len(chunk) >= cap(chunk)-1 {
				if d, stop := flush(); stop {
					return d, true
				}
			}
			if b == '\n' {
				chunk = append(chunk, '\r')
			}
			chunk = append(chunk, b)
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return s.fail(p, "body", fmt.Errorf("reading the spooled body: %w", err)), true
		}
	}
}

// allowed refuses a modification the milter did not negotiate.
func allowed(opts gomilter.OptAction, m gomilter.ModifyAction) error {
	var need gomilter.OptAction
	switch m.Code {
	case gomilter.ActAddHeader, gomilter.ActInsertHeader:
		need = gomilter.OptAddHeader
	case gomilter.ActChangeHeader:
		need = gomilter.OptChangeHeader
	case gomilter.ActReplBody:
		need = gomilter.OptChangeBody
	case gomilter.ActAddRcpt:
		need = gomilter.OptAddRcpt
	case gomilter.ActDelRcpt:
		need = gomilter.OptRemoveRcpt
	case gomilter.ActChangeFrom:
		need = gomilter.OptChangeFrom
	case gomilter.ActQuarantine:
		need = gomilter.OptQuarantine
	}
	if need == 0 || opts&need == 0 {
		return fmt.Errorf("%w: modification %q without the negotiated action", errProtocol, rune(m.Code))
	}
	return nil
}

// record adds one milter's modifications to the chain's, applies its
// header edits to work so the next milter sees (and counts) them, and logs
// each.
func (s *Session) record(p *peer, mods *Modifications, acts []gomilter.ModifyAction, work *[]spool.Header, replaced *[]byte) {
	name := p.conf.Name
	var newBody []byte
	bodySeen := false
	for _, m := range acts {
		switch m.Code {
		case gomilter.ActAddHeader, gomilter.ActInsertHeader:
			op := headerOp{add: true, insertAt: -1, name: m.HeaderName, value: m.HeaderValue}
			verb := "add header"
			if m.Code == gomilter.ActInsertHeader {
				op.insertAt = int(m.HeaderIndex)
				verb = fmt.Sprintf("insert header at %d", m.HeaderIndex)
			}
			mods.AddHeaders = append(mods.AddHeaders, newHeader(op.name, op.value))
			mods.InsertAt = append(mods.InsertAt, op.insertAt)
			mods.ops = append(mods.ops, op)
			*work = op.apply(*work)
			s.logf("milter %s: %s %s: %s", name, verb, op.name, firstLine(op.value))
		case gomilter.ActChangeHeader:
			op := headerOp{name: m.HeaderName, index: int(m.HeaderIndex), value: m.HeaderValue}
			mods.ChangeHeaders = append(mods.ChangeHeaders, HeaderChange{Name: op.name, Index: op.index, Value: op.value})
			mods.ops = append(mods.ops, op)
			*work = op.apply(*work)
			if op.value == "" {
				s.logf("milter %s: delete header %s #%d", name, op.name, op.index)
			} else {
				s.logf("milter %s: change header %s #%d: %s", name, op.name, op.index, firstLine(op.value))
			}
		case gomilter.ActReplBody:
			// REPLBODY packets concatenate into the new body.
			bodySeen = true
			newBody = append(newBody, m.Body...)
		case gomilter.ActAddRcpt:
			r := stripAngles(m.Rcpt)
			mods.AddRcpts = append(mods.AddRcpts, r)
			s.logf("milter %s: add recipient <%s>", name, r)
		case gomilter.ActDelRcpt:
			r := stripAngles(m.Rcpt)
			mods.DelRcpts = append(mods.DelRcpts, r)
			s.logf("milter %s: delete recipient <%s>", name, r)
		case gomilter.ActChangeFrom:
			mods.ChangeFrom = stripAngles(m.From)
			var args []string
			for _, a := range m.FromArgs {
				if a != "" { // go-milter leaves an empty last argument
					args = append(args, a)
				}
			}
			if len(args) > 0 {
				s.logf("milter %s: change sender <%s>, ESMTP arguments %q ignored", name, mods.ChangeFrom, args)
			} else {
				s.logf("milter %s: change sender <%s>", name, mods.ChangeFrom)
			}
		case gomilter.ActQuarantine:
			s.logf("milter %s: quarantine: %s", name, m.Reason)
		}
	}
	if bodySeen {
		*replaced = bytes.ReplaceAll(newBody, []byte("\r\n"), []byte("\n"))
		s.logf("milter %s: replace body (%d bytes)", name, len(*replaced))
	}
}

func firstLine(v string) string {
	line, _, _ := strings.Cut(v, "\n")
	return line
}

func stripAngles(a string) string {
	a = strings.TrimSpace(a)
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		return a[1 : len(a)-1]
	}
	return a
}

// Abort ends the current transaction (SMTP RSET, a refused MAIL, or the end
// of the transaction) for every milter that saw its MAIL.
func (s *Session) Abort(ctx context.Context) {
	s.discard = nil
	for _, p := range s.peers {
		inMsg := p.inMsg
		p.inMsg, p.doneMsg = false, false
		if !inMsg || p.cs == nil || p.sticky != nil {
			continue
		}
		end := p.conn.stage(ctx, p.conf.CommandTimeout)
		err := p.cs.Abort()
		end()
		if err != nil {
			s.fail(p, "abort", err)
		}
	}
}

// Close says QUIT to every milter and closes the connections.
func (s *Session) Close() {
	for _, p := range s.peers {
		if p.cs == nil {
			continue
		}
		end := p.conn.stage(context.Background(), p.conf.CommandTimeout)
		if err := p.cs.Close(); err != nil {
			s.logf("milter %s (%s): closing: %v", p.conf.Name, p.conf.Address, err)
		}
		end()
		_ = p.conn.Close()
		p.cs, p.conn = nil, nil
	}
}
