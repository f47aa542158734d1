package miltersrv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-milter"

	"mxgate/address"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/gateway"
	"mxgate/mainlog"
	"mxgate/smtptext"
	"mxgate/spool"
)

// session is one MTA connection, which is one SMTP session of the MTA's:
// go-milter calls it from the connection's goroutine only, but Shutdown
// may end it from another, so its state is behind mu.
type session struct {
	srv    *Server
	gen    *generation
	ctx    context.Context
	cancel context.CancelFunc
	name   string // the events' Conn
	start  time.Time

	mu     sync.Mutex
	closed bool
	flow   *filters.Flow // nil before Connect
	fconn  *filters.Conn
	port   int
	// refusal is the connect stage's; the MTA refuses the whole
	// session on it, and it answers any command that still comes.
	refusal *filters.Outcome
	// helo is the greeting given; heloAsked the one the checks were
	// asked about (at the first MAIL after it, as the gateway does), and
	// heloRefusal their refusal, which answers every MAIL until the next.
	helo, heloAsked string
	heloRefusal     *filters.Outcome
	txn             int
	tx              *filters.Tx // nil until MAIL is accepted
	id              spool.ID    // the MTA's queue ID, from MAIL's or the end's macro i
	body            *bodyFile
	headers         []spool.Header
	// mtaName is the MTA's name (connect macro j) and tls whether the
	// client started TLS (HELO macro {tls_version}): the stand-in of
	// the MTA's own Received line needs them.
	mtaName string
	tls     bool
}

var _ milter.Milter = (*session)(nil)

// Milter replies.
var (
	cont   = milter.RespContinue
	accept = milter.RespAccept
)

// reply is a verdict as a milter reply: the SMTP reply, code and text,
// the MTA gives its client. Postfix takes a reply without an enhanced
// status code for a malformed one (and applies milter_default_action):
// one without gets Sendmail's X.0.0. The text is a format string to
// Sendmail, and Postfix drops a single '%': each is doubled.
func reply(v filters.Verdict) milter.Response {
	enh := v.Enhanced
	if enh[0] <= 0 || enh[1] < 0 || enh[2] < 0 {
		enh = [3]int{v.Code / 100, 0, 0}
	}
	lines := smtptext.Lines(v.Code, enh, strings.ReplaceAll(v.Text, "%", "%%"))
	return milter.NewResponseStr(byte(milter.ActReplyCode), strings.Join(lines, "\r\n"))
}

// host is the client's H=.
func (s *session) host() string {
	return mainlog.Host(s.fconn.HostName, s.helo, s.fconn.IP)
}

// base is what every event of the session shares.
func (s *session) base(k event.Kind) event.Event {
	return event.Event{Kind: k, Conn: s.name, Client: s.fconn.IP, HostName: s.fconn.HostName, Listener: "milter", Txn: s.txn}
}

func (s *session) emit(e event.Event) {
	if s.srv.bus.Enabled() {
		s.srv.bus.Emit(e)
	}
}

// macro is the MTA's value of name, "" for none (Postfix says "unknown"
// for a client without a name).
func macro(m *milter.Modifier, name string) string {
	v := m.Macros[name]
	if v == "unknown" && (name == "{client_name}" || name == "{client_ptr}") {
		return ""
	}
	return v
}

// Connect opens the checks for the MTA's client and asks the connect
// stage (the DNS lists start here).
func (s *session) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return milter.RespTempFail, nil
	}
	ip, ok := netip.AddrFromSlice(addr)
	if a, err := netip.ParseAddr(macro(m, "{client_addr}")); err == nil {
		ip, ok = a, true
	}
	if !ok || family == "unix" || family == "unknown" {
		// Local submission (non_smtpd_milters): the MTA's own host.
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	s.port = int(port)
	s.mtaName = m.Macros["j"]
	name := macro(m, "{client_name}")
	if name == "" && host != "" && host != "unknown" && !strings.HasPrefix(host, "[") {
		name = host
	}
	ptr := macro(m, "{client_ptr}")
	if ptr == "" {
		ptr = name
	}
	resolve := "FAIL"
	if name != "" {
		resolve = "OK"
	}
	s.fconn = &filters.Conn{IP: ip.Unmap(), Port: s.port, HostName: name, HostPTR: ptr, HostResolve: resolve, ByMTA: true}
	s.flow = s.gen.pipeline.Open(s.ctx, s.fconn)
	s.emit(s.base(event.Connect))
	out := s.flow.Connect(s.ctx)
	host = mainlog.Host(name, "", s.fconn.IP)
	s.report(out, "")
	if !out.Verdict.Refuses() {
		return cont, nil
	}
	what := `connection in "connect" ACL`
	if s.srv.dryRun {
		s.wouldRefuse("H="+host, what, out.Verdict)
		return cont, nil
	}
	s.refusal = &out
	s.srv.log.Reject("", fmt.Sprintf("H=%s %s", host, gateway.RefusalLog(out.Verdict, what)))
	e := s.base(event.ConnRefused)
	e.Stage = "connect"
	gateway.FillRefusal(&e, out)
	s.emit(e)
	return reply(out.Verdict), nil
}

// report logs what the events of a stage ask for and emits their Check
// events; id is the message's at DATA, "" before.
func (s *session) report(out filters.Outcome, id string) {
	gateway.EmitChecks(s.srv.bus, out, s.base(event.Check), id)
	gateway.LogOutcome(s.srv.log, out, id, s.host())
}

// wouldRefuse is a dry run's mainlog line for a refusal not made; who is
// the H= (and F=) part.
func (s *session) wouldRefuse(who, what string, v filters.Verdict) {
	verb := "reject"
	if v.Action == filters.Tempfail {
		verb = "defer"
	}
	s.srv.log.Main(string(s.id), fmt.Sprintf("%s dry run: would %s %s: %s", who, verb, what, smtptext.Reply(v.Code, v.Enhanced, v.Text)))
}

// Helo notes the greeting; the checks hear of it at the next MAIL.
func (s *session) Helo(name string, m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.helo = gateway.SafeHelo(name)
	s.tls = m.Macros["{tls_version}"] != ""
	return cont, nil
}

// MailFrom asks the HELO stage (once per greeting) and the MAIL stage.
// {auth_authen} and {auth_type} are the client's login for the auth-aware
// checks.
func (s *session) MailFrom(from string, m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.cannot(false); r != nil {
		return r, nil
	}
	s.resetTx()
	s.txn++
	s.id = spool.ID(m.Macros["i"])
	tx := &filters.Tx{Helo: s.helo, Sender: from}
	if from != "" {
		if a, err := address.Parse(from); err == nil {
			tx.Sender, tx.SenderDomain = a.String(), a.Domain
		} else if _, dom, ok := strings.Cut(from, "@"); ok {
			tx.SenderDomain = strings.ToLower(dom)
		}
	}
	tx.AuthUser, tx.AuthMech = m.Macros["{auth_authen}"], strings.ToLower(m.Macros["{auth_type}"])
	host := s.host()
	var out filters.Outcome
	if s.heloAsked != s.helo {
		s.heloAsked, s.heloRefusal = s.helo, nil
		hout := s.flow.Helo(s.ctx, s.helo)
		s.report(hout, "")
		if hout.Verdict.Refuses() {
			s.heloRefusal = &hout
		}
	}
	if s.heloRefusal != nil {
		out = *s.heloRefusal
	} else {
		out = s.flow.Mail(s.ctx, tx)
		s.report(out, "")
	}
	what := "MAIL <" + from + ">"
	if v := out.Verdict; v.Refuses() {
		if s.srv.dryRun {
			// The transaction goes on, in the checks too.
			s.wouldRefuse("H="+host, what, v)
			s.heloRefusal = nil
			s.tx = tx
			return cont, nil
		}
		s.flow.Reset(s.ctx)
		s.srv.log.Reject("", fmt.Sprintf("H=%s %s", host, gateway.RefusalLog(v, what)))
		s.refused("mail", tx, "", out)
		return reply(v), nil
	}
	s.tx = tx
	return cont, nil
}

// cannot is the reply to a command that comes when the session cannot
// take it (closed, before Connect, after the connect stage refused, in
// a transaction when there is none), nil when it can.
func (s *session) cannot(inTx bool) milter.Response {
	switch {
	case s.closed || s.flow == nil || inTx && s.tx == nil && s.refusal == nil:
		return milter.RespTempFail
	case s.refusal != nil:
		return reply(s.refusal.Verdict)
	}
	return nil
}

// refused emits the Refused event of a refusal at MAIL or RCPT.
func (s *session) refused(stage string, tx *filters.Tx, rcpt string, out filters.Outcome) {
	if !s.srv.bus.Enabled() {
		return
	}
	e := s.base(event.Refused)
	e.Stage, e.Recipient, e.Sender, e.Helo, e.AuthUser = stage, rcpt, tx.Sender, tx.Helo, tx.AuthUser
	gateway.FillRefusal(&e, out)
	s.emit(e)
}

// RcptTo asks the RCPT stage: recipient verification, greylisting, the
// DNS lists' verdict. The relay policy is the MTA's (filters.Conn.ByMTA).
func (s *session) RcptTo(rcptTo string, m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.cannot(true); r != nil {
		return r, nil
	}
	tx := s.tx
	rcpt := rcptTo
	if a, err := address.Parse(rcptTo); err == nil {
		rcpt = a.String()
	}
	out := s.flow.Rcpt(s.ctx, tx, rcpt)
	s.report(out, "")
	what := "RCPT <" + rcpt + ">"
	if v := out.Verdict; v.Refuses() {
		if s.srv.dryRun {
			s.wouldRefuse(fmt.Sprintf("H=%s F=<%s>", s.host(), tx.Sender), what, v)
		} else {
			s.srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> %s", s.host(), tx.Sender, gateway.RefusalLog(v, what)))
			s.refused("rcpt", tx, rcpt, out)
			return reply(v), nil
		}
	}
	if !slices.Contains(tx.Rcpts, rcpt) {
		tx.Rcpts = append(tx.Rcpts, rcpt)
	}
	return cont, nil
}

// Header keeps one field of the message, as it came (its value with its
// leading space: SMFIP_HDR_LEADSPC).
func (s *session) Header(name, value string, m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.headers) >= maxHeaders {
		return milter.RespTempFail, nil
	}
	value = strings.ReplaceAll(value, "\r\n", "\n")
	s.headers = append(s.headers, spool.Header{Type: spool.HeaderType(name), Text: name + ":" + value + "\n"})
	return cont, nil
}

// maxHeaders bounds the fields kept in memory; the MTA's own limits are
// far below it.
const maxHeaders = 10000

// Headers is the end of the header block: nothing to decide yet.
func (s *session) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return cont, nil
}

// BodyChunk streams the body into the temporary file.
func (s *session) BodyChunk(chunk []byte, m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.tx == nil {
		return milter.RespTempFail, nil
	}
	if s.body == nil {
		b, err := newBodyFile(s.srv.tmpDir)
		if err != nil {
			s.srv.log.Panic(fmt.Sprintf("H=%s F=<%s>: %v", s.host(), s.tx.Sender, err))
			return reply(filters.LocalProblem()), nil
		}
		s.body = b
	}
	if _, err := s.body.Write(chunk); err != nil {
		s.srv.log.Panic(fmt.Sprintf("H=%s F=<%s>: %v", s.host(), s.tx.Sender, err))
		return reply(filters.LocalProblem()), nil
	}
	return cont, nil
}

// Abort ends the transaction: the MTA's RSET, a refused DATA, a client
// gone.
func (s *session) Abort(m *milter.Modifier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetTx()
	return nil
}

// resetTx forgets the transaction and removes its temporary file.
func (s *session) resetTx() {
	if s.body != nil {
		s.body.Close()
		s.body = nil
	}
	if s.tx != nil && s.flow != nil {
		s.flow.Reset(s.ctx)
	}
	s.tx, s.headers, s.id = nil, nil, ""
}

// close ends the session: the connection to the MTA is gone.
func (s *session) close() {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.resetTx()
	if s.flow != nil {
		s.flow.Close()
		s.emit(event.Event{Kind: event.Disconnect, Conn: s.name, Client: s.fconn.IP, Listener: "milter", Duration: time.Since(s.start)})
	}
}
