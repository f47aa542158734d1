package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/spool"
)

// The MX hosts of the callout tests, all on one port (callout.port is one
// port for every MX) but each on an address of its own.
const (
	usersIP    = "127.0.0.10" // accepts local parts known*, shared and postmaster, refuses the rest
	acceptIP   = "127.0.0.11" // accepts every recipient
	tempfailIP = "127.0.0.12" // answers RCPT with 451
	silentIP   = "127.0.0.13" // accepts the connection and never says a word
)

// target is one SMTP server probed by the gateway; it records every RCPT.
type target struct {
	kind string
	hold chan struct{} // when set, RCPT waits for it to close
	seen chan string   // when set, each RCPT is announced here first

	mu    sync.Mutex
	rcpts []string
}

func (tg *target) NewSession(*smtp.Conn) (smtp.Session, error) { return &targetSession{tg}, nil }

type targetSession struct{ tg *target }

func (s *targetSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *targetSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (s *targetSession) Reset()        {}
func (s *targetSession) Logout() error { return nil }

func (s *targetSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	tg := s.tg
	tg.mu.Lock()
	tg.rcpts = append(tg.rcpts, to)
	tg.mu.Unlock()
	if tg.seen != nil {
		tg.seen <- to
	}
	if tg.hold != nil {
		<-tg.hold
	}
	switch tg.kind {
	case "users":
		if local, _, _ := strings.Cut(to, "@"); strings.HasPrefix(local, "known") || local == "postmaster" || local == "shared" {
			return nil
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user"}
	case "tempfail":
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	return nil
}

func (tg *target) got() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return slices.Clone(tg.rcpts)
}

// targets are the four MX hosts and the port they share.
type targets struct {
	port                   int
	users, accept, tempfal *target
}

// startTargets starts the MX hosts on one free port of four loopback
// addresses; users may be given a hold/seen pair.
func startTargets(t *testing.T, users *target) *targets {
	t.Helper()
	if users == nil {
		users = &target{}
	}
	users.kind = "users"
	ts := &targets{users: users, accept: &target{kind: "accept"}, tempfal: &target{kind: "tempfail"}}
	for attempt := 0; ; attempt++ {
		lns, err := listenAll(usersIP, acceptIP, tempfailIP, silentIP)
		if err != nil {
			if attempt < 20 {
				continue // another test took the port on one of the addresses
			}
			t.Fatal(err)
		}
		ts.port = lns[0].Addr().(*net.TCPAddr).Port
		for i, tg := range []*target{users, ts.accept, ts.tempfal} {
			srv := smtp.NewServer(tg)
			srv.Domain = tg.kind + ".mx.test"
			srv.ReadTimeout, srv.WriteTimeout = clientDeadline, clientDeadline
			go srv.Serve(lns[i])
			t.Cleanup(func() {
				if users.hold != nil {
					select {
					case <-users.hold:
					default:
						close(users.hold)
					}
				}
				srv.Close()
			})
		}
		peertest.Silent(t, lns[3])
		return ts
	}
}

func listenAll(ips ...string) ([]net.Listener, error) {
	first, err := net.Listen("tcp", ips[0]+":0")
	if err != nil {
		return nil, err
	}
	lns := []net.Listener{first}
	port := first.Addr().(*net.TCPAddr).Port
	for _, ip := range ips[1:] {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, l)
	}
	return lns, nil
}

// mxZones is the DNS of the callout tests: name -> MX targets ("pref
// host"), and host -> A.
var mxZones = struct {
	mx map[string][]string
	a  map[string]string
}{
	mx: map[string][]string{
		"users.test":    {"10 mx.users.test"},
		"accept.test":   {"10 mx.accept.test"},
		"tempfail.test": {"10 mx.tempfail.test"},
		"silent.test":   {"10 mx.silent.test"},
		"nullmx.test":   {"0 ."},
	},
	a: map[string]string{
		"mx.users.test":    usersIP,
		"mx.accept.test":   acceptIP,
		"mx.tempfail.test": tempfailIP,
		"mx.silent.test":   silentIP,
		"nomx.test":        usersIP, // no MX: the address is the mail server
	},
}

// startMXDNS serves mxZones on 127.0.0.1 (internal/dnstest) and returns
// its address.
func startMXDNS(t *testing.T) string {
	t.Helper()
	z := dnstest.Zone{}
	for name, mxs := range mxZones.mx {
		z[name+". MX"] = []string{}
		for _, mx := range mxs {
			z[name+". MX"] = append(z[name+". MX"], name+". 300 IN MX "+dns.Fqdn(mx))
		}
	}
	for name, a := range mxZones.a {
		z[name+". A"] = []string{name + ". 300 IN A " + a}
	}
	return dnstest.StartZone(t, z).Addr
}

// withCallout turns callouts on, asking resolver and probing port, with
// short bounds so the silent MX costs the tests little.
func withCallout(resolver string, port int, options ...string) func(*config.Config) {
	return func(c *config.Config) {
		c.Callout = config.Callout{
			Enabled: true, Port: port, Resolver: config.StringList{resolver}, Options: options,
			Timeout: config.Duration(time.Second), Deadline: config.Duration(2 * time.Second),
			ExemptDomains: []string{"partner.test"},
			PositiveTTL:   config.Duration(time.Hour), NegativeTTL: config.Duration(time.Hour), CacheSize: 1000,
		}
	}
}

func TestCalloutAtRCPT(t *testing.T) {
	const (
		failed = "550 5.1.7 Sender verify failed"
		defer_ = "451 4.7.1 Could not complete sender verify"
	)
	tests := []struct {
		name    string
		options []string
		from    string // client address
		auth    bool   // on the submission listener, logged in as bob
		sender  string
		rcpt    []string // the replies to two RCPTs in one transaction
		probes  []string // RCPTs the users MX saw
		rejects []string // rejectlog
	}{
		{name: "known sender", sender: "known@users.test", rcpt: []string{"250 2.1.5", "250 2.1.5"},
			probes: []string{"known@users.test"}},
		{
			name: "unknown sender", sender: "nobody@users.test",
			rcpt: []string{
				"550-Verification failed for <nobody@users.test>\n" +
					"550-Called:   mx.users.test [" + usersIP + "]\n" +
					"550-Response: 550 5.1.1 <nobody@users.test>: no such user\n" + failed,
				failed, // the details once per session
			},
			probes: []string{"nobody@users.test"},
			rejects: []string{
				"H=(client.test) [127.0.0.1] sender verify fail for <nobody@users.test>: response from mx.users.test [" + usersIP + "] was: 550 5.1.1 <nobody@users.test>: no such user",
				"H=(client.test) [127.0.0.1] F=<nobody@users.test> rejected RCPT <u0@example.test>: Sender verify failed",
				"H=(client.test) [127.0.0.1] F=<nobody@users.test> rejected RCPT <u1@example.test>: Sender verify failed",
			},
		},
		{name: "no MX: the address", sender: "known@nomx.test", rcpt: []string{"250 2.1.5", "250 2.1.5"},
			probes: []string{"known@nomx.test"}},
		{name: "4xx", sender: "a@tempfail.test", rcpt: []string{defer_, defer_},
			rejects: []string{
				"H=(client.test) [127.0.0.1] sender verify defer for <a@tempfail.test>: 451 4.3.0 Try again later",
				"H=(client.test) [127.0.0.1] F=<a@tempfail.test> temporarily rejected RCPT <u0@example.test>: Could not complete sender verify",
				"H=(client.test) [127.0.0.1] F=<a@tempfail.test> temporarily rejected RCPT <u1@example.test>: Could not complete sender verify",
			}},
		{name: "4xx with defer_ok", options: []string{"defer_ok"}, sender: "a@tempfail.test", rcpt: []string{"250 2.1.5", "250 2.1.5"}},
		{name: "MX never answers", sender: "a@silent.test", rcpt: []string{defer_, defer_},
			rejects: []string{
				"H=(client.test) [127.0.0.1] sender verify defer for <a@silent.test>: all MX hosts timed out (mx.silent.test [" + silentIP + "]: greeting/EHLO: no reply within 1s)",
				"H=(client.test) [127.0.0.1] F=<a@silent.test> temporarily rejected RCPT <u0@example.test>: Could not complete sender verify",
				"H=(client.test) [127.0.0.1] F=<a@silent.test> temporarily rejected RCPT <u1@example.test>: Could not complete sender verify",
			}},
		{name: "accepts everything, random", options: []string{"random"}, sender: "a@accept.test", rcpt: []string{"250 2.1.5", "250 2.1.5"}},
		{name: "null sender", sender: "", rcpt: []string{"250 2.1.5", "250 2.1.5"}},
		{name: "exempt domain", sender: "nobody@sub.partner.test", rcpt: []string{"250 2.1.5", "250 2.1.5"}},
		{name: "trusted client", from: "127.0.0.2", sender: "nobody@users.test", rcpt: []string{"250 2.1.5", "250 2.1.5"}},
		{name: "authenticated client", auth: true, sender: "nobody@users.test", rcpt: []string{"250 2.1.5", "250 2.1.5"}},
	}
	resolver := startMXDNS(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := startTargets(t, nil)
			ts := newTestServer(t, withAuth(t, func(c *config.Config) {
				withCallout(resolver, tg.port, tt.options...)(c)
				c.Auth.SenderPolicy = "any"
			}))
			from := tt.from
			if from == "" {
				from = "127.0.0.1"
			}
			var c *client
			if tt.auth {
				c = dialFrom(t, from, ts.addr(2))
				c.greet()
				c, _ = startTLS(t, c)
				c.expect("AUTH PLAIN "+plainResp("bob", "secret"), "235 ")
			} else {
				c = dialFrom(t, from, ts.addr(0))
				c.greet()
			}
			c.expect("MAIL FROM:<"+tt.sender+">", "250 ")
			for i, want := range tt.rcpt {
				c.send(fmt.Sprintf("RCPT TO:<u%d@example.test>\r\n", i))
				got := c.reply()
				if !strings.HasPrefix(got, want) {
					t.Errorf("RCPT %d -> %q, want %q", i, got, want)
				}
			}
			c.expect("QUIT", "221 ")
			if got := tg.users.got(); !slices.Equal(got, tt.probes) {
				t.Errorf("users MX got RCPTs %q, want %q", got, tt.probes)
			}
			if got := logLines(ts, "rejectlog"); !slices.Equal(got, tt.rejects) {
				t.Errorf("rejectlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.rejects, "\n"))
			}
		})
	}
}

// TestCalloutSharedProbe: 50 sessions that give one sender at once cause
// one probe. The MX holds its answer until every session has its RCPT
// in, so they all wait on the probe in flight (no cache can help).
// TestCalloutNotForRefusedMail: a sender a milter refuses at MAIL is
// never probed, however often the client tries: a refused client must not
// make the gateway call out.
func TestCalloutNotForRefusedMail(t *testing.T) {
	resolver := startMXDNS(t)
	tg := startTargets(t, nil)
	f := &fakeMilter{mail: func(string) (gomilter.Response, error) { return gomilter.RespReject, nil }}
	ts := newTestServer(t, func(c *config.Config) {
		withCallout(resolver, tg.port)(c)
		withMilter(startMilter(t, f), "tempfail")(c)
	})
	c := dial(t, ts.addr(0))
	c.greet()
	for _, sender := range []string{"nobody@users.test", "known@users.test", "other@users.test"} {
		c.expect("MAIL FROM:<"+sender+">", "550 5.7.1 Command rejected")
	}
	c.expect("QUIT", "221 ")
	if got := tg.users.got(); len(got) != 0 {
		t.Errorf("users MX was probed for %q, want no probe", got)
	}
}

func TestCalloutSharedProbe(t *testing.T) {
	const sessions = 50
	users := &target{hold: make(chan struct{}), seen: make(chan string, sessions)}
	tg := startTargets(t, users)
	ts := newTestServer(t, func(c *config.Config) {
		withCallout(startMXDNS(t), tg.port)(c)
		c.Callout.Deadline = config.Duration(clientDeadline) // the MX is slow on purpose
		c.SMTP.MaxConnectionsPerIP = 2 * sessions
	})
	clients := make([]*client, sessions)
	for i := range clients {
		clients[i] = dial(t, ts.addr(0))
		clients[i].greet()
		clients[i].expect("MAIL FROM:<shared@users.test>", "250 ")
	}
	select {
	case <-users.seen:
	case <-time.After(clientDeadline):
		t.Fatal("no probe reached the MX")
	}
	replies := make(chan string, sessions)
	for _, c := range clients {
		c.send("RCPT TO:<u@example.test>\r\n")
	}
	close(users.hold)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			// c.reply may call Fatalf, which must not run off the test's
			// goroutine: read here, judge below.
			l, err := c.r.ReadString('\n')
			if err != nil {
				replies <- err.Error()
				return
			}
			replies <- strings.TrimSuffix(l, "\r\n")
		})
	}
	wg.Wait()
	close(replies)
	for r := range replies {
		if !strings.HasPrefix(r, "250 ") {
			t.Errorf("RCPT -> %q, want 250", r)
		}
	}
	if got := users.got(); !slices.Equal(got, []string{"shared@users.test"}) {
		t.Errorf("%d sessions made the MX see RCPTs %q, want one probe", sessions, got)
	}
}

func TestCalloutServeTest(t *testing.T) {
	resolver := startMXDNS(t)
	tg := startTargets(t, nil)
	const script = "EHLO client.test\r\nMAIL FROM:<nobody@users.test>\r\nRCPT TO:<u@example.test>\r\nQUIT\r\n"
	out, trace := testSession(t, withCallout(resolver, tg.port), "198.51.100.9", script)
	wantOut := "550-Verification failed for <nobody@users.test>\r\n" +
		"550-Called:   mx.users.test [" + usersIP + "]\r\n" +
		"550-Response: 550 5.1.1 <nobody@users.test>: no such user\r\n" +
		"550 5.1.7 Sender verify failed\r\n"
	if !strings.Contains(out, wantOut) {
		t.Errorf("output lacks %q:\n%s", wantOut, out)
	}
	for _, want := range []string{
		">>> sender verify for <nobody@users.test>: callout started\n",
		">>> sender verify for <nobody@users.test>: refused: response from mx.users.test [" + usersIP + "] was: 550 5.1.1 <nobody@users.test>: no such user: rejected\n",
		"LOG: H=(client.test) [198.51.100.9] sender verify fail for <nobody@users.test>: response from mx.users.test [" + usersIP + "] was: 550 5.1.1 <nobody@users.test>: no such user\n",
		"LOG: H=(client.test) [198.51.100.9] F=<nobody@users.test> rejected RCPT <u@example.test>: Sender verify failed\n",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}

	// The client is trusted: no probe, and the trace says why.
	_, trace = testSession(t, withCallout(resolver, tg.port), "192.0.2.1", script)
	const why = ">>> sender verify for <nobody@users.test>: not done: host in relay.trusted_networks\n"
	if !strings.Contains(trace, why) {
		t.Errorf("trace lacks %q:\n%s", why, trace)
	}
	if got := tg.users.got(); len(got) != 1 {
		t.Errorf("users MX got RCPTs %q, want the one probe of the untrusted session", got)
	}
}

// TestCalloutClosedOnShutdown: closing the pipeline after Shutdown
// releases the cache file, so the next gateway on the same data_dir opens it and finds what the first one
// learnt (no second probe).
func TestCalloutClosedOnShutdown(t *testing.T) {
	resolver := startMXDNS(t)
	tg := startTargets(t, nil)
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Sync: spool.SyncFdatasync})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for run := range 2 {
		cfg := config.Default()
		cfg.Hostname = "mx.example.test"
		cfg.Listen = []string{"127.0.0.1:0"}
		cfg.DataDir = dir
		cfg.Relay.Domains = []string{"example.test"}
		cfg.Relay.TrustedNetworks = nil
		withCallout(resolver, tg.port)(cfg)
		// bbolt waits for the file lock: a cache left open would hang New.
		made := make(chan error, 1)
		var srv *Server
		var pl *checks.Pipeline
		go func() {
			var err error
			if pl, err = checks.Build(cfg, mainlog.Discard(), route.New(checks.RouteOptions(cfg)), false); err != nil {
				made <- err
				return
			}
			srv, err = New(Options{Config: cfg, Spool: sp, Pipeline: pl.Pipeline})
			made <- err
		}()
		select {
		case err := <-made:
			if err != nil {
				t.Fatalf("run %d: New: %v", run, err)
			}
		case <-time.After(clientDeadline):
			t.Fatalf("run %d: New still waits for the callout cache after %v: the last Shutdown did not close it", run, clientDeadline)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve() }()
		c := dial(t, srv.Addrs()[0].String())
		c.greet()
		c.expect("MAIL FROM:<nobody@users.test>", "250 ")
		c.expect("RCPT TO:<u@example.test>", "550-Verification failed for <nobody@users.test>")
		c.expect("QUIT", "221 ")
		ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("run %d: Shutdown: %v", run, err)
		}
		if err := pl.Close(); err != nil {
			t.Fatalf("run %d: closing the pipeline: %v", run, err)
		}
		if err := <-served; err != nil {
			t.Fatalf("run %d: Serve: %v", run, err)
		}
	}
	if got := tg.users.got(); !slices.Equal(got, []string{"nobody@users.test"}) {
		t.Errorf("users MX got RCPTs %q, want one probe: the second gateway should have used the cache", got)
	}
}
