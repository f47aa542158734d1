package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/config"
	"mxgate/internal/dnstest"
)

// record is what the fake resolver answers for one name.
type record struct {
	a     []string // A values
	txt   string
	rcode int // answered instead when not 0 (e.g. dns.RcodeServerFailure)
}

// fakeDNS is an in-process resolver on 127.0.0.1 (internal/dnstest)
// answering from a table; every other name is NXDOMAIN. It records each
// question it gets.
type fakeDNS struct {
	addr string
	srv  *dnstest.Server
}

func startDNS(t *testing.T, records map[string]record) *fakeDNS {
	t.Helper()
	srv := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		rec, ok := records[strings.TrimSuffix(strings.ToLower(q.Name), ".")]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case rec.rcode != 0:
			m.Rcode = rec.rcode
		case q.Qtype == dns.TypeA:
			for _, a := range rec.a {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
					A: net.ParseIP(a)})
			}
		case q.Qtype == dns.TypeTXT && rec.txt != "":
			rr, err := dns.NewRR(dnstest.TXT(q.Name, 300, rec.txt))
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		return m
	})
	return &fakeDNS{addr: srv.Addr, srv: srv}
}

// asked is every question so far, "name TYPE" (no final dot).
func (f *fakeDNS) asked() []string {
	var out []string
	for _, k := range f.srv.Asked() {
		k = strings.TrimPrefix(k, "tcp ")
		name, typ, _ := strings.Cut(k, " ")
		out = append(out, strings.TrimSuffix(name, ".")+" "+typ)
	}
	return out
}

// deadResolver is a resolver that never answers.
func deadResolver(t *testing.T) string {
	t.Helper()
	srv := dnstest.Start(t, func(dns.Question, bool) *dns.Msg { return nil })
	return srv.Addr
}

// dialFrom connects from a loopback address of the client's choosing, so
// a test picks the IP the lists see.
func dialFrom(t *testing.T, from, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: clientDeadline, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, c)
}

// zones is the fake resolver's data for the tests: client 127.0.0.1 is on
// bl.test, bl2.test and wl.test, 127.0.0.3 on none; spam-domain.test and
// the HELO name bad-helo.test are on dbl.test.
var zones = map[string]record{
	"1.0.0.127.bl.test":            {a: []string{"127.0.0.2"}, txt: "Listed in bl.test, see http://bl.test/127.0.0.1"},
	"1.0.0.127.bl2.test":           {a: []string{"127.0.0.4"}},
	"1.0.0.127.wl.test":            {a: []string{"127.0.5.1"}, txt: "Known good"},
	"1.0.0.127.code.test":          {a: []string{"127.0.0.3"}, txt: "Dynamic IP"},
	"1.0.0.127.broken.test":        {rcode: dns.RcodeServerFailure},
	"spam-domain.test.dbl.test":    {a: []string{"127.0.1.2"}, txt: "Domain spam-domain.test listed in dbl.test"},
	"bad-helo.test.helo.test":      {a: []string{"127.0.1.2"}, txt: "Bad HELO"},
	"spam-domain.test.broken.test": {rcode: dns.RcodeServerFailure},
}

func list(zone, kind string, weight int, match ...string) config.RBLList {
	return config.RBLList{Zone: zone, Kind: kind, Weight: weight, Match: match, OnError: "ignore"}
}

// withRBL points the gateway at resolver with the given lists and scores.
func withRBL(resolver string, reject, tag int, lists ...config.RBLList) func(*config.Config) {
	return func(c *config.Config) {
		c.RBL.Lists = lists
		c.RBL.Resolver = config.StringList{resolver}
		c.RBL.RejectScore, c.RBL.TagScore = reject, tag
	}
}

// logLines returns a log file's lines without their timestamps.
func logLines(ts *testServer, name string) []string {
	var lines []string
	for l := range strings.Lines(ts.logFile(name)) {
		lines = append(lines, strings.TrimSuffix(l[len("2006-01-02 15:04:05 "):], "\n"))
	}
	return lines
}

func TestRBLVerdictAtRCPT(t *testing.T) {
	const bl = "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test (Listed in bl.test, see http://bl.test/127.0.0.1)"
	tests := []struct {
		name      string
		from      string // client address
		helo      string
		sender    string
		reject    int
		tag       int
		lists     []config.RBLList
		want      string // the RCPT reply
		rejectlog string // "" = none
		header    string // X-RBL-Score of the accepted message; "" = none
	}{
		{
			name: "listed client refused", from: "127.0.0.1", sender: "a@client.test", reject: 1, tag: 1,
			lists:     []config.RBLList{list("bl.test", "ip", 1)},
			want:      bl,
			rejectlog: "H=(client.test) [127.0.0.1] F=<a@client.test> rejected RCPT <u@example.test>: 127.0.0.1 is listed at bl.test (127.0.0.2: Listed in bl.test, see http://bl.test/127.0.0.1)",
		},
		{
			name: "clean client accepted", from: "127.0.0.3", sender: "a@client.test", reject: 1, tag: 1,
			lists: []config.RBLList{list("bl.test", "ip", 1), list("bl2.test", "ip", 1)},
			want:  "250 ",
		},
		{
			name: "answer outside match accepted", from: "127.0.0.1", sender: "a@client.test", reject: 1, tag: 1,
			lists: []config.RBLList{list("code.test", "ip", 1, "127.0.0.2", "127.0.0.4-127.0.0.11")},
			want:  "250 ",
		},
		{
			name: "answer in range refused", from: "127.0.0.1", sender: "a@client.test", reject: 1, tag: 1,
			lists:     []config.RBLList{list("code.test", "ip", 1, "127.0.0.2-127.0.0.3")},
			want:      "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using code.test (Dynamic IP)",
			rejectlog: "H=(client.test) [127.0.0.1] F=<a@client.test> rejected RCPT <u@example.test>: 127.0.0.1 is listed at code.test (127.0.0.3: Dynamic IP)",
		},
		{
			name: "allow-list outweighs", from: "127.0.0.1", sender: "a@client.test", reject: 3, tag: 1,
			lists: []config.RBLList{list("bl.test", "ip", 3), list("wl.test", "ip", -3)},
			want:  "250 ",
		},
		{
			name: "between tag and reject stamped", from: "127.0.0.1", sender: "a@client.test", reject: 5, tag: 1,
			lists:  []config.RBLList{list("bl.test", "ip", 3), list("wl.test", "ip", -1)},
			want:   "250 ",
			header: "X-RBL-Score: 2 (bl.test=3, wl.test=-1)\n",
		},
		{
			name: "weights add up to reject", from: "127.0.0.1", sender: "a@spam-domain.test", reject: 3, tag: 1,
			lists:     []config.RBLList{list("bl.test", "ip", 2), list("bl2.test", "ip", -1), list("dbl.test", "sender_domain", 2)},
			want:      "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test (Listed in bl.test, see http://bl.test/127.0.0.1)",
			rejectlog: "H=(client.test) [127.0.0.1] F=<a@spam-domain.test> rejected RCPT <u@example.test>: 127.0.0.1 is listed at bl.test (127.0.0.2: Listed in bl.test, see http://bl.test/127.0.0.1); RBL score 3 (bl.test=2, bl2.test=-1, dbl.test=2)",
		},
		{
			name: "sender domain refused", from: "127.0.0.3", sender: "a@Spam-Domain.test", reject: 1, tag: 1,
			lists:     []config.RBLList{list("dbl.test", "sender_domain", 1)},
			want:      "554 5.7.1 Service unavailable; sender domain spam-domain.test blocked using dbl.test (Domain spam-domain.test listed in dbl.test)",
			rejectlog: "H=(client.test) [127.0.0.3] F=<a@spam-domain.test> rejected RCPT <u@example.test>: sender domain spam-domain.test is listed at dbl.test (127.0.1.2: Domain spam-domain.test listed in dbl.test)",
		},
		{
			name: "HELO name refused", from: "127.0.0.3", helo: "bad-helo.test", sender: "a@client.test", reject: 1, tag: 1,
			lists:     []config.RBLList{list("helo.test", "helo", 1), list("dbl.test", "sender_domain", 1)},
			want:      "554 5.7.1 Service unavailable; HELO name bad-helo.test blocked using helo.test (Bad HELO)",
			rejectlog: "H=(bad-helo.test) [127.0.0.3] F=<a@client.test> rejected RCPT <u@example.test>: HELO name bad-helo.test is listed at helo.test (127.0.1.2: Bad HELO)",
		},
		{
			name: "null sender has no domain", from: "127.0.0.3", sender: "", reject: 1, tag: 1,
			lists: []config.RBLList{list("dbl.test", "sender_domain", 1)},
			want:  "250 ",
		},
		{
			name: "SERVFAIL ignored", from: "127.0.0.1", sender: "a@client.test", reject: 1, tag: 1,
			lists: []config.RBLList{list("broken.test", "ip", 1)},
			want:  "250 ",
		},
		{
			name: "SERVFAIL tempfails", from: "127.0.0.1", sender: "a@client.test", reject: 1, tag: 1,
			lists:     []config.RBLList{{Zone: "broken.test", Kind: "ip", Weight: 1, OnError: "tempfail"}},
			want:      "451 4.7.1 Temporary local problem checking broken.test; try again later",
			rejectlog: "H=(client.test) [127.0.0.1] F=<a@client.test> temporarily rejected RCPT <u@example.test>: DNS list lookup defer at broken.test",
		},
		{
			name: "a listing beats a failure", from: "127.0.0.3", sender: "a@spam-domain.test", reject: 1, tag: 1,
			lists:     []config.RBLList{{Zone: "broken.test", Kind: "sender_domain", Weight: 1, OnError: "tempfail"}, list("dbl.test", "sender_domain", 1)},
			want:      "554 5.7.1 Service unavailable; sender domain spam-domain.test blocked using dbl.test (Domain spam-domain.test listed in dbl.test)",
			rejectlog: "H=(client.test) [127.0.0.3] F=<a@spam-domain.test> rejected RCPT <u@example.test>: sender domain spam-domain.test is listed at dbl.test (127.0.1.2: Domain spam-domain.test listed in dbl.test)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := startDNS(t, zones)
			ts := newTestServer(t, withRBL(ns.addr, tt.reject, tt.tag, tt.lists...))
			c := dialFrom(t, tt.from, ts.addr(0))
			helo := tt.helo
			if helo == "" {
				helo = "client.test"
			}
			c.expect("", "220 ")
			c.expect("EHLO "+helo, "250-")
			c.expect("MAIL FROM:<"+tt.sender+">", "250 ")
			got := c.reply2("RCPT TO:<u@example.test>")
			if !strings.HasPrefix(got, tt.want) || (tt.want != "250 " && got != tt.want) {
				t.Fatalf("RCPT -> %q, want %q", got, tt.want)
			}
			if got2 := c.reply2("RCPT TO:<v@example.test>"); got2[:4] != got[:4] {
				t.Errorf("second RCPT -> %q, want the verdict of the first, %q", got2, got)
			}
			if tt.want == "250 " {
				c.expect("DATA", "354 ")
				c.send(wire("X-RBL-Score: -100 (forged)\nSubject: hi\n\nbody\n"))
				c.expect("", "250 2.0.0 OK id=")
			}
			c.expect("QUIT", "221 ")
			c.rest()

			rejects := logLines(ts, "rejectlog")
			if tt.rejectlog == "" {
				if len(rejects) != 0 {
					t.Errorf("rejectlog:\n%s\nwant nothing", strings.Join(rejects, "\n"))
				}
			} else if len(rejects) != 2 || rejects[0] != tt.rejectlog || rejects[1] != strings.Replace(tt.rejectlog, "<u@", "<v@", 1) {
				t.Errorf("rejectlog:\n%s\nwant twice (u@, v@):\n%s", strings.Join(rejects, "\n"), tt.rejectlog)
			}

			ids := ts.queued()
			if tt.want != "250 " {
				if len(ids) != 0 {
					t.Errorf("queued %v, want nothing", ids)
				}
				return
			}
			if len(ids) != 1 {
				t.Fatalf("queued %v, want one message", ids)
			}
			msg := ts.message(ids[0])
			if strings.Contains(msg, "forged") {
				t.Errorf("the client's X-RBL-Score was kept:\n%s", msg)
			}
			head, _, _ := strings.Cut(msg, "\n\n")
			var stamp string
			for l := range strings.Lines(head + "\n") {
				if strings.HasPrefix(l, "X-RBL-Score:") {
					stamp += l
				}
			}
			if stamp != tt.header {
				t.Errorf("X-RBL-Score headers %q, want %q; message:\n%s", stamp, tt.header, msg)
			}
			warning := string(ids[0]) + " H=(" + helo + ") [" + tt.from + "] Warning: RBL score "
			hasWarning := slices.ContainsFunc(logLines(ts, "mainlog"), func(l string) bool { return strings.HasPrefix(l, warning) })
			if hasWarning != (tt.header != "") {
				t.Errorf("mainlog has a %q line: %v, want %v:\n%s", warning, hasWarning, tt.header != "", ts.logFile("mainlog"))
			}
			if tt.header != "" {
				want := warning + strings.TrimSpace(strings.TrimPrefix(tt.header, "X-RBL-Score:"))
				if !slices.Contains(logLines(ts, "mainlog"), want) {
					t.Errorf("mainlog lacks %q:\n%s", want, ts.logFile("mainlog"))
				}
			}
		})
	}
}

// TestRBLTrustedNotLookedUp: a client in relay.trusted_networks is never
// looked up, not even on its sender domain.
func TestRBLTrustedNotLookedUp(t *testing.T) {
	ns := startDNS(t, zones)
	ts := newTestServer(t, withRBL(ns.addr, 1, 1, list("bl.test", "ip", 1), list("dbl.test", "sender_domain", 1)))
	c := dialFrom(t, "127.0.0.2", ts.addr(0)) // trusted in newTestServer
	c.greet()
	if got := c.sendMessage("a@spam-domain.test", []string{"u@example.test"}, "Subject: hi\n\nbody\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA -> %q, want 250", got)
	}
	c.expect("QUIT", "221 ")
	c.rest()
	if q := ns.asked(); len(q) != 0 {
		t.Errorf("the resolver was asked %v, want nothing", q)
	}
}

// TestRBLAuthenticated: a listed client that logged in (SMTP AUTH) is not
// judged by the lists, whose verdict would refuse it, nor tagged; its
// sender domain is not looked up.
func TestRBLAuthenticated(t *testing.T) {
	ns := startDNS(t, zones)
	rbl := withRBL(ns.addr, 1, 1, list("bl.test", "ip", 1), list("dbl.test", "sender_domain", 1))
	ts := newTestServer(t, withAuth(t, func(c *config.Config) {
		rbl(c)
		c.Auth.SenderPolicy = "any"
	}))
	c := dialFrom(t, "127.0.0.1", ts.addr(2)) // listed on bl.test
	c.greet()
	c, _ = startTLS(t, c)
	c.expect("AUTH PLAIN "+plainResp("bob", "secret"), "235 ")
	if got := c.sendMessage("a@spam-domain.test", []string{"u@outside.test"}, "Subject: hi\n\nbody\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA -> %q, want 250", got)
	}
	c.expect("QUIT", "221 ")
	if m := ts.message(ts.onlyID()); strings.Contains(m, "X-RBL-Score") {
		t.Errorf("authenticated mail tagged:\n%s", m)
	}
	for _, q := range ns.asked() {
		if strings.Contains(q, "dbl.test") {
			t.Errorf("the sender domain was looked up: %v", ns.asked())
		}
	}
}

// TestRBLLookupsShared: the IP lists are asked once per connection however
// many transactions it has, and not at all before a list is configured.
func TestRBLLookupsShared(t *testing.T) {
	ns := startDNS(t, zones)
	ts := newTestServer(t, withRBL(ns.addr, 5, 1, list("bl.test", "ip", 1)))
	c := dialFrom(t, "127.0.0.1", ts.addr(0))
	c.greet()
	for range 3 {
		if got := c.sendMessage("a@client.test", []string{"u@example.test", "v@example.test"}, "Subject: hi\n\nbody\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("DATA -> %q, want 250", got)
		}
	}
	c.expect("QUIT", "221 ")
	c.rest()
	want := []string{"1.0.0.127.bl.test A", "1.0.0.127.bl.test TXT"}
	if got := ns.asked(); !slices.Equal(got, want) {
		t.Errorf("the resolver was asked %v, want %v", got, want)
	}
}

func TestRBLAtConnect(t *testing.T) {
	ns := startDNS(t, zones)
	tlsOn := withTLS(t)
	ts := newTestServer(t, func(c *config.Config) {
		withRBL(ns.addr, 1, 1, list("bl.test", "ip", 1), list("dbl.test", "sender_domain", 1))(c)
		c.RBL.RejectAt = "connect"
		tlsOn(c)
	})

	listed := dialFrom(t, "127.0.0.1", ts.addr(0))
	if got, want := listed.rest(), "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test (Listed in bl.test, see http://bl.test/127.0.0.1)\r\n"; got != want {
		t.Errorf("listed client got %q, want %q and the connection closed", got, want)
	}
	want := []string{`H=[127.0.0.1] rejected connection in "connect" ACL: 127.0.0.1 is listed at bl.test (127.0.0.2: Listed in bl.test, see http://bl.test/127.0.0.1)`}
	if got := logLines(ts, "rejectlog"); !slices.Equal(got, want) {
		t.Errorf("rejectlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), want[0])
	}

	// Under implicit TLS a refusal could not be read before the handshake:
	// the listed client is refused at RCPT instead.
	tc, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: clientDeadline}, Config: tlsClientConfig()}).
		DialContext(context.Background(), "tcp", ts.addr(1))
	if err != nil {
		t.Fatal(err)
	}
	overTLS := newClient(t, tc)
	overTLS.greet()
	overTLS.expect("MAIL FROM:<a@client.test>", "250 ")
	overTLS.expect("RCPT TO:<u@example.test>", "554 5.7.1 Service unavailable; client [127.0.0.1] blocked using bl.test")
	overTLS.expect("QUIT", "221 ")
	overTLS.rest()

	// A clean client is greeted; its sender domain still counts at RCPT.
	clean := dialFrom(t, "127.0.0.3", ts.addr(0))
	clean.greet()
	clean.expect("MAIL FROM:<a@spam-domain.test>", "250 ")
	clean.expect("RCPT TO:<u@example.test>", "554 5.7.1 Service unavailable; sender domain spam-domain.test blocked using dbl.test")
	clean.expect("QUIT", "221 ")
	clean.rest()
}

// TestRBLDeadResolver: a resolver that never answers holds RCPT for
// rbl.timeout at most; the lists' on_error decides what that means.
func TestRBLDeadResolver(t *testing.T) {
	for _, tt := range []struct {
		onError, want string
	}{
		{"ignore", "250 "},
		{"tempfail", "451 4.7.1 Temporary local problem checking bl.test; try again later"},
	} {
		t.Run(tt.onError, func(t *testing.T) {
			ts := newTestServer(t, func(c *config.Config) {
				withRBL(deadResolver(t), 1, 1, config.RBLList{Zone: "bl.test", Kind: "ip", Weight: 1, OnError: tt.onError})(c)
				c.RBL.Timeout = config.Duration(100 * time.Millisecond)
			})
			c := dialFrom(t, "127.0.0.1", ts.addr(0))
			c.greet()
			c.expect("MAIL FROM:<a@client.test>", "250 ")
			c.expect("RCPT TO:<u@example.test>", tt.want)
			c.expect("QUIT", "221 ")
			c.rest()
			prefix := "DNS list lookup defer for 127.0.0.1 at bl.test: "
			if !slices.ContainsFunc(logLines(ts, "mainlog"), func(l string) bool { return strings.HasPrefix(l, prefix) }) {
				t.Errorf("mainlog lacks %q...:\n%s", prefix, ts.logFile("mainlog"))
			}
		})
	}
}

// TestRBLServeTest: -bh traces every list's answer, the score and the
// verdict.
func TestRBLServeTest(t *testing.T) {
	ns := startDNS(t, map[string]record{
		"1.2.0.192.bl.test": {a: []string{"127.0.0.2"}, txt: "Listed"},
		"1.2.0.192.wl.test": {a: []string{"127.0.0.2"}},
	})
	edit := func(reject, tag int, at string) func(*config.Config) {
		return func(c *config.Config) {
			c.Relay.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
			withRBL(ns.addr, reject, tag, list("bl.test", "ip", 3), list("wl.test", "ip", -1), list("dbl.test", "sender_domain", 1))(c)
			c.RBL.RejectAt = at
		}
	}
	const script = "EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	tests := []struct {
		name      string
		edit      func(*config.Config)
		ip        string
		wantOut   string
		wantTrace string
	}{
		{
			name: "rejected", edit: edit(2, 1, "rcpt"), ip: "192.0.2.1",
			wantOut: "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using bl.test (Listed)\r\n",
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> bl.test: 192.0.2.1 listed (127.0.0.2, weight 3): Listed\n" +
				">>> wl.test: 192.0.2.1 listed (127.0.0.2, weight -1)\n" +
				">>> dbl.test: client.test not listed\n" +
				">>> DNS lists: RBL score 2 (bl.test=3, wl.test=-1): reject_score 2 reached: rejected\n" +
				"LOG: H=(client.test) [192.0.2.1] F=<a@client.test> rejected RCPT <u@example.test>: 192.0.2.1 is listed at bl.test (127.0.0.2: Listed); RBL score 2 (bl.test=3, wl.test=-1)\n",
		},
		{
			name: "tagged", edit: edit(3, 2, "rcpt"), ip: "192.0.2.1",
			wantOut: "250 2.0.0 OK id=ID (not queued: -bh test session)\r\n",
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> bl.test: 192.0.2.1 listed (127.0.0.2, weight 3): Listed\n" +
				">>> wl.test: 192.0.2.1 listed (127.0.0.2, weight -1)\n" +
				">>> dbl.test: client.test not listed\n" +
				">>> DNS lists: RBL score 2 (bl.test=3, wl.test=-1): tag_score 2 reached: X-RBL-Score stamped\n" +
				">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
				"LOG: ID H=(client.test) [192.0.2.1] Warning: RBL score 2 (bl.test=3, wl.test=-1)\n" +
				">>> DATA: accepted: S=236; not queued: test session\n",
		},
		{
			name: "refused at connect", edit: edit(2, 1, "connect"), ip: "192.0.2.1",
			wantOut: "554 5.7.1 Service unavailable; client [192.0.2.1] blocked using bl.test (Listed)\r\n",
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> bl.test: 192.0.2.1 listed (127.0.0.2, weight 3): Listed\n" +
				">>> wl.test: 192.0.2.1 listed (127.0.0.2, weight -1)\n" +
				">>> DNS lists at connect: RBL score 2 (bl.test=3, wl.test=-1): reject_score 2 reached: connection refused\n" +
				"LOG: H=[192.0.2.1] rejected connection in \"connect\" ACL: 192.0.2.1 is listed at bl.test (127.0.0.2: Listed); RBL score 2 (bl.test=3, wl.test=-1)\n",
		},
		{
			name: "trusted", edit: edit(2, 1, "connect"), ip: "198.51.100.1",
			wantOut: "250 2.0.0 OK id=ID (not queued: -bh test session)\r\n",
			wantTrace: ">>> host in relay.trusted_networks? yes: may relay to any domain\n" +
				">>> DNS lists: not checked: host in relay.trusted_networks\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
				">>> DATA: accepted: S=200; not queued: test session\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, trace := testSession(t, tt.edit, tt.ip, script)
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out)
			}
			if trace != tt.wantTrace {
				t.Errorf("trace:\n%s\nwant:\n%s", trace, tt.wantTrace)
			}
		})
	}
}
