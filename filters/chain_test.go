package filters

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/internal/eventtest"
	"mxgate/spool"
)

// fake is a scripted filter.
type fake struct {
	name  string
	v     Verdict
	err   error
	panic bool
	// hang makes Check ignore its context and block until release is
	// closed: the chain must still return at the timeout.
	hang    bool
	release chan struct{}
	calls   atomic.Int32
	mu      sync.Mutex
}

func (f *fake) Name() string { return f.name }

func (f *fake) Check(ctx context.Context, m *Message) (Verdict, error) {
	f.calls.Add(1)
	if f.panic {
		panic("nil map write")
	}
	if f.hang {
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.v, f.err
}

func (f *fake) set(v Verdict, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.v, f.err = v, err
}

func (f *fake) Unchecked(err error) []spool.Header {
	return []spool.Header{hdr("X-" + f.name + ": Unchecked")}
}

// plain is a filter without an Unchecked stamp.
type plain struct{ fake }

func (p *plain) Unchecked() {} // not filters.Uncheckable: wrong signature

func hdr(text string) spool.Header { return spool.Header{Type: ' ', Text: text + "\n"} }

// chainResult is a Run with the verdict the pipeline makes of it: the
// strictest (Strictest), every scanner's headers, the facts joined.
type chainResult struct {
	Verdict   Verdict
	PerFilter []FilterResult
}

func run(c *Chain, ctx context.Context, m *Message) chainResult {
	per := c.Run(ctx, m)
	events := make([]Event, len(per))
	var logs []string
	var headers []spool.Header
	for i, fr := range per {
		events[i] = Event{Check: fr.Name, Verdict: fr.Verdict, Scanner: true, Err: fr.Err}
		headers = append(headers, fr.Verdict.Headers...)
		if fr.Verdict.Log != "" {
			logs = append(logs, fr.Verdict.Log)
		}
	}
	v := Strictest(events)
	v.Headers, v.Log = headers, strings.Join(logs, "; ")
	return chainResult{Verdict: v, PerFilter: per}
}

func testMessage() *Message {
	return &Message{
		ID:      "1a2B3c-4D5e6F-7g",
		Headers: []spool.Header{hdr("Subject: hi")},
		OpenBody: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("body\n")), nil
		},
	}
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) log(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

// Main and Panic make a logSink the chain's Logger; the tests read the
// lines in order, whichever log they went to.
func (l *logSink) Main(id, text string) {
	if id != "" {
		text = id + " " + text
	}
	l.log(text)
}

func (l *logSink) Panic(text string) { l.log(text) }

func (l *logSink) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func TestChainStrictestWins(t *testing.T) {
	accept := Verdict{Action: Accept, Headers: []spool.Header{hdr("X-A: 1")}, Log: "a ok"}
	quarantine := Verdict{Action: Quarantine, Reason: "score 9", Headers: []spool.Header{hdr("X-Q: 1")}, Log: "q hit"}
	discard := Verdict{Action: Discard, Reason: "drop", Log: "d"}
	reject := Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Virus found: Eicar-Test-Signature", Log: "virus"}
	reject2 := Verdict{Action: Reject, Code: 554, Enhanced: [3]int{5, 7, 0}, Text: "second"}
	tempfail := Verdict{Action: Tempfail, Code: 452, Enhanced: [3]int{4, 3, 1}, Text: "busy"}
	bareReject := Verdict{Action: Reject}

	tests := []struct {
		name     string
		verdicts []Verdict
		want     Verdict
	}{
		{"no filters", nil, Verdict{Action: Accept}},
		{"all accept", []Verdict{accept, accept}, Verdict{Action: Accept,
			Headers: []spool.Header{hdr("X-A: 1"), hdr("X-A: 1")}, Log: "a ok; a ok"}},
		{"quarantine beats accept and discard", []Verdict{accept, discard, quarantine}, Verdict{Action: Quarantine, Reason: "score 9",
			Headers: []spool.Header{hdr("X-A: 1"), hdr("X-Q: 1")}, Log: "a ok; d; q hit"}},
		{"tempfail beats quarantine", []Verdict{quarantine, tempfail}, Verdict{Action: Tempfail, Code: 452, Enhanced: [3]int{4, 3, 1}, Text: "busy",
			Headers: []spool.Header{hdr("X-Q: 1")}, Log: "q hit"}},
		{"reject beats tempfail", []Verdict{tempfail, reject, accept}, Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
			Text: "Virus found: Eicar-Test-Signature", Headers: []spool.Header{hdr("X-A: 1")}, Log: "virus; a ok"}},
		{"first of equals wins", []Verdict{reject, reject2}, Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
			Text: "Virus found: Eicar-Test-Signature", Log: "virus"}},
		{"reject without a reply gets 550 5.7.1", []Verdict{bareReject}, Verdict{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
			Text: "Rejected by content filter"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var entries []Entry
			for i, v := range tt.verdicts {
				entries = append(entries, Entry{Filter: &fake{name: "f" + string(rune('0'+i)), v: v}})
			}
			res := run(NewChain(entries, &logSink{}), context.Background(), testMessage())
			if !equalVerdict(res.Verdict, tt.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", res.Verdict, tt.want)
			}
			if len(res.PerFilter) != len(tt.verdicts) {
				t.Errorf("%d per-filter results, want %d", len(res.PerFilter), len(tt.verdicts))
			}
		})
	}
}

func equalVerdict(a, b Verdict) bool {
	return a.Action == b.Action && a.Code == b.Code && a.Enhanced == b.Enhanced && a.Text == b.Text &&
		a.Reason == b.Reason && a.Log == b.Log && slices.Equal(a.Headers, b.Headers)
}

func TestChainOnError(t *testing.T) {
	scanErr := errors.New("dial tcp 127.0.0.1:783: connection refused")
	tests := []struct {
		name     string
		filter   Filter
		onError  string
		want     Verdict
		wantLogs []string
	}{
		{
			name: "default is tempfail", filter: &fake{name: "spamd", err: scanErr},
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1},
				Text: "Temporary local problem - please try later", Reason: scanErr.Error(), Log: "spamd failed"},
			wantLogs: []string{"1a2B3c-4D5e6F-7g spamd failed: dial tcp 127.0.0.1:783: connection refused (on_error=tempfail)"},
		},
		{
			name: "accept stamps unchecked", filter: &fake{name: "spamd", err: scanErr}, onError: OnErrorAccept,
			want: Verdict{Action: Accept, Headers: []spool.Header{hdr("X-spamd: Unchecked")},
				Reason: scanErr.Error(), Log: "spamd unchecked"},
			wantLogs: []string{"1a2B3c-4D5e6F-7g spamd failed: dial tcp 127.0.0.1:783: connection refused (on_error=accept)"},
		},
		{
			name: "accept without a stamp", filter: &plain{fake{name: "milter", err: scanErr}}, onError: OnErrorAccept,
			want:     Verdict{Action: Accept, Reason: scanErr.Error(), Log: "milter unchecked"},
			wantLogs: []string{"1a2B3c-4D5e6F-7g milter failed: dial tcp 127.0.0.1:783: connection refused (on_error=accept)"},
		},
		{
			name: "panic is a failure", filter: &fake{name: "clamd", panic: true},
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1},
				Text: "Temporary local problem - please try later", Reason: "clamd: panic: nil map write", Log: "clamd failed"},
			wantLogs: []string{"1a2B3c-4D5e6F-7g clamd failed: panic: nil map write (on_error=tempfail)"},
		},
		{
			name: "unknown action is a failure", filter: &fake{name: "clamd", v: Verdict{Action: 42}}, onError: OnErrorAccept,
			want: Verdict{Action: Accept, Headers: []spool.Header{hdr("X-clamd: Unchecked")},
				Reason: "clamd: invalid verdict action 42", Log: "clamd unchecked"},
			wantLogs: []string{"1a2B3c-4D5e6F-7g clamd failed: invalid verdict action 42 (on_error=accept)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logSink
			c := NewChain([]Entry{{Filter: tt.filter, OnError: tt.onError}}, &logs)
			res := run(c, context.Background(), testMessage())
			if !equalVerdict(res.Verdict, tt.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", res.Verdict, tt.want)
			}
			if res.PerFilter[0].Err == nil {
				t.Error("per-filter result has no error")
			}
			if got := logs.take(); !slices.Equal(got, tt.wantLogs) {
				t.Errorf("logs\n got %q\nwant %q", got, tt.wantLogs)
			}
		})
	}
}

// A filter that never returns must not hold the message past its timeout,
// and must not delay the other filters' verdicts.
func TestChainTimeout(t *testing.T) {
	hung := &fake{name: "spamd", hang: true, release: make(chan struct{})}
	defer close(hung.release)
	ok := &fake{name: "clamd", v: Verdict{Action: Accept, Headers: []spool.Header{hdr("X-Virus-Scanned: clean")}}}
	c := NewChain([]Entry{
		{Filter: hung, Timeout: 20 * time.Millisecond, OnError: OnErrorAccept},
		{Filter: ok, Timeout: time.Minute},
	}, &logSink{})
	res := run(c, context.Background(), testMessage())
	if err := res.PerFilter[0].Err; !errors.Is(err, context.DeadlineExceeded) ||
		err.Error() != "spamd: no verdict within 20ms: context deadline exceeded" {
		t.Errorf("hung filter error = %v", err)
	}
	want := []spool.Header{hdr("X-spamd: Unchecked"), hdr("X-Virus-Scanned: clean")}
	if res.Verdict.Action != Accept || !slices.Equal(res.Verdict.Headers, want) {
		t.Errorf("verdict %+v, want accept with %q", res.Verdict, want)
	}
}

// A caller that gives up (client gone) ends the checks; the scanner's
// breaker does not count it as the scanner's failure.
func TestChainCallerCancel(t *testing.T) {
	hung := &fake{name: "spamd", hang: true, release: make(chan struct{})}
	defer close(hung.release)
	var logs logSink
	c := NewChain([]Entry{{Filter: hung, BreakAfter: 1, CoolDown: time.Hour}}, &logs)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := run(c, ctx, testMessage())
	if !errors.Is(res.PerFilter[0].Err, context.Canceled) || res.Verdict.Action != Tempfail {
		t.Errorf("got %+v, err %v; want tempfail on context.Canceled", res.Verdict, res.PerFilter[0].Err)
	}
	if ok, _ := c.entries[0].br.allow(c.entries[0].BreakAfter, c.entries[0].CoolDown, time.Now()); !ok {
		t.Error("breaker opened on a caller's cancellation")
	}
}

func TestChainBreaker(t *testing.T) {
	down := errors.New("connection refused")
	f := &fake{name: "spamd", err: down}
	var logs logSink
	c := NewChain([]Entry{{Filter: f, OnError: OnErrorAccept, BreakAfter: 2, CoolDown: time.Minute}}, &logs)
	rec, bus := eventtest.New()
	c.bus = bus
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	m := testMessage()

	steps := []struct {
		name      string
		advance   time.Duration
		fix       bool // the scanner answers from this step on
		wantCalls int32
		wantErr   error
		wantLogs  []string
		breaker   string // the Breaker event: "open", "closed"; "" none
	}{
		{name: "first failure", wantCalls: 1, wantErr: down,
			wantLogs: []string{"1a2B3c-4D5e6F-7g spamd failed: connection refused (on_error=accept)"}},
		{name: "second failure opens", wantCalls: 2, wantErr: down, breaker: "open", wantLogs: []string{
			"filter spamd: circuit breaker opened after 2 consecutive failures, skipping it for 1m0s: connection refused",
			"1a2B3c-4D5e6F-7g spamd failed: connection refused (on_error=accept)"}},
		{name: "open: skipped", advance: 59 * time.Second, wantCalls: 2, wantErr: ErrBreakerOpen, wantLogs: []string{
			"1a2B3c-4D5e6F-7g spamd failed: circuit breaker open, scanner not contacted (on_error=accept)"}},
		{name: "half-open: probe fails", advance: time.Second, wantCalls: 3, wantErr: down,
			wantLogs: []string{"1a2B3c-4D5e6F-7g spamd failed: connection refused (on_error=accept)"}},
		{name: "reopened for a full cool-down", advance: 59 * time.Second, wantCalls: 3, wantErr: ErrBreakerOpen, wantLogs: []string{
			"1a2B3c-4D5e6F-7g spamd failed: circuit breaker open, scanner not contacted (on_error=accept)"}},
		{name: "probe succeeds: closed", advance: time.Second, fix: true, wantCalls: 4, breaker: "closed",
			wantLogs: []string{"filter spamd: circuit breaker closed, scanner answers again"}},
		{name: "closed: checked", wantCalls: 5},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		if s.fix {
			f.set(Verdict{Action: Accept}, nil)
		}
		res := run(c, context.Background(), m)
		if got := f.calls.Load(); got != s.wantCalls {
			t.Errorf("%s: %d calls to the scanner, want %d", s.name, got, s.wantCalls)
		}
		if err := res.PerFilter[0].Err; !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
			t.Errorf("%s: error %v, want %v", s.name, err, s.wantErr)
		}
		if got := logs.take(); !slices.Equal(got, s.wantLogs) {
			t.Errorf("%s: logs\n got %q\nwant %q", s.name, got, s.wantLogs)
		}
		var got []string
		for _, e := range rec.Events() {
			state := "closed"
			if e.Open {
				state = "open"
			}
			if e.Kind != event.Breaker || e.Check != "spamd" || e.Open != (e.Err != nil) {
				t.Errorf("%s: event %+v", s.name, e)
			}
			got = append(got, state)
		}
		rec.Reset()
		if want := []string{s.breaker}; s.breaker == "" && len(got) > 0 || s.breaker != "" && !slices.Equal(got, want) {
			t.Errorf("%s: Breaker events %q, want %q", s.name, got, s.breaker)
		}
	}
}

// While the probe runs, other messages do not pile onto the scanner.
func TestChainBreakerSingleProbe(t *testing.T) {
	f := &fake{name: "spamd", err: errors.New("refused")}
	c := NewChain([]Entry{{Filter: f, BreakAfter: 1, CoolDown: time.Minute}}, &logSink{})
	now := time.Now()
	c.now = func() time.Time { return now }
	c.Run(context.Background(), testMessage()) // opens
	now = now.Add(time.Minute)
	e := &c.entries[0]
	if ok, probe := e.br.allow(e.BreakAfter, e.CoolDown, now); !ok || !probe {
		t.Fatalf("after the cool-down: allow = %v, probe = %v; want the probe", ok, probe)
	}
	if ok, _ := e.br.allow(e.BreakAfter, e.CoolDown, now); ok {
		t.Error("a second check was let through while the probe runs")
	}
}

func TestMessageOpen(t *testing.T) {
	m := &Message{
		Headers: []spool.Header{
			{Type: 'P', Text: "Received: from a\n\tby b\n"},
			{Type: '*', Text: "X-Spam-Flag: NO\n"},
			{Type: ' ', Text: "Subject: hi\n"},
		},
		OpenBody: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("line 1\n\nline 3\n")), nil
		},
	}
	for _, tt := range []struct {
		crlf bool
		want string
	}{
		{false, "Received: from a\n\tby b\nSubject: hi\n\nline 1\n\nline 3\n"},
		{true, "Received: from a\r\n\tby b\r\nSubject: hi\r\n\r\nline 1\r\n\r\nline 3\r\n"},
	} {
		rc, err := m.Open(tt.crlf)
		if err != nil {
			t.Fatal(err)
		}
		// A one-byte buffer exercises the CR/LF split across reads.
		got, err := io.ReadAll(io.LimitReader(oneByte{rc}, 1<<20))
		rc.Close()
		if err != nil || string(got) != tt.want {
			t.Errorf("Open(%v) = %q, %v; want %q", tt.crlf, got, err, tt.want)
		}
		n, err := m.OpenSize(tt.crlf)
		if tt.crlf && (err != nil || n != int64(len(tt.want))) {
			t.Errorf("OpenSize(true) = %d, %v; want %d", n, err, len(tt.want))
		}
	}
}

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
