package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
)

// The probe targets of the callout test, all on one port (callout.port)
// and each on a loopback address of its own.
const (
	usersMX    = "127.0.0.10" // go-smtp: accepts local parts "known*" and postmaster, refuses the rest
	acceptMX   = "127.0.0.11" // go-smtp: accepts every recipient
	tempfailMX = "127.0.0.12" // go-smtp: 451 to every RCPT
	silentMX   = "127.0.0.13" // accepts connections, never answers
	gatewayMX  = "127.0.0.14" // a second mxgate: relay.domains = ["gw.test"]
)

// mxTarget is a go-smtp probe target that records every RCPT. While
// hold is open, RCPTs for holdDomain wait.
type mxTarget struct {
	kind       string
	holdDomain string
	hold       chan struct{}

	mu    sync.Mutex
	rcpts []string
}

func (m *mxTarget) NewSession(*smtp.Conn) (smtp.Session, error) { return mxSession{m}, nil }

type mxSession struct{ m *mxTarget }

func (s mxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s mxSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (s mxSession) Reset()        {}
func (s mxSession) Logout() error { return nil }

func (s mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	m := s.m
	m.mu.Lock()
	m.rcpts = append(m.rcpts, to)
	hold := m.hold
	m.mu.Unlock()
	local, domain, _ := strings.Cut(to, "@")
	if hold != nil && domain == m.holdDomain {
		<-hold
	}
	switch m.kind {
	case "users":
		if strings.HasPrefix(local, "known") || local == "postmaster" {
			return nil
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: no such user here"}
	case "tempfail":
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Mailbox busy, try later"}
	}
	return nil
}

// probes returns the RCPTs the target saw for addr.
func (m *mxTarget) probes(addr string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.rcpts {
		if r == addr {
			n++
		}
	}
	return n
}

// startMXTargets listens on the four go-smtp/silent addresses on one
// free port, and checks that the second mxgate's address has it free too.
func startMXTargets(t *testing.T) (port int, users, accept *mxTarget) {
	t.Helper()
	users, accept = &mxTarget{kind: "users"}, &mxTarget{kind: "accept"}
	tempfail := &mxTarget{kind: "tempfail"}
	for attempt := 0; attempt < 20; attempt++ {
		lns, err := listenOnePort(usersMX, acceptMX, tempfailMX, silentMX, gatewayMX)
		if err != nil {
			continue
		}
		lns[4].Close() // the second mxgate listens there
		port = lns[0].Addr().(*net.TCPAddr).Port
		for i, m := range []*mxTarget{users, accept, tempfail} {
			srv := smtp.NewServer(m)
			srv.Domain = m.kind + ".mx.test"
			srv.ReadTimeout, srv.WriteTimeout = replyTimeout, replyTimeout
			go srv.Serve(lns[i])
			t.Cleanup(func() { srv.Close() })
		}
		peertest.Silent(t, lns[3])
		return port, users, accept
	}
	t.Fatal("no port free on all of the probe targets' loopback addresses")
	return 0, nil, nil
}

func listenOnePort(ips ...string) ([]net.Listener, error) {
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

// startCalloutDNS serves the MX and A records of the callout test on
// 127.0.0.1 (internal/dnstest); every other name is NXDOMAIN.
func startCalloutDNS(t *testing.T) string {
	t.Helper()
	mx := map[string]string{
		"users.test": "mx.users.test", "shared.test": "mx.users.test", "accept.test": "mx.accept.test",
		"tempfail.test": "mx.tempfail.test", "silent.test": "mx.silent.test",
		"gw.test": "mx.gw.test", "other.test": "mx.gw.test", "nullmx.test": ".",
	}
	a := map[string]string{
		"mx.users.test": usersMX, "mx.accept.test": acceptMX, "mx.tempfail.test": tempfailMX,
		"mx.silent.test": silentMX, "mx.gw.test": gatewayMX,
	}
	z := dnstest.Zone{}
	for name, host := range mx {
		pref := 10
		if host == "." {
			pref = 0
		}
		z[name+". MX"] = []string{fmt.Sprintf("%s. 300 IN MX %d %s", name, pref, dns.Fqdn(host))}
	}
	for name, addr := range a {
		z[name+". A"] = []string{name + ". 300 IN A " + addr}
	}
	return dnstest.StartZone(t, z).Addr
}

// calloutConfig writes a config template: the e2e template plus text
// after its [relay] section's lines (extra listen addresses, [callout]).
func calloutConfig(t *testing.T, listen2, relayDomains, calloutSection string) string {
	t.Helper()
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if listen2 != "" {
		text = strings.Replace(text, `listen   = ["{{.Listen}}"]`, `listen   = ["{{.Listen}}", "`+listen2+`"]`, 1)
	}
	text = strings.Replace(text, `domains          = ["example.test"]`, `domains          = [`+relayDomains+`]`, 1)
	text += "\n" + calloutSection
	path := filepath.Join(t.TempDir(), "mxgate.toml.tmpl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCallout runs mxgate with sender callouts against real SMTP servers
// on loopback, found through a real DNS server: go-smtp targets that
// refuse unknown users, accept everything, answer 4xx or never answer,
// and a second mxgate, which accepts any local part of its own domain
// and refuses to relay for others.
func TestCallout(t *testing.T) {
	t.Parallel()
	port, users, _ := startMXTargets(t)
	resolver := startCalloutDNS(t)
	sink := startSink(t)
	startMxgateConfig(t, calloutConfig(t, fmt.Sprintf("%s:%d", gatewayMX, port), `"gw.test"`, ""), sink.URL())
	section := fmt.Sprintf("[callout]\nenabled = true\nport = %d\nresolver = %q\noptions = [\"random\"]\ntimeout = \"1s\"\ndeadline = \"3s\"\nexempt_domains = [\"partner.test\"]\n", port, resolver)
	g := startMxgateConfig(t, calloutConfig(t, "", `"example.test"`, section), sink.URL())

	const (
		failed = "550 5.1.7 Sender verify failed"
		defer_ = "451 4.7.1 Could not complete sender verify"
	)
	tests := []struct {
		name, from, sender string
		rcpt               string // the reply to RCPT, lines joined by " | "
	}{
		{"known user", "127.0.0.1", "known@users.test", "250 2.1.5 "},
		{"unknown user", "127.0.0.1", "nobody@users.test",
			"550-Verification failed for <nobody@users.test> | 550-Called:   mx.users.test [" + usersMX + "] | " +
				"550-Response: 550 5.1.1 <nobody@users.test>: no such user here | " + failed},
		{"accepts everything", "127.0.0.1", "anyone@accept.test", "250 2.1.5 "},
		{"mxgate accepts its domain", "127.0.0.1", "anyone@gw.test", "250 2.1.5 "},
		{"mxgate refuses to relay", "127.0.0.1", "anyone@other.test",
			"550-Verification failed for <anyone@other.test> | 550-Called:   mx.gw.test [" + gatewayMX + "] | " +
				"550-Response: 550 5.7.1 relay not permitted | " + failed},
		{"4xx", "127.0.0.1", "a@tempfail.test", defer_},
		{"never answers", "127.0.0.1", "a@silent.test", defer_},
		{"null MX", "127.0.0.1", "a@nullmx.test",
			"550-Verification failed for <a@nullmx.test> | 550-domain accepts no mail (null MX) | " + failed},
		{"null sender", "127.0.0.1", "", "250 2.1.5 "},
		{"exempt domain", "127.0.0.1", "nobody@partner.test", "250 2.1.5 "},
		{"trusted client", "127.0.0.2", "nobody@users.test", "250 2.1.5 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustDial(t, tc.from, g.addr)
			defer c.Close()
			c.expect(t, "EHLO client.test", 250)
			c.expect(t, "MAIL FROM:<"+tc.sender+">", 250)
			r, err := c.cmd("RCPT TO:<u@example.test>")
			if err != nil {
				t.Fatal(err)
			}
			if got := r.String(); !strings.HasPrefix(got, tc.rcpt) {
				t.Errorf("RCPT -> %q, want %q", got, tc.rcpt)
			}
			c.expect(t, "QUIT", 221)
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		rejects := g.rejectlog()
		// 127.0.0.1 is "localhost" by /etc/hosts (host_lookup).
		for _, want := range []string{
			"H=localhost (client.test) [127.0.0.1] sender verify fail for <nobody@users.test>: response from mx.users.test [" + usersMX + "] was: 550 5.1.1 <nobody@users.test>: no such user here",
			"H=localhost (client.test) [127.0.0.1] F=<nobody@users.test> rejected RCPT <u@example.test>: Sender verify failed",
			"H=localhost (client.test) [127.0.0.1] F=<a@tempfail.test> temporarily rejected RCPT <u@example.test>: Could not complete sender verify",
		} {
			if !slices.Contains(rejects, want) {
				t.Errorf("rejectlog lacks %q:\n%s", want, strings.Join(rejects, "\n"))
			}
		}
		if n := users.probes("nobody@users.test"); n != 1 {
			t.Errorf("the users MX was asked about nobody@users.test %d times, want once (the trusted client is never probed)", n)
		}
	})
}

// TestCalloutOneProbe: 50 sessions that give one sender at once make one
// probe. The MX holds its answers until every session has sent RCPT, so
// the sessions wait on a probe in flight, not on a cache.
func TestCalloutOneProbe(t *testing.T) {
	t.Parallel()
	const sessions = 50
	port, users, _ := startMXTargets(t)
	users.holdDomain, users.hold = "shared.test", make(chan struct{})
	resolver := startCalloutDNS(t)
	section := fmt.Sprintf("[callout]\nenabled = true\nport = %d\nresolver = %q\ntimeout = \"10s\"\ndeadline = \"20s\"\n", port, resolver)
	tmpl := calloutConfig(t, "", `"example.test"`, section)
	b, _ := os.ReadFile(tmpl)
	os.WriteFile(tmpl, []byte(strings.Replace(string(b), "[smtp]\n", "[smtp]\nmax_connections_per_ip = 100\n", 1)), 0o644)
	g := startMxgateConfig(t, tmpl, startSink(t).URL())

	clients := make([]*client, sessions)
	for i := range clients {
		clients[i] = mustDial(t, "127.0.0.1", g.addr)
		defer clients[i].Close()
		clients[i].expect(t, "EHLO client.test", 250)
		clients[i].expect(t, "MAIL FROM:<known@shared.test>", 250)
	}
	for _, c := range clients {
		if err := c.write([]byte("RCPT TO:<u@example.test>\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	users.mu.Lock()
	close(users.hold)
	users.hold = nil
	users.mu.Unlock()
	for i, c := range clients {
		r, err := c.read()
		if err != nil || r.Code != 250 {
			t.Errorf("session %d: RCPT -> %v (%v), want 250", i, r, err)
		}
	}
	if n := users.probes("known@shared.test"); n != 1 {
		t.Errorf("%d sessions with one sender made %d probes, want 1", sessions, n)
	}
	// Exim's callout log line: one per probe.
	waitFor(t, 5*time.Second, func() string {
		n := 0
		for _, l := range g.mainlog() {
			if strings.Contains(l, "callout for <known@shared.test>") {
				n++
			}
		}
		if n != 1 {
			return fmt.Sprintf("mainlog has %d callout lines for <known@shared.test>, want 1", n)
		}
		return ""
	})
}
