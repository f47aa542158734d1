package policysrv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/greylist"
	"mxgate/internal/dnstest"
	"mxgate/internal/eventtest"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/state"
)

// server is a policy server on loopback with its logs and events.
type server struct {
	addr string
	logs string
	rec  *eventtest.Recorder
}

type serverOpts struct {
	dryRun  bool
	timeout time.Duration
}

func start(t *testing.T, pl *filters.Pipeline, o serverOpts) *server {
	t.Helper()
	dir := t.TempDir()
	log, err := mainlog.Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	rec, bus := eventtest.New()
	if o.timeout == 0 {
		o.timeout = 10 * time.Second
	}
	srv := New(Options{Pipeline: func() *filters.Pipeline { return pl }, Log: log, Bus: bus, DryRun: o.dryRun,
		Timeout: o.timeout, TransactionTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &server{addr: ln.Addr().String(), logs: dir, rec: rec}
}

// pipeline is the policy pipeline of the config in testdata/name, with
// RESOLVER replaced by resolver.
func pipeline(t *testing.T, name, resolver string) *filters.Pipeline {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(name, []byte(strings.ReplaceAll(string(b), "RESOLVER", resolver)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := checks.BuildPolicy(cfg, mainlog.Discard(), route.New(checks.RouteOptions(cfg)), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Pipeline
}

// client is one Postfix connection to the policy server.
type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, s *server) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{c: c, r: bufio.NewReader(c)}
}

// rcpt is Postfix's request at RCPT: the defaults of a client, with kv
// ("name=value") over them.
func rcpt(kv ...string) string {
	attrs := map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"client_address": "192.0.2.10", "client_name": "unknown", "reverse_client_name": "unknown",
		"helo_name": "client.test", "sender": "a@sender.test", "recipient": "u@example.org", "instance": "1.1.1", "queue_id": ""}
	for _, p := range kv {
		k, v, _ := strings.Cut(p, "=")
		attrs[k] = v
	}
	var b strings.Builder
	for k, v := range attrs {
		b.WriteString(k + "=" + v + "\n")
	}
	return b.String() + "\n"
}

// ask sends a request and returns the action answered.
func (c *client) ask(t *testing.T, req string) string {
	t.Helper()
	if _, err := c.c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if end, err := c.r.ReadString('\n'); err != nil || end != "\n" {
		t.Fatalf("answer not ended by an empty line: %q %v", end, err)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		t.Fatalf("answer %q", line)
	}
	return action
}

// log is the lines of one log file, without their time stamps.
func (s *server) log(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.logs, file))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if len(l) > 20 {
			lines = append(lines, l[20:])
		}
	}
	return lines
}

func TestRateLimit(t *testing.T) {
	s := start(t, pipeline(t, "ratelimit.toml", ""), serverOpts{})
	c := dial(t, s)
	// Two transactions of the sender pass; the third is over 2/1h. Each
	// transaction's recipients share its MAIL stage.
	for i, tc := range []struct{ req, want string }{
		{rcpt("instance=a.1"), "DUNNO"},
		{rcpt("instance=a.1", "recipient=v@example.org"), "DUNNO"},
		{rcpt("instance=a.2"), "DUNNO"},
		{rcpt("instance=a.3", "queue_id=4ABC"), "550 5.7.1 Rate limit exceeded"},
		{rcpt("instance=a.3", "recipient=v@example.org"), "550 5.7.1 Rate limit exceeded"},
		{rcpt("instance=a.4", "sender=other@sender.test"), "DUNNO"},
		// Postfix's relay policy decides, not [relay]: not asked here.
		{rcpt("instance=a.5", "sender=third@sender.test", "recipient=x@elsewhere.test"), "DUNNO"},
	} {
		if got := c.ask(t, tc.req); !strings.HasPrefix(got, tc.want) {
			t.Errorf("request %d: %q, want %q...", i, got, tc.want)
		}
	}
	rl := s.log(t, mainlog.RejectFile)
	if len(rl) != 1 || !strings.HasPrefix(rl[0], "4ABC H=(client.test) [192.0.2.10] rejected MAIL <a@sender.test>: ") {
		t.Errorf("rejectlog %q", rl)
	}
	refused := s.rec.Of(event.Refused)
	if len(refused) != 1 || refused[0].Stage != "mail" || refused[0].Code != 550 || refused[0].Check != "ratelimit" || refused[0].ID != "4ABC" ||
		refused[0].Listener != "policy" || refused[0].Sender != "a@sender.test" {
		t.Errorf("Refused events %+v", refused)
	}
	mails := 0
	for _, e := range s.rec.Of(event.Check) {
		if e.Stage == "mail" {
			mails++
		}
	}
	if mails != 5 {
		t.Errorf("%d Check events at MAIL, want 5 (one per transaction)", mails)
	}
}

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestGreylist(t *testing.T) {
	st, err := state.Open(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	gl := greylist.New(greylist.Options{Store: st, Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, Expire: 35 * 24 * time.Hour,
		AutoAllow: 5, Now: clock.Now})
	pl := filters.New(filters.Options{Checks: []filters.Step{{Check: gl, OnError: filters.OnErrorAccept}}, Log: mainlog.Discard()})
	s := start(t, pl, serverOpts{})
	c := dial(t, s)
	first := c.ask(t, rcpt("instance=g.1"))
	if !strings.HasPrefix(first, "451 4.7.1 ") {
		t.Fatalf("first attempt: %q, want 451 4.7.1 ...", first)
	}
	clock.add(time.Minute)
	if got := c.ask(t, rcpt("instance=g.2")); got != "451 4.7.1 Greylisted, please try again in 240 seconds" {
		t.Errorf("retry within the delay: %q", got)
	}
	clock.add(5 * time.Minute)
	if got := c.ask(t, rcpt("instance=g.3")); got != "DUNNO" {
		t.Errorf("retry after the delay: %q, want DUNNO", got)
	}
	rl := s.log(t, mainlog.RejectFile)
	want := "H=(client.test) [192.0.2.10] F=<a@sender.test> temporarily rejected RCPT <u@example.org>: "
	if len(rl) != 2 || !strings.HasPrefix(rl[0], want) {
		t.Errorf("rejectlog %q, want 2 lines %q...", rl, want)
	}
}

func TestRBL(t *testing.T) {
	ns := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		if strings.EqualFold(q.Name, "10.2.0.192.bl.test.") && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 300 IN A 127.0.0.2")
			m.Answer = append(m.Answer, rr)
		} else if strings.EqualFold(q.Name, "10.2.0.192.bl.test.") && q.Qtype == dns.TypeTXT {
			rr, _ := dns.NewRR(dnstest.TXT(q.Name, 300, "Listed in bl.test"))
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		return m
	})
	s := start(t, pipeline(t, "rbl.toml", ns.Addr), serverOpts{})
	c := dial(t, s)
	got := c.ask(t, rcpt())
	if want := "554 5.7.1 Service unavailable; client [192.0.2.10] blocked using bl.test"; !strings.HasPrefix(got, want) {
		t.Errorf("listed client: %q, want %q...", got, want)
	}
	if got := c.ask(t, rcpt("client_address=192.0.2.11", "instance=2")); got != "DUNNO" {
		t.Errorf("unlisted client: %q", got)
	}
	rl := s.log(t, mainlog.RejectFile)
	want := "H=(client.test) [192.0.2.10] F=<a@sender.test> rejected RCPT <u@example.org>: 192.0.2.10 is listed at bl.test"
	if len(rl) != 1 || !strings.HasPrefix(rl[0], want) {
		t.Errorf("rejectlog %q, want %q...", rl, want)
	}
	if r := s.rec.Of(event.Refused); len(r) != 1 || r[0].List != "bl.test" || r[0].Recipient != "u@example.org" || r[0].Stage != "rcpt" {
		t.Errorf("Refused %+v", r)
	}
	// A sender Postfix took and mxgate cannot parse does not get past
	// the checks.
	if got := c.ask(t, rcpt("instance=3", "sender=x@sender.test.")); !strings.HasPrefix(got, "554 5.7.1 ") {
		t.Errorf("listed client with the sender <x@sender.test.>: %q, want 554 5.7.1 ...", got)
	}
}

func TestDryRun(t *testing.T) {
	s := start(t, pipeline(t, "ratelimit.toml", ""), serverOpts{dryRun: true})
	c := dial(t, s)
	for i := range 3 {
		if got := c.ask(t, rcpt(fmt.Sprintf("instance=d.%d", i))); got != "DUNNO" {
			t.Errorf("request %d: %q", i, got)
		}
	}
	if rl := s.log(t, mainlog.RejectFile); len(rl) != 0 {
		t.Errorf("rejectlog %q", rl)
	}
	var would []string
	for _, l := range s.log(t, mainlog.MainFile) {
		if strings.Contains(l, "dry run: would have") {
			would = append(would, l)
		}
	}
	if len(would) != 1 || !strings.HasPrefix(would[0], "H=(client.test) [192.0.2.10] dry run: would have rejected MAIL <a@sender.test>: ") ||
		!strings.HasSuffix(would[0], "(550 5.7.1 Rate limit exceeded)") {
		t.Errorf("mainlog dry run lines %q", would)
	}
	if r := s.rec.Of(event.Refused); len(r) != 0 {
		t.Errorf("a dry run emitted Refused %+v", r)
	}
}

// TestDryRunGoesOn: after a MAIL refusal a dry run only logs, the
// recipients are still checked: the client's fourth recipient is over
// its per-recipient limit, in the transaction whose sender is over its
// own.
func TestDryRunGoesOn(t *testing.T) {
	s := start(t, pipeline(t, "ratelimit-rcpt.toml", ""), serverOpts{dryRun: true})
	c := dial(t, s)
	for i, req := range []string{
		rcpt("instance=d.0", "recipient=u0@example.org"),
		rcpt("instance=d.1", "recipient=u1@example.org"),
		rcpt("instance=d.2", "recipient=u2@example.org"),
		rcpt("instance=d.2", "recipient=u3@example.org"),
	} {
		if got := c.ask(t, req); got != "DUNNO" {
			t.Errorf("request %d: %q", i, got)
		}
	}
	var would []string
	for _, l := range s.log(t, mainlog.MainFile) {
		if _, w, ok := strings.Cut(l, "dry run: would have "); ok {
			would = append(would, w)
		}
	}
	if len(would) != 2 || !strings.HasPrefix(would[0], "rejected MAIL <a@sender.test>: ") ||
		!strings.HasPrefix(would[1], "rejected RCPT <u3@example.org>: ") {
		t.Errorf("mainlog dry run lines %q, want MAIL's then u3's RCPT", would)
	}
}

// TestConnection: Postfix's connection serves many requests, states
// other than RCPT are DUNNO, a malformed request closes the connection
// after a log line, and a silent one is closed at the timeout.
func TestConnection(t *testing.T) {
	pl := filters.New(filters.Options{Log: mainlog.Discard()})
	s := start(t, pl, serverOpts{timeout: 300 * time.Millisecond})
	c := dial(t, s)
	for i, req := range []string{
		rcpt(), rcpt("protocol_state=END-OF-MESSAGE"), rcpt("protocol_state=DATA"), "request=smtpd_access_policy\nprotocol_state=CONNECT\n\n",
		"request=other\n\n", rcpt("client_address=not-an-ip"), rcpt("instance="),
	} {
		if got := c.ask(t, req); got != "DUNNO" {
			t.Errorf("request %d: %q", i, got)
		}
	}
	if _, err := c.c.Write([]byte("request=smtpd_access_policy\nno equals sign\n\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := c.r.ReadString('\n'); err == nil {
		t.Errorf("after a malformed request: %q, want the connection closed", b)
	}
	idle := dial(t, s)
	start := time.Now()
	if _, err := idle.r.ReadString('\n'); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("silent connection: %v after %v", err, time.Since(start))
	}
	ml := strings.Join(s.log(t, mainlog.MainFile), "\n")
	for _, want := range []string{"line 2 is not name=value", "connection closed", "silent for 300ms: closed"} {
		if !strings.Contains(ml, want) {
			t.Errorf("mainlog lacks %q:\n%s", want, ml)
		}
	}
}

// TestInstanceEnds: without END-OF-MESSAGE (check_policy_service only in
// smtpd_recipient_restrictions), a connection's next instance ends the
// transaction before it, so the server holds one per connection at most,
// not every transaction of the last transaction_timeout.
func TestInstanceEnds(t *testing.T) {
	pl := filters.New(filters.Options{Log: mainlog.Discard()})
	srv := New(Options{Pipeline: func() *filters.Pipeline { return pl }, Log: mainlog.Discard(),
		Timeout: 10 * time.Second, TransactionTimeout: time.Hour})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	c := dial(t, &server{addr: ln.Addr().String()})
	for i := range 5 {
		for _, r := range []string{"u@example.org", "v@example.org"} {
			if got := c.ask(t, rcpt(fmt.Sprintf("instance=e.%d", i), "recipient="+r)); got != "DUNNO" {
				t.Fatalf("instance e.%d: %q", i, got)
			}
		}
	}
	srv.mu.Lock()
	var open []string
	for k := range srv.txns {
		open = append(open, k)
	}
	srv.mu.Unlock()
	if len(open) != 1 || open[0] != "e.4" {
		t.Errorf("transactions held after 5 on one connection: %q, want only the last, e.4", open)
	}
}
