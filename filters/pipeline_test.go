package filters

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/internal/eventtest"
	"mxgate/spool"
)

// scripted is a check whose session answers RCPT as told: a verdict, a
// panic, or a hang until its context ends (or forever, with stuck).
type scripted struct {
	name   string
	rcpt   func() Verdict
	hang   atomic.Bool
	stuck  chan struct{} // with hang: ignore the context until closed
	opened atomic.Int32
	asked  atomic.Int32
	closed atomic.Int32
	owns   string // a header name this check owns
	data   func(m *Message) Verdict
}

func (c *scripted) Name() string { return c.name }

func (c *scripted) Owns(name, _ string) bool { return c.owns != "" && strings.EqualFold(name, c.owns) }

func (c *scripted) Open(context.Context, *Conn) Session {
	c.opened.Add(1)
	return &scriptedSession{c: c}
}

type scriptedSession struct {
	Pass
	c *scripted
}

func (s *scriptedSession) Rcpt(ctx context.Context, _ *Tx, _ string) Verdict {
	s.c.asked.Add(1)
	if s.c.hang.Load() {
		if s.c.stuck != nil {
			<-s.c.stuck
		} else {
			<-ctx.Done()
		}
	}
	if s.c.rcpt == nil {
		return Verdict{}
	}
	return s.c.rcpt()
}

func (s *scriptedSession) Data(_ context.Context, m *Message) Verdict {
	if s.c.data == nil {
		return Verdict{}
	}
	return s.c.data(m)
}

func (s *scriptedSession) Close() { s.c.closed.Add(1) }

func hanging(c *scripted) *scripted {
	c.hang.Store(true)
	return c
}

func newFlow(p *Pipeline) *Flow {
	return p.Open(context.Background(), &Conn{IP: netip.MustParseAddr("192.0.2.1"), Port: 4321})
}

// TestFlowFirstRefusalAnswers: the checks are asked in order, a refusal
// answers and the checks after it are not asked; Tag does not stop.
func TestFlowFirstRefusalAnswers(t *testing.T) {
	tag := &scripted{name: "tag", rcpt: func() Verdict { return Verdict{Action: Tag, Log: "score 2"} }}
	refuse := &scripted{name: "refuse", rcpt: func() Verdict {
		return Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "no", Trace: []string{"refused"}}
	}}
	after := &scripted{name: "after"}
	logs := &logSink{}
	p := New(Options{Checks: []Step{{Check: tag}, {Check: refuse}, {Check: after}}, Log: logs})
	out := newFlow(p).Rcpt(context.Background(), &Tx{}, "u@example.test")
	if out.Verdict.Action != Reject || out.Verdict.Text != "no" || out.Verdict.Trace != nil {
		t.Errorf("verdict %+v, want the refusal without its trace (that stays with its event)", out.Verdict)
	}
	if got := len(out.Events); got != 2 || out.Events[1].Verdict.Trace[0] != "refused" {
		t.Errorf("events %+v, want tag and refuse", out.Events)
	}
	if after.asked.Load() != 0 {
		t.Error("a check after the refusal was asked")
	}
}

// TestFlowGuard: a check that hangs, ignores its context or panics is a
// failure its OnError answers, for the rest of the connection, with a
// paniclog line; the breaker skips it after BreakAfter failures.
func TestFlowGuard(t *testing.T) {
	tests := []struct {
		name      string
		check     *scripted
		onError   string
		want      Action
		wantPanic string
	}{
		{"hang, tempfail", hanging(&scripted{name: "dns"}), OnErrorTempfail, Tempfail,
			"check dns failed at RCPT from [192.0.2.1]: no answer within 20ms (on_error=tempfail)"},
		{"hang, accept", hanging(&scripted{name: "dns"}), OnErrorAccept, Accept,
			"check dns failed at RCPT from [192.0.2.1]: no answer within 20ms (on_error=accept)"},
		{"ignores its context", hanging(&scripted{name: "dns", stuck: make(chan struct{})}), OnErrorTempfail, Tempfail,
			"check dns failed at RCPT from [192.0.2.1]: no answer within 20ms (on_error=tempfail)"},
		{"panics", &scripted{name: "dns", rcpt: func() Verdict { panic("nil map") }}, OnErrorTempfail, Tempfail,
			"check dns failed at RCPT from [192.0.2.1]: panic: nil map (on_error=tempfail)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logSink{}
			p := New(Options{Checks: []Step{{Check: tt.check, Timeout: 20 * time.Millisecond, OnError: tt.onError}}, Log: logs})
			f := newFlow(p)
			start := time.Now()
			out := f.Rcpt(context.Background(), &Tx{}, "u@example.test")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("RCPT took %v", d)
			}
			if out.Verdict.Action != tt.want || out.Events[0].Err == nil {
				t.Errorf("verdict %v (err %v), want %v", out.Verdict.Action, out.Events[0].Err, tt.want)
			}
			if tt.want == Tempfail && (out.Verdict.Code != 451 || out.Verdict.ReasonCode != "check-failed") {
				t.Errorf("tempfail %+v, want 451 check-failed", out.Verdict)
			}
			if !slices.ContainsFunc(logs.take(), func(l string) bool { return strings.HasPrefix(l, tt.wantPanic) }) {
				t.Errorf("no paniclog line %q", tt.wantPanic)
			}
			// Sticky: the check is not asked again on this connection.
			asked := tt.check.asked.Load()
			if out := f.Rcpt(context.Background(), &Tx{}, "v@example.test"); out.Verdict.Action != tt.want {
				t.Errorf("second RCPT %v, want %v", out.Verdict.Action, tt.want)
			}
			if tt.check.asked.Load() != asked {
				t.Error("a failed check was asked again")
			}
			f.Close()
			if tt.check.stuck != nil {
				if tt.check.closed.Load() != 0 {
					t.Error("a check still inside a call was closed")
				}
				close(tt.check.stuck)
			}
			for i := 0; tt.check.closed.Load() == 0 && i < 500; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if tt.check.closed.Load() != 1 {
				t.Error("the failed check's session was never closed")
			}
		})
	}
}

func TestFlowBreaker(t *testing.T) {
	c := hanging(&scripted{name: "dns"})
	logs := &logSink{}
	rec, bus := eventtest.New()
	p := New(Options{Checks: []Step{{Check: c, Timeout: 10 * time.Millisecond, BreakAfter: 2, CoolDown: time.Minute}}, Log: logs, Bus: bus})
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	for range 2 {
		newFlow(p).Rcpt(context.Background(), &Tx{}, "u@example.test")
	}
	if !slices.ContainsFunc(logs.take(), func(l string) bool { return strings.HasPrefix(l, "check dns: circuit breaker opened after 2") }) {
		t.Error("no breaker line")
	}
	asked := c.asked.Load()
	out := newFlow(p).Rcpt(context.Background(), &Tx{}, "u@example.test")
	if out.Verdict.Action != Tempfail || c.asked.Load() != asked {
		t.Errorf("open breaker: %v, asked %d more times; want tempfail without asking", out.Verdict.Action, c.asked.Load()-asked)
	}
	now = now.Add(2 * time.Minute)
	c.hang.Store(false)
	if out := newFlow(p).Rcpt(context.Background(), &Tx{}, "u@example.test"); out.Verdict.Action != Accept {
		t.Errorf("after the cool-down: %v, want the probe's accept", out.Verdict.Action)
	}
	es := rec.Of(event.Breaker)
	if len(es) != 2 || es[0].Check != "dns" || !es[0].Open || es[0].Err == nil || es[1].Check != "dns" || es[1].Open {
		t.Errorf("Breaker events %+v, want dns opened, then closed", es)
	}
}

// TestFlowData: owned fields from the client are removed, a field a
// scanner owns that a sequential check added is dropped with a log line,
// edits apply by index before the stamps go in after our Received, and
// the final checks run only on an accepted message.
func TestFlowData(t *testing.T) {
	rbl := &scripted{name: "rbl", owns: "X-RBL-Score", data: func(*Message) Verdict {
		return Verdict{Action: Tag, Headers: []spool.Header{hdr("X-RBL-Score: 2")}, Log: "RBL score 2"}
	}}
	milter := &scripted{name: "milter", data: func(m *Message) Verdict {
		m.Headers = append(m.Headers, hdr("X-Spam-Status: milter's"))
		return Verdict{}
	}}
	spamd := &fake{name: "spamd", v: Verdict{Headers: []spool.Header{hdr("X-Spam-Status: No, score=0.1")},
		// The index as spamd sees the headers: Received, rbl's X-RBL-Score
		// (stamped at once), the client's (deleted), Subject, ...
		Edits: []HeaderEdit{{Index: 3, Text: "Subject: [tag] hi\n"}}}}
	spamdOwner := &owningFilter{fake: spamd, prefix: "x-spam-"}
	sign := &scripted{name: "sign", data: func(m *Message) Verdict {
		return Verdict{Headers: []spool.Header{hdr("DKIM-Signature: v=1")}}
	}}
	logs := &logSink{}
	p := New(Options{
		Checks:   []Step{{Check: rbl}, {Check: milter}},
		Scanners: []Entry{{Filter: spamdOwner}},
		Final:    []Check{sign},
		Log:      logs,
	})
	m := testMessage()
	m.Headers = []spool.Header{hdr("Received: ours"), hdr("X-RBL-Score: 99"), hdr("Subject: hi"), hdr("X-Spam-Flag: YES")}
	out := newFlow(p).Data(context.Background(), m)
	if out.Verdict.Action != Tag {
		t.Errorf("verdict %v, want tag", out.Verdict.Action)
	}
	var kept []string
	for _, h := range m.Headers {
		if h.Type != '*' {
			kept = append(kept, strings.TrimSuffix(h.Text, "\n"))
		}
	}
	want := []string{"DKIM-Signature: v=1", "Received: ours", "X-Spam-Status: No, score=0.1", "X-RBL-Score: 2", "Subject: [tag] hi"}
	if !slices.Equal(kept, want) {
		t.Errorf("headers\n got %q\nwant %q", kept, want)
	}
	wantTrace := []string{"DATA: X-RBL-Score header from the client removed", "DATA: X-Spam-Flag header from the client removed"}
	if !slices.Equal(out.Trace, wantTrace) {
		t.Errorf("trace %q, want %q", out.Trace, wantTrace)
	}
	if l := out.Events[1].Verdict.Logs; len(l) != 1 || l[0].Text != "milter: X-Spam-Status dropped (spamd stamps its own)" {
		t.Errorf("milter event logs %+v", l)
	}
}

// owningFilter is a scanner that owns fields by prefix, as spamd does.
type owningFilter struct {
	*fake
	prefix string
}

func (o *owningFilter) Owns(name, _ string) bool {
	return strings.HasPrefix(strings.ToLower(name), o.prefix)
}

// TestFlowDataRefusalSkipsFinal: a refused message is not signed.
func TestFlowDataRefusalSkipsFinal(t *testing.T) {
	signed := false
	sign := &scripted{name: "sign", data: func(*Message) Verdict { signed = true; return Verdict{} }}
	virus := &fake{name: "clamd", v: Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Virus found: X"}}
	p := New(Options{Scanners: []Entry{{Filter: virus}}, Final: []Check{sign}, Log: &logSink{}})
	out := newFlow(p).Data(context.Background(), testMessage())
	if out.Verdict.Action != Reject || out.Verdict.Text != "Virus found: X" || signed {
		t.Errorf("verdict %+v, signed %v", out.Verdict, signed)
	}
}

// TestFlowDataTie: on a tie at DATA the scanner's verdict answers, its
// reply saying why.
func TestFlowDataTie(t *testing.T) {
	milter := &scripted{name: "milter", data: func(*Message) Verdict {
		return Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Command rejected"}
	}}
	virus := &fake{name: "clamd", v: Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Virus found: X"}}
	p := New(Options{Checks: []Step{{Check: milter}}, Scanners: []Entry{{Filter: virus}}, Log: &logSink{}})
	if v := newFlow(p).Data(context.Background(), testMessage()).Verdict; v.Text != "Virus found: X" {
		t.Errorf("verdict %q, want the scanner's", v.Text)
	}
}

// TestPipelineRetire: a reload retires a generation whose breakers are
// open; each open one is reported closed once (mxgate_breaker_open falls
// to 0), a closed one not at all, and the retired generation reports no
// more, even when its breakers change later.
func TestPipelineRetire(t *testing.T) {
	dns := hanging(&scripted{name: "dns"})
	ok := &scripted{name: "relay"}
	spamd := &fake{name: "spamd", err: errors.New("connection refused")}
	rec, bus := eventtest.New()
	p := New(Options{
		Checks: []Step{
			{Check: dns, Timeout: 10 * time.Millisecond, BreakAfter: 1, CoolDown: time.Minute},
			{Check: ok, BreakAfter: 1, CoolDown: time.Minute},
		},
		Scanners: []Entry{{Filter: spamd, OnError: OnErrorAccept, BreakAfter: 1, CoolDown: time.Minute}},
		Log:      &logSink{},
		Bus:      bus,
	})
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	p.scan.now = p.now
	newFlow(p).Rcpt(context.Background(), &Tx{}, "u@example.test")
	newFlow(p).Data(context.Background(), testMessage())
	if got := breakers(rec); !slices.Equal(got, []string{"dns open", "spamd open"}) {
		t.Fatalf("before the reload: Breaker events %q, want dns and spamd open", got)
	}
	rec.Reset()

	p.Retire()
	p.Retire()
	if got := breakers(rec); !slices.Equal(got, []string{"dns closed", "spamd closed"}) {
		t.Errorf("Retire: Breaker events %q, want dns and spamd closed, once", got)
	}
	rec.Reset()

	// A session of the old generation still running: its probes succeed
	// and close the breakers, which says nothing of the serving one.
	now = now.Add(2 * time.Minute)
	dns.hang.Store(false)
	spamd.set(Verdict{Action: Accept}, nil)
	newFlow(p).Rcpt(context.Background(), &Tx{}, "u@example.test")
	newFlow(p).Data(context.Background(), testMessage())
	if got := breakers(rec); len(got) != 0 {
		t.Errorf("after Retire: Breaker events %q, want none", got)
	}
}

// breakers are rec's Breaker events as "CHECK open" or "CHECK closed",
// sorted.
func breakers(rec *eventtest.Recorder) []string {
	var out []string
	for _, e := range rec.Of(event.Breaker) {
		state := "closed"
		if e.Open {
			state = "open"
		}
		out = append(out, e.Check+" "+state)
	}
	slices.Sort(out)
	return out
}
