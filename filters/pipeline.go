package filters

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"mxgate/event"
	"mxgate/spool"
)

// Logger is where the pipeline's own lines go: a scanner's failure and
// its circuit breaker (paniclog, as Exim logs a spamd or clamd failure),
// a check that panicked.
type Logger interface {
	Main(id, text string)
	Panic(text string)
}

// Options are the checks of a pipeline, in the order they are asked.
type Options struct {
	// Checks are asked at every stage, in order. At connect, HELO, MAIL
	// and RCPT the first refusal answers and the checks after it are not
	// asked (a milter never sees a recipient the relay policy refused).
	// At DATA they run one after the other and may change the message.
	Checks []Step
	// Scanners run at DATA after the Checks, in parallel, each under its
	// own timeout, on_error policy and circuit breaker, on the message as
	// the Checks left it.
	Scanners []Entry
	// Final checks run at DATA last, only on a message to be accepted,
	// and see its headers as they will be committed (DKIM signing). Their
	// headers go on top of the message.
	Final []Check
	Log   Logger
	// Bus gets a Breaker event when a circuit breaker opens or closes;
	// nil emits nothing.
	Bus *event.Bus
}

// Step is one of Options.Checks with the guard the pipeline keeps around
// it: a check that does not answer in time or panics is a failure, which
// its OnError answers for it, for the rest of the connection; after
// BreakAfter failures in a row (across connections) the check is not
// asked for CoolDown, then one connection probes it.
type Step struct {
	Check Check
	// Timeout bounds each answer at connect, HELO, MAIL and RCPT. It is a
	// backstop behind the check's own bounds (a DNS list's timeout, a
	// callout's deadline): those answer first, with the check's own
	// verdict. 0: no backstop (the relay policy, which waits for nothing).
	// At DATA a check may change the message, so it is never left running
	// behind the session's back: it bounds itself (a milter's eom_timeout).
	Timeout time.Duration
	// OnError is OnErrorTempfail (451 4.7.1; also for "") or
	// OnErrorAccept (the check is skipped).
	OnError    string
	BreakAfter int // 0: no breaker
	CoolDown   time.Duration
}

// Pipeline runs the checks of every session. It is safe for concurrent
// use; the circuit breakers are shared by all sessions.
type Pipeline struct {
	steps  []step
	final  []Check
	scan   *Chain
	owners []ownerOf // the Owner checks and scanners, for Data's header cleaning
	// scanOwned: some scanner owns a field, so what a check adds is
	// looked at after it.
	scanOwned bool
	log       Logger
	bus       *event.Bus
	now       func() time.Time // the breakers' clock; replaced in tests
}

// Retire is the end of the pipeline's generation: a reload put a newer
// one in service, whose breakers start closed and report the checks'
// state from now on. Each breaker still open here is reported closed on
// the bus (mxgate_breaker_open would otherwise stay at 1 for it), and
// none reports again; the sessions still running here keep their
// breakers and their log lines.
func (p *Pipeline) Retire() {
	for i := range p.steps {
		p.steps[i].br.retire(p.bus, p.steps[i].name)
	}
	if p.scan != nil {
		p.scan.retire()
	}
}

type step struct {
	Step
	name string
	br   breaker
}

type ownerOf struct {
	name    string
	owner   Owner
	scanner bool
}

// New builds a pipeline.
func New(o Options) *Pipeline {
	p := &Pipeline{final: o.Final, log: o.Log, bus: o.Bus, now: time.Now}
	if len(o.Scanners) > 0 {
		p.scan = NewChain(o.Scanners, o.Log)
		p.scan.bus = o.Bus
	}
	p.steps = make([]step, len(o.Checks))
	for i, st := range o.Checks {
		p.steps[i] = step{Step: st, name: st.Check.Name()}
	}
	addOwner := func(name string, c any, scanner bool) {
		if ow, ok := c.(Owner); ok {
			p.owners = append(p.owners, ownerOf{name: name, owner: ow, scanner: scanner})
			p.scanOwned = p.scanOwned || scanner
		}
	}
	for i := range p.steps {
		addOwner(p.steps[i].name, p.steps[i].Check, false)
	}
	for _, c := range o.Final {
		addOwner(c.Name(), c, false)
	}
	for _, e := range o.Scanners {
		addOwner(e.Filter.Name(), e.Filter, true)
	}
	return p
}

// Event is one check's verdict at one stage: what the SMTP reply, the log
// lines, the -bh trace (and metrics) are made from.
type Event struct {
	Check    string
	Stage    Stage
	Verdict  Verdict
	Scanner  bool  // from Options.Scanners: part of the "content scan" line
	Err      error // a scanner's failure, its on_error already applied
	Duration time.Duration
}

// Outcome is a stage's combined verdict and the events it was made from.
type Outcome struct {
	Verdict Verdict // Trace and Logs are the events'
	Events  []Event
	// Trace are the pipeline's own lines: the owned fields it removed.
	Trace []string
}

// Flow is the pipeline's state for one connection: the session of every
// check.
type Flow struct {
	p    *Pipeline
	ss   []Session
	fin  []Session
	conn *Conn
	// failed: the check failed on this connection, its OnError answers
	// for it from now on; running: closed once a call the pipeline
	// stopped waiting for returns (Close waits for it before closing the
	// check's session).
	failed  []bool
	running []chan struct{}
	// held are the verdicts that neither accept nor refuse given before
	// DATA (a tag, a discard, a quarantine): they count at DATA, with the
	// message's own. connHeld from connect and HELO, held from the
	// transaction.
	connHeld, held []Event
}

// Open opens every check's session for a client just admitted. It does
// not block: checks only start their lookups here.
func (p *Pipeline) Open(ctx context.Context, c *Conn) *Flow {
	s := &Flow{p: p, conn: c, ss: make([]Session, len(p.steps)), fin: make([]Session, len(p.final)),
		failed: make([]bool, len(p.steps)), running: make([]chan struct{}, len(p.steps))}
	for i := range p.steps {
		s.ss[i], s.failed[i] = s.open(ctx, p.steps[i].name, p.steps[i].Check)
	}
	for i, ch := range p.final {
		s.fin[i], _ = s.open(ctx, ch.Name(), ch)
	}
	return s
}

// open opens one check's session. This runs in the accept loop: a check
// that panics gets a session that says nothing and is failed for the
// connection (its on_error answers for it).
func (s *Flow) open(ctx context.Context, name string, ch Check) (Session, bool) {
	var cs Session = Pass{}
	err := s.contain(name, "opening", func() { cs = ch.Open(ctx, s.conn) })
	return cs, err != nil
}

// contain runs fn, a call into check name, so that a panic is logged and
// returned as an error instead of taking the gateway down.
func (s *Flow) contain(name, where string, fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.p.log.Panic(fmt.Sprintf("check %s panicked %s from [%s]: %v\n%s", name, where, s.conn.IP, r, debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	fn()
	return nil
}

// ask asks the checks in order until one refuses.
func (s *Flow) ask(ctx context.Context, stage Stage, call func(context.Context, Session) Verdict) Outcome {
	out := Outcome{Events: make([]Event, 0, len(s.ss))}
	for i := range s.ss {
		start := time.Now()
		v, err := s.guarded(ctx, i, stage, call)
		out.Events = append(out.Events, Event{Check: s.p.steps[i].name, Stage: stage, Verdict: v, Err: err, Duration: time.Since(start)})
		if v.Refuses() {
			break
		}
	}
	out.Verdict = Strictest(out.Events)
	return out
}

// errNoAnswer is a check that did not answer within its Step.Timeout.
var errNoAnswer = errors.New("no answer")

// guarded asks check i under its Step's guard: the breaker, the timeout,
// panic recovery. A failure returns the OnError verdict and the error.
func (s *Flow) guarded(ctx context.Context, i int, stage Stage, call func(context.Context, Session) Verdict) (Verdict, error) {
	st := &s.p.steps[i]
	if s.failed[i] {
		return s.onError(st, errors.New("failed earlier on this connection")), nil
	}
	ok, probe := st.br.allow(st.BreakAfter, st.CoolDown, s.p.now())
	if !ok {
		err := fmt.Errorf("%s: %w", s.p.steps[i].name, ErrBreakerOpen)
		s.failed[i] = true
		return s.onError(st, err), err
	}
	var (
		v   Verdict
		err error
	)
	if w, ok := st.Check.(Waiter); st.Timeout <= 0 || ok && !w.Waits(stage) {
		v, err = s.recovered(i, stage, func() Verdict { return call(ctx, s.ss[i]) })
	} else {
		v, err = s.timed(ctx, i, stage, call)
	}
	// A client that went away says nothing about the check's health.
	if ctx.Err() == nil {
		switch st.br.done(st.BreakAfter, st.CoolDown, probe, err != nil, s.p.now(), s.p.bus, st.name, err) {
		case evOpened:
			s.p.log.Panic(fmt.Sprintf("check %s: circuit breaker opened after %d consecutive failures, skipping it for %v: %v",
				s.p.steps[i].name, st.BreakAfter, st.CoolDown, err))
		case evClosed:
			s.p.log.Main("", fmt.Sprintf("check %s: circuit breaker closed, it answers again", s.p.steps[i].name))
		}
	}
	if err == nil {
		return v, nil
	}
	s.failed[i] = true
	s.p.log.Panic(fmt.Sprintf("check %s failed at %s from [%s]: %v (on_error=%s)", s.p.steps[i].name, stage, s.conn.IP, err, onErrorName(st.OnError)))
	return s.onError(st, err), err
}

// timed runs the call in its own goroutine and stops waiting at the
// Step's timeout; the call gets a context ending then too.
func (s *Flow) timed(ctx context.Context, i int, stage Stage, call func(context.Context, Session) Verdict) (Verdict, error) {
	tctx, cancel := context.WithTimeout(ctx, s.p.steps[i].Timeout)
	defer cancel()
	type answer struct {
		v   Verdict
		err error
	}
	ch := make(chan answer, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, err := s.recovered(i, stage, func() Verdict { return call(tctx, s.ss[i]) })
		ch <- answer{v, err}
	}()
	select {
	case a := <-ch:
		return a.v, a.err
	case <-tctx.Done():
		s.running[i] = done
		return Verdict{}, fmt.Errorf("%w within %v", errNoAnswer, s.p.steps[i].Timeout)
	}
}

// recovered runs check i's call at stage, turning a panic into an error.
func (s *Flow) recovered(i int, stage Stage, fn func() Verdict) (v Verdict, err error) {
	err = s.contain(s.p.steps[i].name, "at "+stage.String(), func() { v = fn() })
	return v, err
}

func onErrorName(p string) string {
	if p == OnErrorAccept {
		return OnErrorAccept
	}
	return OnErrorTempfail
}

// onError is the verdict standing in for a check that failed.
func (s *Flow) onError(st *step, err error) Verdict {
	name := st.Check.Name()
	if st.OnError == OnErrorAccept {
		return Verdict{Log: name + " unchecked", Reason: err.Error(), Trace: []string{name + ": failed (" + err.Error() + "): skipped (on_error = accept)"}}
	}
	return Verdict{
		Action: Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1}, Text: tempfailText,
		Reason: err.Error(), ReasonCode: "check-failed", Log: name + " failed: " + err.Error(),
		Trace: []string{name + ": failed (" + err.Error() + "): deferred (on_error = tempfail)"},
	}
}

// safe runs a DATA-stage call so that its panic becomes a local problem
// for this message instead of taking the gateway down.
func (s *Flow) safe(name string, fn func() Verdict) (v Verdict) {
	if s.contain(name, "at "+StageData.String(), func() { v = fn() }) != nil {
		v = LocalProblem()
		v.Log = "check " + name + " failed"
	}
	return v
}

// Strictest combines the verdicts of events: the strictest action wins,
// the first on a tie. This is the one place verdicts are weighed. The
// winner's Trace and Logs stay with its event.
func Strictest(events []Event) Verdict {
	return strictest(events, func(*Event) bool { return false })
}

// strictest is Strictest where, on a tie, the events first picks win.
func strictest(events []Event, first func(*Event) bool) Verdict {
	win := -1
	for i := range events {
		e := &events[i]
		switch {
		case win < 0:
			win = i
		case e.Verdict.Action > events[win].Verdict.Action:
			win = i
		case e.Verdict.Action == events[win].Verdict.Action && first(e) && !first(&events[win]):
			win = i
		}
	}
	if win < 0 {
		return Verdict{}
	}
	v := events[win].Verdict
	v.Trace, v.Logs = nil, nil
	return v
}

// Connect is asked before the greeting.
func (s *Flow) Connect(ctx context.Context) Outcome {
	out := s.ask(ctx, StageConnect, func(ctx context.Context, cs Session) Verdict { return cs.Connect(ctx) })
	s.connHeld = hold(s.connHeld, out)
	return out
}

// Helo is asked once per greeting, before the first MAIL after it.
func (s *Flow) Helo(ctx context.Context, helo string) Outcome {
	out := s.ask(ctx, StageHelo, func(ctx context.Context, cs Session) Verdict { return cs.Helo(ctx, helo) })
	s.connHeld = hold(s.connHeld, out)
	return out
}

// Mail is asked for a sender the gateway parsed. Once every check has
// accepted it, the Starters start their work.
func (s *Flow) Mail(ctx context.Context, tx *Tx) Outcome {
	out := s.ask(ctx, StageMail, func(ctx context.Context, cs Session) Verdict { return cs.Mail(ctx, tx) })
	if !out.Verdict.Refuses() {
		for i, cs := range s.ss {
			st, ok := cs.(Starter)
			if !ok || s.failed[i] {
				continue
			}
			v, err := s.recovered(i, StageMail, func() Verdict { return st.MailAccepted(ctx, tx) })
			if err != nil {
				s.failed[i] = true
				v = s.onError(&s.p.steps[i], err)
			}
			out.Events = append(out.Events, Event{Check: s.p.steps[i].name, Stage: StageMail, Verdict: v, Err: err})
		}
		out.Verdict = Strictest(out.Events)
	}
	s.held = hold(s.held, out)
	return out
}

// Rcpt is asked for a recipient the gateway parsed.
func (s *Flow) Rcpt(ctx context.Context, tx *Tx, rcpt string) Outcome {
	out := s.ask(ctx, StageRcpt, func(ctx context.Context, cs Session) Verdict { return cs.Rcpt(ctx, tx, rcpt) })
	if !out.Verdict.Refuses() {
		s.held = hold(s.held, out)
	}
	return out
}

// hold keeps the events of out that neither accept nor refuse, for DATA.
func hold(held []Event, out Outcome) []Event {
	if out.Verdict.Refuses() {
		return held
	}
	for _, e := range out.Events {
		if e.Verdict.Action == Accept || e.Verdict.Refuses() {
			continue
		}
		// One per check and stage: every RCPT may repeat the verdict.
		if slices.ContainsFunc(held, func(h Event) bool { return h.Check == e.Check && h.Stage == e.Stage }) {
			continue
		}
		e.Verdict.Trace, e.Verdict.Logs = nil, nil // said already
		held = append(held, e)
	}
	return held
}

// Data runs every check on the spooled message m: first the owned header
// fields are removed, then the Checks one after the other, the Scanners
// in parallel, and the strictest verdict wins. When the message is to be
// kept (accept, tag, quarantine) the verdicts' edits and headers are
// applied to m.Headers (stamps right after our Received); when it is to
// be accepted the Final checks then run and put theirs on top.
func (s *Flow) Data(ctx context.Context, m *Message) Outcome {
	var out Outcome
	scanners := 0
	if s.p.scan != nil {
		scanners = len(s.p.scan.entries)
	}
	out.Events = make([]Event, 0, len(s.connHeld)+len(s.held)+len(s.ss)+scanners+len(s.fin))
	out.Events = append(append(out.Events, s.connHeld...), s.held...)
	out.Trace = s.removeOwned(m, func(o ownerOf) bool { return true }, "")
	for i, cs := range s.ss {
		if s.failed[i] {
			v := s.onError(&s.p.steps[i], errors.New("failed earlier on this connection"))
			out.Events = append(out.Events, Event{Check: s.p.steps[i].name, Stage: StageData, Verdict: v})
			continue
		}
		start := time.Now()
		v := s.safe(s.p.steps[i].name, func() Verdict { return cs.Data(ctx, m) })
		// What this check stamps, the checks after it and the scanners
		// see (rspamd and spamd rules on X-RBL-Score).
		if !v.Refuses() && len(v.Headers) > 0 {
			m.Headers = slices.Insert(m.Headers, min(1, len(m.Headers)), v.Headers...)
			v.Headers = nil
		}
		if drops := s.scannersOwn(m, s.p.steps[i].name); len(drops) > 0 {
			for _, d := range drops {
				v.Logs = append(v.Logs, LogLine{Kind: MainLog, Text: d})
			}
			v.Trace = append(v.Trace, drops...)
		}
		out.Events = append(out.Events, Event{Check: s.p.steps[i].name, Stage: StageData, Verdict: v, Duration: time.Since(start)})
	}
	if s.p.scan != nil {
		m.Size = m.HeaderSize() + 1 + m.BodySize
		for _, fr := range s.p.scan.Run(ctx, m) {
			out.Events = append(out.Events, Event{Check: fr.Name, Stage: StageData, Verdict: fr.Verdict, Scanner: true, Err: fr.Err, Duration: fr.Duration})
		}
	}
	// On a tie the scanners answer: their reply says why ("Virus found:
	// ...") where a milter's often only says "Command rejected".
	out.Verdict = strictest(out.Events, func(e *Event) bool { return e.Scanner })
	if out.Verdict.Refuses() || out.Verdict.Action == Discard {
		return out
	}
	var stamps []spool.Header
	var edits []HeaderEdit
	for _, e := range out.Events {
		stamps = append(stamps, e.Verdict.Headers...)
		edits = append(edits, e.Verdict.Edits...)
	}
	for _, ed := range edits {
		if ed.Index < 0 || ed.Index >= len(m.Headers) {
			continue
		}
		if ed.Text == "" {
			m.Headers[ed.Index].Type = '*'
			continue
		}
		m.Headers[ed.Index].Text = ed.Text
	}
	if len(stamps) > 0 {
		m.Headers = slices.Insert(m.Headers, min(1, len(m.Headers)), stamps...)
	}
	if out.Verdict.Action == Quarantine {
		return out
	}
	for i, cs := range s.fin {
		start := time.Now()
		name := s.p.final[i].Name()
		v := s.safe(name, func() Verdict { return cs.Data(ctx, m) })
		out.Events = append(out.Events, Event{Check: name, Stage: StageData, Verdict: v, Duration: time.Since(start)})
		if v.Refuses() {
			out.Verdict = v
			return out
		}
		m.Headers = slices.Insert(m.Headers, 0, v.Headers...)
	}
	return out
}

// scannersOwn drops what check by added that a scanner stamps itself; a
// pipeline whose scanners own nothing skips the look.
func (s *Flow) scannersOwn(m *Message, by string) []string {
	if !s.p.scanOwned {
		return nil
	}
	return s.removeOwned(m, func(o ownerOf) bool { return o.scanner }, by)
}

// removeOwned marks deleted every field some owner chosen by which owns,
// and returns a line for each: a client's forgery before any check ran
// (by == ""), or what check by added that a scanner stamps itself. An
// owner that panics leaves the rest of the fields as they are.
func (s *Flow) removeOwned(m *Message, which func(ownerOf) bool, by string) (lines []string) {
	var asked string // the owner being asked, named if it panics
	defer func() {
		if r := recover(); r != nil {
			s.p.log.Panic(fmt.Sprintf("check %s panicked in Owns from [%s]: %v\n%s", asked, s.conn.IP, r, debug.Stack()))
		}
	}()
	for i, h := range m.Headers {
		if h.Type == '*' {
			continue
		}
		name, value := h.Name(), h.Value()
		for _, o := range s.p.owners {
			asked = o.name
			if !which(o) || !o.owner.Owns(name, value) {
				continue
			}
			m.Headers[i].Type = '*'
			if by == "" {
				lines = append(lines, fmt.Sprintf("DATA: %s header from the client removed", name))
			} else {
				lines = append(lines, fmt.Sprintf("%s: %s dropped (%s stamps its own)", by, name, o.name))
			}
			break
		}
	}
	return lines
}

// Reset ends the transaction in every check that has not failed.
func (s *Flow) Reset(ctx context.Context) {
	s.held = nil
	for i, cs := range s.ss {
		if !s.failed[i] {
			s.contain(s.p.steps[i].name, "in Reset", func() { cs.Reset(ctx) })
		}
	}
	for i, cs := range s.fin {
		s.contain(s.p.final[i].Name(), "in Reset", func() { cs.Reset(ctx) })
	}
}

// Close ends the connection in every check; a check still busy with a
// call the pipeline gave up on is closed once that call returns (its
// context has ended with the connection's).
func (s *Flow) Close() {
	for i, cs := range s.ss {
		if done := s.running[i]; done != nil {
			go func() {
				<-done
				s.contain(s.p.steps[i].name, "in Close", cs.Close)
			}()
			continue
		}
		s.contain(s.p.steps[i].name, "in Close", cs.Close)
	}
	for i, cs := range s.fin {
		s.contain(s.p.final[i].Name(), "in Close", cs.Close)
	}
}
