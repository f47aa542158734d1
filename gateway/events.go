package gateway

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/event"
	"mxgate/filters"
	"mxgate/header"
	"mxgate/smtptext"
	"mxgate/spool"
)

// The pipeline's events are the only source of what a session says about
// its checks: the -bh trace, the log lines and the SMTP reply are made
// here, each in one place.

// report writes what the events of one stage want traced and logged. id
// is the message's ID at DATA, "" before; host is the client's H=.
//
// It also emits the stage's Check events; c is the connection (txn its
// transaction).
func (srv *Server) report(out filters.Outcome, id, host string, c *conn, txn int) {
	if c != nil {
		e := c.base(event.Check)
		e.Txn = txn
		EmitChecks(srv.bus, out, e, id)
	}
	for _, line := range out.Trace {
		srv.trace.printf("%s", line)
	}
	for _, e := range out.Events {
		if e.Scanner {
			continue // traced together by traceScan
		}
		for _, line := range e.Verdict.Trace {
			srv.trace.printf("%s", line)
		}
	}
	LogOutcome(srv.log, out, id, host)
}

// LogOutcome writes the mainlog, rejectlog and paniclog lines the events
// of one stage's outcome ask for (the scanners' excepted: they make the
// one "content scan" line, see ScanFacts). id is the message's ID at
// DATA, "" before; host is the client's H= (mainlog.Host). The gateway's
// sessions and the milter server log through it, so both modes write the
// same lines.
func LogOutcome(log Logger, out filters.Outcome, id, host string) {
	for _, e := range out.Events {
		if e.Scanner {
			continue
		}
		for _, l := range e.Verdict.Logs {
			text := l.Text
			if l.Host {
				text = "H=" + host + " " + text
			}
			switch l.Kind {
			case filters.RejectLog:
				log.Reject(id, text)
			case filters.PanicLog:
				if id != "" {
					text = id + " " + text
				}
				log.Panic(text)
			default:
				log.Main(id, text)
			}
		}
	}
}

// RefusalLog is the rejectlog line of a command a check refused, Exim's
// "H=... F=<...> rejected RCPT <...>: reason" after the H= and F=.
func RefusalLog(v filters.Verdict, what string) string {
	verb := "rejected"
	if v.Action == filters.Tempfail {
		verb = "temporarily rejected"
	}
	why := v.Log
	if why == "" {
		why = v.Text
	}
	return verb + " " + what + ": " + why
}

// ScanEvents are the events of the content scanners of a DATA outcome.
func ScanEvents(out filters.Outcome) []filters.Event {
	var es []filters.Event
	for _, e := range out.Events {
		if e.Scanner {
			es = append(es, e)
		}
	}
	return es
}

// ScanFacts is the per-scanner part of the "content scan" mainlog line:
// each scanner's facts (which name it), or why it failed, with its action
// and the time it took: "spamd score=12.1 required=5.0 (accept, 130ms)".
func ScanFacts(es []filters.Event) string {
	parts := make([]string, len(es))
	for i, e := range es {
		facts := e.Verdict.Log
		switch {
		case e.Err != nil:
			facts = e.Check + " failed: " + e.Err.Error()
		case facts == "":
			facts = e.Check
		}
		parts[i] = fmt.Sprintf("%s (%s, %dms)", facts, e.Verdict.Action, e.Duration.Milliseconds())
	}
	return strings.Join(parts, "; ")
}

// traceScan writes every scanner's verdict to a test session's trace.
func (s *Server) traceScan(es []filters.Event) {
	if s.trace == nil || len(es) == 0 {
		return
	}
	for _, e := range es {
		switch {
		case e.Err != nil:
			s.trace.printf("content scan: %s failed: %v: %s", e.Check, e.Err, e.Verdict.Action)
		case e.Verdict.Log != "":
			s.trace.printf("content scan: %s: %s", e.Verdict.Log, e.Verdict.Action)
		default:
			s.trace.printf("content scan: %s: %s", e.Check, e.Verdict.Action)
		}
	}
	v := filters.Strictest(es)
	switch v.Action {
	case filters.Reject, filters.Tempfail:
		s.trace.printf("content scan: verdict %s: %s", v.Action, smtptext.Reply(v.Code, v.Enhanced, v.Text))
	case filters.Quarantine, filters.Discard:
		s.trace.printf("content scan: verdict %s: %s", v.Action, DiscardText(v))
	default:
		s.trace.printf("content scan: verdict %s", v.Action)
	}
	if v.Action <= filters.Tag || v.Action == filters.Quarantine {
		for _, e := range es {
			for _, h := range e.Verdict.Headers {
				s.trace.printf("content scan: stamped %s", strings.TrimSuffix(h.Text, "\n"))
			}
		}
	}
}

func DiscardText(v filters.Verdict) string {
	if v.Reason != "" {
		return v.Reason
	}
	return v.Text
}

// warnings are the mainlog Warning lines of an accepted message: the Log
// of every Tag verdict (Exim's "warn" ACL lines).
func Warnings(out filters.Outcome) []string {
	var ws []string
	for _, e := range out.Events {
		if e.Verdict.Action == filters.Tag && e.Verdict.Log != "" {
			ws = append(ws, e.Verdict.Log)
		}
	}
	return ws
}

// The bus's events of a session are made here too, beside the log lines
// they match: one function per kind.

// connPrefix makes each connection's Conn unique across restarts: the
// process's start, then a counter.
var (
	connPrefix = strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	connCount  atomic.Uint64
)

// NewConnName is a new connection's event name (event.Event.Conn),
// unique across restarts; the milter server names its sessions with it.
func NewConnName() string { return connPrefix + strconv.FormatUint(connCount.Add(1), 36) }

// base is the part every event of the connection shares.
func (c *conn) base(k event.Kind) event.Event {
	return event.Event{Kind: k, Conn: c.name, Client: c.ip, HostName: c.host.Name, Listener: c.listener}
}

// emitConnect is the Connect event of an admitted client.
func (c *conn) emitConnect() {
	if !c.srv.bus.Enabled() {
		return
	}
	c.name = NewConnName()
	c.start = time.Now()
	c.srv.bus.Emit(c.base(event.Connect))
}

// emitDisconnect is the Disconnect event: the connection's life. Close
// may run beside the connect stage (Shutdown), so the host name, which
// that stage sets, is left out.
func (c *conn) emitDisconnect() {
	if c.name == "" {
		return
	}
	c.srv.bus.Emit(event.Event{Kind: event.Disconnect, Conn: c.name, Client: c.ip, Listener: c.listener, Duration: time.Since(c.start)})
}

// emitConnRefused is a client refused before its greeting: by the limits
// (out nil, why says which) or by the connect stage's checks. A client
// refused while shutting down, or on the implicit TLS port, is closed
// without a reply (Code 0).
func (s *Server) emitConnRefused(c *conn, ip netip.Addr, listener, why string, out *filters.Outcome) {
	if !s.bus.Enabled() {
		return
	}
	e := event.Event{Kind: event.ConnRefused, Client: ip, Listener: listener, Stage: "connect"}
	if c != nil {
		e = c.base(event.ConnRefused)
		e.Stage = "connect"
	}
	switch {
	case out == nil && why == reasonShuttingDown:
		e.Reason, e.ReasonCode = why, "shutting-down"
	case out == nil:
		e.Reason, e.ReasonCode = why, "connection-limit"
		if listener != "smtps" {
			e.Code, e.Enhanced, e.Text = 421, "4.7.0", "Too many connections, try again later"
		}
	default:
		FillRefusal(&e, *out)
	}
	s.bus.Emit(e)
}

// EmitChecks emits one Check event per answer of a stage (scanners
// too): what metrics count per check and tracking shows in a timeline.
// base names the connection and transaction (Conn, Client, Txn, ...); id
// is the message's ID at DATA. Reason is the verdict's facts as logged
// ("spamd score=12.1 required=5.0", msgauth's "spf=pass
// dkim=pass:example.org dmarc=pass").
func EmitChecks(bus *event.Bus, out filters.Outcome, base event.Event, id string) {
	if !bus.Enabled() {
		return
	}
	for _, fe := range out.Events {
		e := base
		e.Kind, e.ID = event.Check, id
		v := fe.Verdict
		e.Check, e.Stage, e.Action, e.ReasonCode = fe.Check, stageNames[fe.Stage], v.Action.String(), v.ReasonCode
		e.Score, e.Scored, e.Virus, e.List = v.Score, v.Scored, v.Virus, v.List
		e.Reason, e.Err, e.Duration = v.Log, fe.Err, fe.Duration
		bus.Emit(e)
	}
}

// stageNames are the events' names of the stages.
var stageNames = [...]string{filters.StageConnect: "connect", filters.StageHelo: "helo",
	filters.StageMail: "mail", filters.StageRcpt: "rcpt", filters.StageData: "data"}

// Decider is the check whose verdict a stage's outcome is.
func Decider(out filters.Outcome) string {
	w := out.Verdict
	for _, e := range out.Events {
		if v := e.Verdict; v.Action == w.Action && v.ReasonCode == w.ReasonCode && v.Text == w.Text {
			return e.Check
		}
	}
	return ""
}

// scored is the score a scanner gave the message, if one did.
func Scored(out filters.Outcome) (float64, bool) {
	for _, e := range out.Events {
		if e.Verdict.Scored {
			return e.Verdict.Score, true
		}
	}
	return 0, false
}

func Enhanced(e [3]int) string {
	if e[0] == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// refusal is what a Refused event says beyond the reply: which check
// refused and why, as data. Refusals of the gateway itself (syntax, size,
// spool space) name no check.
type refusal struct {
	check, reasonCode, list, reason string
}

// checkRefusal is the refusal of a stage's checks.
func checkRefusal(out filters.Outcome) refusal {
	v := out.Verdict
	return refusal{check: Decider(out), reasonCode: v.ReasonCode, list: v.List, reason: v.Log}
}

// refused emits the Refused event of a reply and returns the reply, so a
// refusal is `return s.refused(...)`. rcpt is RCPT's recipient; at DATA
// the transaction's recipients are the event's.
func (s *session) refused(stage string, tx *transaction, rcpt string, why refusal, r *smtp.SMTPError) error {
	bus := s.srv.bus
	if !bus.Enabled() {
		return r
	}
	e := s.conn.base(event.Refused)
	e.Stage, e.Recipient = stage, rcpt
	if tx != nil {
		e.Txn, e.Sender, e.Helo, e.AuthUser = tx.txn, tx.Sender, tx.Helo, tx.AuthUser
		if stage == "data" {
			e.Recipients = tx.Rcpts
		}
	} else {
		e.Txn, e.Helo = int(s.conn.txn.Load()), SafeHelo(s.c.Hostname())
	}
	e.Code, e.Text = r.Code, r.Message
	if r.EnhancedCode != (smtp.EnhancedCode{}) {
		e.Enhanced = Enhanced([3]int(r.EnhancedCode))
	}
	e.Check, e.ReasonCode, e.List, e.Reason = why.check, why.reasonCode, why.list, why.reason
	s.conn.markEmitted(r)
	bus.Emit(e)
	return r
}

// markEmitted notes that r, about to be written, has its Refused event.
func (c *conn) markEmitted(r *smtp.SMTPError) {
	c.mu.Lock()
	c.emitted = smtp.SMTPError{Code: r.Code, Message: r.Message}
	c.mu.Unlock()
}

// protocolRefused is the Refused event of an error reply go-smtp made
// itself (a syntax or sequence error, SIZE= over the limit, an unknown
// command): errorReply sees every error reply, the session's too, which
// already have theirs. go-smtp does not say which command it answers, so
// the Stage is "protocol".
func (c *conn) protocolRefused(sc *smtp.Conn, r *smtp.SMTPError) {
	if !c.srv.bus.Enabled() {
		return
	}
	c.mu.Lock()
	mine := c.emitted.Code == r.Code && c.emitted.Message == r.Message
	c.emitted = smtp.SMTPError{}
	c.mu.Unlock()
	if mine {
		return
	}
	e := c.base(event.Refused)
	e.Stage, e.Helo, e.Txn, e.ReasonCode = "protocol", SafeHelo(sc.Hostname()), int(c.txn.Load()), "protocol"
	e.Code, e.Enhanced, e.Text = r.Code, Enhanced([3]int(r.EnhancedCode)), r.Message
	c.srv.bus.Emit(e)
}

// emitMessage is the event of a message DATA answered 250: Accepted,
// Quarantined or Discarded. The headers are read only for a listener.
func (s *session) emitMessage(k event.Kind, tx transaction, env *spool.Envelope, size int64, out filters.Outcome) {
	bus := s.srv.bus
	if !bus.Enabled() {
		return
	}
	e := s.conn.base(k)
	e.Txn, e.ID, e.Helo, e.AuthUser = tx.txn, string(env.ID), tx.Helo, tx.AuthUser
	e.Sender, e.Recipients, e.Size = env.Sender, env.Recipients, size
	FillMessage(&e, out, env.Headers)
	bus.Emit(e)
}

// FillRefusal fills the part of a Refused (or ConnRefused) event that a
// stage's refusing outcome decides: the reply, which check refused and
// why, as data, and a scanner's score and virus.
func FillRefusal(e *event.Event, out filters.Outcome) {
	v := out.Verdict
	e.Code, e.Enhanced, e.Text = v.Code, Enhanced(v.Enhanced), v.Text
	e.Check, e.ReasonCode, e.List, e.Reason, e.Virus = Decider(out), v.ReasonCode, v.List, v.Log, v.Virus
	e.Score, e.Scored = Scored(out)
}

// FillMessage fills the part of an Accepted, Quarantined or Discarded
// event (e.Kind) that the DATA outcome and the message's headers decide.
func FillMessage(e *event.Event, out filters.Outcome, headers []spool.Header) {
	v := out.Verdict
	e.Subject, e.MessageID = header.Subject(headers), header.MessageID(headers)
	e.Action, e.Source = v.Action.String(), event.SourceSMTP
	e.Score, e.Scored = Scored(out)
	if e.Kind != event.Accepted {
		e.Check, e.ReasonCode, e.Reason = Decider(out), v.ReasonCode, DiscardText(v)
		e.Virus, e.List = v.Virus, v.List
	}
}

// refusedData is the Refused event of the checks' refusal after DATA,
// which names the message's ID and what the scanners found.
func (s *session) refusedData(tx transaction, id spool.ID, out filters.Outcome, r *smtp.SMTPError) error {
	if !s.srv.bus.Enabled() {
		return r
	}
	e := s.conn.base(event.Refused)
	e.Stage, e.Txn, e.ID, e.Helo, e.AuthUser = "data", tx.txn, string(id), tx.Helo, tx.AuthUser
	e.Sender, e.Recipients = tx.Sender, tx.Rcpts
	FillRefusal(&e, out)
	e.Text = r.Message
	s.conn.markEmitted(r)
	s.srv.bus.Emit(e)
	return r
}

// refusedAuth is the Refused event of a failed AUTH (Stage "auth"): the
// login tried is its AuthUser.
func (s *session) refusedAuth(user, code, reason string, r *smtp.SMTPError) error {
	if !s.srv.bus.Enabled() {
		return r
	}
	e := s.conn.base(event.Refused)
	e.Stage, e.Helo, e.AuthUser, e.Txn = "auth", SafeHelo(s.c.Hostname()), user, int(s.conn.txn.Load())
	e.Code, e.Enhanced, e.Text = r.Code, Enhanced([3]int(r.EnhancedCode)), r.Message
	e.ReasonCode, e.Reason = code, reason
	s.conn.markEmitted(r)
	s.srv.bus.Emit(e)
	return r
}
