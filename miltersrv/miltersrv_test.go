package miltersrv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/internal/eventtest"
	"mxgate/internal/peertest"
	"mxgate/mainlog"
	"mxgate/spool"
)

// fakeCheck is a check whose verdicts the test sets per stage; it owns
// the X-Spam-* fields, as spamd does, and counts its open sessions.
type fakeCheck struct {
	connect, mail, rcpt filters.Verdict
	data                func(m *filters.Message) filters.Verdict
	open                atomic.Int32
	resets              atomic.Int32
	seen                atomic.Value // the last message's body as the checks read it
}

func (f *fakeCheck) Name() string { return "fake" }

func (f *fakeCheck) Owns(name, _ string) bool {
	return strings.HasPrefix(strings.ToLower(name), "x-spam-")
}

func (f *fakeCheck) Open(context.Context, *filters.Conn) filters.Session {
	f.open.Add(1)
	return &fakeSession{f: f}
}

type fakeSession struct {
	filters.Pass
	f *fakeCheck
}

func (s *fakeSession) Connect(context.Context) filters.Verdict           { return s.f.connect }
func (s *fakeSession) Mail(context.Context, *filters.Tx) filters.Verdict { return s.f.mail }
func (s *fakeSession) Rcpt(context.Context, *filters.Tx, string) filters.Verdict {
	return s.f.rcpt
}
func (s *fakeSession) Close()                { s.f.open.Add(-1) }
func (s *fakeSession) Reset(context.Context) { s.f.resets.Add(1) }

func (s *fakeSession) Data(_ context.Context, m *filters.Message) filters.Verdict {
	if r, err := m.OpenBody(); err == nil {
		s.f.seen.Store(readAll(r))
		r.Close()
	}
	if s.f.data == nil {
		return filters.Verdict{}
	}
	return s.f.data(m)
}

func readAll(r interface{ Read([]byte) (int, error) }) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

type harness struct {
	t      testing.TB
	srv    *Server
	check  *fakeCheck
	dir    string
	logDir string
	events *eventtest.Recorder
}

// newHarness serves a pipeline of one fakeCheck on 127.0.0.1.
func newHarness(t testing.TB, edit func(*config.Config)) *harness {
	t.Helper()
	return newHarnessWith(t, edit, nil)
}

// newHarnessWith is newHarness with the pipeline build makes, when not
// nil, instead of the fakeCheck's.
func newHarnessWith(t testing.TB, edit func(*config.Config), build func(*config.Config, filters.Logger) *filters.Pipeline) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.MilterServer.Listen = fmt.Sprintf("inet:127.0.0.1:%d", peertest.FreePort(t, false))
	cfg.MilterServer.Timeout = config.Duration(20 * time.Second)
	if edit != nil {
		edit(cfg)
	}
	logDir := filepath.Join(dir, "log")
	lg, err := mainlog.Open(logDir, false)
	if err != nil {
		t.Fatal(err)
	}
	rec, bus := eventtest.New()
	fc := &fakeCheck{}
	pl := filters.New(filters.Options{Checks: []filters.Step{{Check: fc}}, Log: lg})
	if build != nil {
		pl = build(cfg, lg)
	}
	srv, err := New(Options{Config: cfg, Pipeline: pl, Log: lg, Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		lg.Close()
	})
	return &harness{t: t, srv: srv, check: fc, dir: dir, logDir: logDir, events: rec}
}

// session is a milter session of the MTA: connected, greeted.
func (h *harness) session() *milter.ClientSession {
	h.t.Helper()
	c := milter.NewClientWithOptions("tcp", h.srv.Addr().String(), milter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: milter.OptAddHeader | milter.OptChangeBody | milter.OptAddRcpt | milter.OptRemoveRcpt |
			milter.OptChangeHeader | milter.OptQuarantine | milter.OptChangeFrom,
		ProtocolMask: milter.OptNoUnknown | milter.OptHeaderLeadingSpace,
	})
	s, err := c.Session()
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func must(t testing.TB, act *milter.Action, err error, want milter.ActionCode) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if act.Code != want {
		t.Fatalf("action %c (%d %s), want %c", act.Code, act.SMTPCode, act.SMTPText, want)
	}
}

// upToData runs a session to the end of the headers; the client at
// 192.0.2.7 sends the queue ID 4AbC123 at MAIL.
func (h *harness) upToData(s *milter.ClientSession, headers ...string) {
	t := h.t
	t.Helper()
	if err := s.Macros(milter.CodeConn, "{client_addr}", "192.0.2.7", "{client_name}", "mail.example.org", "{daemon_name}", "mx", "j", "mx.example.net"); err != nil {
		t.Fatal(err)
	}
	act, err := s.Conn("mail.example.org", milter.FamilyInet, 40000, "192.0.2.7")
	must(t, act, err, milter.ActContinue)
	act, err = s.Helo("mail.example.org")
	must(t, act, err, milter.ActContinue)
	if err := s.Macros(milter.CodeMail, "i", "4AbC123"); err != nil {
		t.Fatal(err)
	}
	act, err = s.Mail("<alice@example.org>", nil)
	must(t, act, err, milter.ActContinue)
	act, err = s.Rcpt("<bob@example.test>", nil)
	must(t, act, err, milter.ActContinue)
	for _, f := range headers {
		name, value, _ := strings.Cut(f, ":")
		act, err = s.HeaderField(name, value)
		must(t, act, err, milter.ActContinue)
	}
	act, err = s.HeaderEnd()
	must(t, act, err, milter.ActContinue)
}

func (h *harness) log(name string) string {
	b, err := os.ReadFile(filepath.Join(h.logDir, name))
	if err != nil && !os.IsNotExist(err) {
		h.t.Fatal(err)
	}
	return string(b)
}

func (h *harness) wantLog(name string, want ...string) {
	h.t.Helper()
	got := h.log(name)
	for _, w := range want {
		if !strings.Contains(got, w) {
			h.t.Errorf("%s lacks %q:\n%s", name, w, got)
		}
	}
}

// TestAcceptModifications: the checks see a stand-in of the MTA's
// Received line first; a tag verdict's stamps become insertions below
// the MTA's own line, its Subject edit a change, a client's forged
// X-Spam-Status a deletion; the body reaches the checks with LF line
// ends; the log has the MTA's queue ID.
func TestAcceptModifications(t *testing.T) {
	h := newHarness(t, nil)
	var first atomic.Value
	h.check.data = func(m *filters.Message) filters.Verdict {
		first.Store(m.Headers[0].Text)
		v := filters.Verdict{Action: filters.Tag, Log: "spam score 9.1", Headers: []spool.Header{{Type: ' ', Text: "X-Spam-Flag: YES\n"}}}
		for i, f := range m.Headers {
			if f.Name() == "Subject" {
				// Flow.Data puts a check's own stamps in (after the
				// first field) before it applies the edits.
				v.Edits = append(v.Edits, filters.HeaderEdit{Index: i + len(v.Headers), Text: "Subject: [SPAM] cheap pills\n"})
			}
		}
		return v
	}
	s := h.session()
	defer s.Close()
	h.upToData(s, "Received: from x", "X-Spam-Status: No, forged", "Subject: cheap pills", "Message-ID: <m1@example.org>")
	act, err := s.BodyChunk([]byte("line 1\r\nline 2\r"))
	must(t, act, err, milter.ActContinue)
	act, err = s.BodyChunk([]byte("\nend\r\n"))
	must(t, act, err, milter.ActContinue)
	mods, act, err := s.End()
	must(t, act, err, milter.ActAccept)
	var got []string
	for _, m := range mods {
		got = append(got, fmt.Sprintf("%c %d %s:%s", m.Code, m.HeaderIndex, m.HeaderName, m.HeaderValue))
	}
	want := []string{"m 1 X-Spam-Status:", "m 1 Subject: [SPAM] cheap pills", "i 1 X-Spam-Flag: YES"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("modifications\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The checks see the MTA's Received line (a stand-in from its
	// macros, as gateway mode's own line), never sent back.
	const recv = "Received: from mail.example.org (mail.example.org [192.0.2.7])\n\tby mx.example.net with ESMTP id 4AbC123\n\t(envelope-from <alice@example.org>)\n\tfor <bob@example.test>; "
	if f, _ := first.Load().(string); !strings.HasPrefix(f, recv) {
		t.Errorf("the checks' first field %q, want %q...", f, recv)
	}
	if body, _ := h.check.seen.Load().(string); body != "line 1\nline 2\nend\n" {
		t.Errorf("the checks read the body %q", body)
	}
	h.wantLog(mainlog.MainFile, "4AbC123 H=mail.example.org [192.0.2.7] Warning: spam score 9.1",
		"4AbC123 <= alice@example.org H=mail.example.org [192.0.2.7]:40000 P=milter S=", "id=m1@example.org")
	if e, err := h.events.Wait(event.Accepted, 5*time.Second); err != nil || e.ID != "4AbC123" || e.Listener != "milter" || e.Action != "tag" {
		t.Errorf("Accepted event %+v, %v", e, err)
	}
}

// TestRefusals: a refusal at each stage is the milter reply with the
// gateway's code, enhanced code and text, the gateway's rejectlog line
// and a Refused event.
func TestRefusals(t *testing.T) {
	rbl := filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Client listed at zen.example", Log: "listed at zen.example", ReasonCode: "rbl", List: "zen.example"}
	grey := filters.Verdict{Action: filters.Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "Greylisted, please try again later", ReasonCode: "greylisted"}
	virus := filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Virus found: Eicar-Signature", Virus: "Eicar-Signature", ReasonCode: "virus"}
	tests := []struct {
		name      string
		set       func(*fakeCheck)
		stage     string
		code      int
		text      string
		rejectlog string
	}{
		{"connect", func(f *fakeCheck) { f.connect = rbl }, "connect", 550, "5.7.1 Client listed at zen.example",
			`H=mail.example.org [192.0.2.7] rejected connection in "connect" ACL: listed at zen.example`},
		{"mail", func(f *fakeCheck) { f.mail = grey }, "mail", 451, "4.7.1 Greylisted, please try again later",
			"H=mail.example.org [192.0.2.7] temporarily rejected MAIL <alice@example.org>: Greylisted, please try again later"},
		{"rcpt", func(f *fakeCheck) { f.rcpt = rbl }, "rcpt", 550, "5.7.1 Client listed at zen.example",
			"H=mail.example.org [192.0.2.7] F=<alice@example.org> rejected RCPT <bob@example.test>: listed at zen.example"},
		{"eom", func(f *fakeCheck) { f.data = func(*filters.Message) filters.Verdict { return virus } }, "data", 550, "5.7.1 Virus found: Eicar-Signature",
			"4AbC123 H=mail.example.org [192.0.2.7] F=<alice@example.org> rejected after DATA: Virus found: Eicar-Signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tt.set(h.check)
			s := h.session()
			defer s.Close()
			act, err := func() (*milter.Action, error) {
				s.Macros(milter.CodeConn, "{client_addr}", "192.0.2.7", "{client_name}", "mail.example.org")
				act, err := s.Conn("mail.example.org", milter.FamilyInet, 40000, "192.0.2.7")
				if err != nil || act.Code != milter.ActContinue {
					return act, err
				}
				if _, err := s.Helo("mail.example.org"); err != nil {
					return nil, err
				}
				s.Macros(milter.CodeMail, "i", "4AbC123")
				if act, err = s.Mail("<alice@example.org>", nil); err != nil || act.Code != milter.ActContinue {
					return act, err
				}
				if act, err = s.Rcpt("<bob@example.test>", nil); err != nil || act.Code != milter.ActContinue {
					return act, err
				}
				s.HeaderField("Subject", " x")
				s.HeaderEnd()
				s.BodyChunk([]byte("X5O!P%@AP\r\n"))
				_, act, err = s.End()
				return act, err
			}()
			if err != nil {
				t.Fatal(err)
			}
			if act.Code != milter.ActReplyCode || act.SMTPCode != tt.code || act.SMTPText != tt.text {
				t.Errorf("reply %c %d %q, want %d %q", act.Code, act.SMTPCode, act.SMTPText, tt.code, tt.text)
			}
			h.wantLog(mainlog.RejectFile, tt.rejectlog)
			kind := event.Refused
			if tt.stage == "connect" {
				kind = event.ConnRefused
			}
			e, err := h.events.Wait(kind, 5*time.Second)
			if err != nil || e.Stage != tt.stage || e.Code != tt.code || e.Check != "fake" {
				t.Errorf("event %+v, %v", e, err)
			}
		})
	}
}

// TestDiscardQuarantineHold: a discard is the milter's discard; a
// quarantine and a rate limit hold are its quarantine action.
func TestDiscardQuarantineHold(t *testing.T) {
	tests := []struct {
		name    string
		v       filters.Verdict
		act     milter.ActionCode
		reason  string
		mainlog string
		kind    event.Kind
	}{
		{"discard", filters.Verdict{Action: filters.Discard, Reason: "bulk"}, milter.ActDiscard, "",
			"4AbC123 => blackhole (DATA ACL discarded recipients): bulk", event.Discarded},
		{"quarantine", filters.Verdict{Action: filters.Quarantine, Reason: "spam score 20.0"}, milter.ActAccept, "spam score 20.0",
			"4AbC123 quarantined: alice@example.org H=mail.example.org", event.Quarantined},
		{"hold", filters.Verdict{Hold: "per-user"}, milter.ActAccept, "rate limit hold per-user",
			"4AbC123 Frozen (rate limit hold per-user)", event.Accepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.check.data = func(*filters.Message) filters.Verdict { return tt.v }
			s := h.session()
			defer s.Close()
			h.upToData(s, "Subject: hi")
			mods, act, err := s.End()
			must(t, act, err, tt.act)
			var reason string
			for _, m := range mods {
				if m.Code == milter.ActQuarantine {
					reason = m.Reason
				}
			}
			if reason != tt.reason {
				t.Errorf("quarantine reason %q, want %q", reason, tt.reason)
			}
			h.wantLog(mainlog.MainFile, tt.mainlog)
			if _, err := h.events.Wait(tt.kind, 5*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDryRun: nothing is refused; the log says what would have been and
// the message gets only an X-mxgate-DryRun field.
func TestDryRun(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MilterServer.DryRun = true })
	h.check.rcpt = filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "No such user"}
	h.check.data = func(*filters.Message) filters.Verdict {
		return filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Spam", Headers: []spool.Header{{Type: ' ', Text: "X-Spam-Flag: YES\n"}}}
	}
	s := h.session()
	defer s.Close()
	h.upToData(s, "Subject: hi")
	mods, act, err := s.End()
	must(t, act, err, milter.ActAccept)
	if len(mods) != 1 || mods[0].Code != milter.ActAddHeader || mods[0].HeaderName != "X-mxgate-DryRun" || mods[0].HeaderValue != " would reject: Spam" {
		t.Errorf("modifications %+v, want only X-mxgate-DryRun", mods)
	}
	h.wantLog(mainlog.MainFile, "F=<alice@example.org> dry run: would reject RCPT <bob@example.test>: 550 5.1.1 No such user",
		"4AbC123 H=mail.example.org [192.0.2.7] F=<alice@example.org> dry run: would reject after DATA: 550 5.7.1 Spam")
	if got := h.log(mainlog.RejectFile); got != "" {
		t.Errorf("rejectlog in a dry run:\n%s", got)
	}
	if n := len(h.events.Of(event.Refused)); n != 0 {
		t.Errorf("%d Refused events in a dry run", n)
	}
}

// TestDryRunMail: a MAIL refusal not made leaves the transaction open
// in the checks: they see its RCPT and DATA, and its one end.
func TestDryRunMail(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MilterServer.DryRun = true })
	h.check.mail = filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Rate limit exceeded"}
	s := h.session()
	defer s.Close()
	h.upToData(s, "Subject: hi")
	_, act, err := s.End()
	must(t, act, err, milter.ActAccept)
	if n := h.check.resets.Load(); n != 1 {
		t.Errorf("the checks' transaction was reset %d times, want once, at its end", n)
	}
	h.wantLog(mainlog.MainFile, "dry run: would reject MAIL <alice@example.org>: 550 5.7.1 Rate limit exceeded")
}

// TestAbort: a session the MTA aborts or drops at any stage leaves no
// temporary file, no open check session and no goroutine behind.
func TestAbort(t *testing.T) {
	stages := []string{"connect", "helo", "mail", "rcpt", "header", "body", "drop-in-body", "after-eom"}
	for _, stage := range stages {
		t.Run(stage, func(t *testing.T) {
			h := newHarness(t, nil)
			before := runtime.NumGoroutine()
			s := h.session()
			steps := []func() error{
				func() error { _, err := s.Conn("mail.example.org", milter.FamilyInet, 40000, "192.0.2.7"); return err },
				func() error { _, err := s.Helo("mail.example.org"); return err },
				func() error { _, err := s.Mail("<alice@example.org>", nil); return err },
				func() error { _, err := s.Rcpt("<bob@example.test>", nil); return err },
				func() error { _, err := s.HeaderField("Subject", " hi"); return err },
				func() error { _, err := s.BodyChunk([]byte("some body\r\n")); return err },
			}
			n := map[string]int{"connect": 1, "helo": 2, "mail": 3, "rcpt": 4, "header": 5, "body": 6, "drop-in-body": 6, "after-eom": 6}[stage]
			for _, step := range steps[:n] {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			switch stage {
			case "drop-in-body":
				// The MTA goes away in the middle of the message.
			case "after-eom":
				if _, _, err := s.End(); err != nil {
					t.Fatal(err)
				}
				fallthrough
			default:
				if err := s.Abort(); err != nil {
					t.Fatal(err)
				}
				if stage != "after-eom" {
					// Abort has no reply: wait for it to be done.
					waitFor(t, func() bool { return h.temps() == 0 }, "the temporary file removed")
				}
			}
			s.Close()
			waitFor(t, func() bool { return h.check.open.Load() == 0 }, "the check's session closed")
			h.wantNoTemp()
			waitFor(t, func() bool { return runtime.NumGoroutine() <= before }, "goroutines back to before")
			h.srv.mu.Lock()
			left := len(h.srv.sessions)
			h.srv.mu.Unlock()
			if left != 0 {
				t.Errorf("%d sessions left", left)
			}
		})
	}
}

func (h *harness) temps() int {
	m, _ := filepath.Glob(filepath.Join(h.dir, "milter-*"))
	return len(m)
}

func (h *harness) wantNoTemp() {
	h.t.Helper()
	if n := h.temps(); n != 0 {
		h.t.Errorf("%d temporary files left", n)
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReload: a session begun before a reload keeps its checks; a new one
// gets the new ones; the old ones are retired once their last session
// ends.
func TestReload(t *testing.T) {
	h := newHarness(t, nil)
	old := h.session()
	if _, err := old.Conn("a.example.org", milter.FamilyInet, 1, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	fc := &fakeCheck{rcpt: filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 1, 1}, Text: "No such user"}}
	var once sync.Once
	retired := make(chan struct{})
	cfg := config.Default()
	h.srv.Reload(cfg, filters.New(filters.Options{Checks: []filters.Step{{Check: fc}}, Log: mainlog.Discard()}), nil)
	// The first generation's hook is the harness's (none); watch the
	// second's retirement through a third.
	h.srv.mu.Lock()
	h.srv.gen.retired = func() { once.Do(func() { close(retired) }) }
	h.srv.mu.Unlock()
	s := h.session()
	defer s.Close()
	s.Conn("b.example.org", milter.FamilyInet, 1, "192.0.2.2")
	s.Helo("b")
	s.Mail("<a@example.org>", nil)
	act, err := s.Rcpt("<x@example.test>", nil)
	if err != nil || act.SMTPCode != 550 {
		t.Errorf("new session's RCPT: %+v, %v; want the new checks' 550", act, err)
	}
	old.Helo("a")
	old.Mail("<a@example.org>", nil)
	if act, err := old.Rcpt("<x@example.test>", nil); err != nil || act.Code != milter.ActContinue {
		t.Errorf("old session's RCPT: %+v, %v; want the old checks' continue", act, err)
	}
	old.Close()
	s.Close()
	h.srv.Reload(cfg, filters.New(filters.Options{Log: mainlog.Discard()}), nil)
	select {
	case <-retired:
	case <-time.After(5 * time.Second):
		t.Error("the replaced checks were not retired")
	}
}
