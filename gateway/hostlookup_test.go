package gateway

import (
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"mxgate/config"
	"mxgate/internal/dnstest"
)

// testHostsFile is the hosts file of the tests' host name lookups: it
// does not name the test client, so only the fake DNS does.
const testHostsFile = "testdata/hosts"

// withHostLookup turns host_lookup on, asking the fake DNS serving z.
func withHostLookup(t *testing.T, z dnstest.Zone, timeout time.Duration) (func(*config.Config), *dnstest.Server) {
	srv := dnstest.StartZone(t, z)
	return func(c *config.Config) {
		c.HostLookup.Enabled = true
		c.HostLookup.Resolver = config.StringList{srv.Addr}
		c.HostLookup.Timeout = config.Duration(timeout)
	}, srv
}

const loopbackPTR = "1.0.0.127.in-addr.arpa. PTR"

// TestHostLookup: the client's reverse DNS, forward-confirmed, names it
// in the Received header and in every log line's H=, Exim's way; a name
// that does not confirm, no name and a lookup that times out all leave
// the client known by its address.
func TestHostLookup(t *testing.T) {
	tests := []struct {
		name     string
		zone     dnstest.Zone
		helo     string
		received string // the Received header's "from" clause
		host     string // H= of the log lines
		mainlog  string // a line the mainlog must have, or ""
		noLog    string // a text no mainlog line may have, or ""
	}{{
		name: "name confirmed",
		zone: dnstest.Zone{
			loopbackPTR:           {"1.0.0.127.in-addr.arpa. 300 IN PTR Mail.Client.TEST."},
			"mail.client.test. A": {"mail.client.test. 300 IN A 127.0.0.1"},
		},
		helo:     "client.test",
		received: "from client.test (mail.client.test [127.0.0.1])",
		host:     "mail.client.test (client.test) [127.0.0.1]",
		noLog:    "no host name found",
	}, {
		name: "HELO is the name",
		zone: dnstest.Zone{
			loopbackPTR:           {"1.0.0.127.in-addr.arpa. 300 IN PTR mail.client.test."},
			"mail.client.test. A": {"mail.client.test. 300 IN A 127.0.0.1"},
		},
		helo:     "MAIL.client.test",
		received: "from MAIL.client.test (mail.client.test [127.0.0.1])",
		host:     "mail.client.test [127.0.0.1]",
	}, {
		name: "name not confirmed",
		zone: dnstest.Zone{
			loopbackPTR:    {"1.0.0.127.in-addr.arpa. 300 IN PTR bank.test."},
			"bank.test. A": {"bank.test. 300 IN A 192.0.2.1"},
		},
		helo:     "bank.test",
		received: "from bank.test ([127.0.0.1])",
		host:     "(bank.test) [127.0.0.1]",
		// Exim says nothing of a name that does not confirm.
		noLog: "no host name found",
	}, {
		name:     "no PTR",
		zone:     dnstest.Zone{},
		helo:     "client.test",
		received: "from client.test ([127.0.0.1])",
		host:     "(client.test) [127.0.0.1]",
		mainlog:  "no host name found for IP address 127.0.0.1",
	}, {
		name:     "timeout",
		zone:     dnstest.Zone{"1.0.0.127.in-addr.arpa. DROP": nil},
		helo:     "client.test",
		received: "from client.test ([127.0.0.1])",
		host:     "(client.test) [127.0.0.1]",
		noLog:    "no host name found",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			edit, _ := withHostLookup(t, tt.zone, timeout)
			ts := newTestServer(t, edit)
			c := dial(t, ts.addr(0))
			start := time.Now()
			c.expect("", "220 mx.example.test ESMTP")
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("greeting after %v, host_lookup.timeout %v", d, timeout)
			}
			c.expect("EHLO "+tt.helo, "250-Hello ")
			c.expect("MAIL FROM:<a@client.test>", "250 ")
			c.expect("RCPT TO:<x@other.test>", "550 ")
			c.expect("RSET", "250 ")
			if got := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: hi\n\nhello\n"); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("DATA -> %q", got)
			}
			c.expect("QUIT", "221")

			msg := ts.message(ts.onlyID())
			if !strings.HasPrefix(msg, "Received: "+tt.received+"\n\tby mx.example.test with ESMTP id ") {
				t.Errorf("delivered message starts\n%s\nwant Received: %s", firstLines(msg, 3), tt.received)
			}
			mainlog := ts.logFile("mainlog")
			arrival := regexp.MustCompile(` <= a@client\.test H=` + regexp.QuoteMeta(tt.host) + `:\d+ P=esmtp S=\d+\n`)
			if !arrival.MatchString(mainlog) {
				t.Errorf("mainlog has no <= line with H=%s:PORT:\n%s", tt.host, mainlog)
			}
			wantReject := "H=" + tt.host + " F=<a@client.test> rejected RCPT <x@other.test>: relay not permitted"
			if rej := ts.logFile("rejectlog"); !strings.Contains(rej, wantReject) {
				t.Errorf("rejectlog lacks %q:\n%s", wantReject, rej)
			}
			if tt.mainlog != "" && !strings.Contains(mainlog, tt.mainlog) {
				t.Errorf("mainlog lacks %q:\n%s", tt.mainlog, mainlog)
			}
			if tt.noLog != "" && strings.Contains(mainlog, tt.noLog) {
				t.Errorf("mainlog has %q:\n%s", tt.noLog, mainlog)
			}
		})
	}
}

// TestHostLookupCached: sessions from one address ask the DNS once.
func TestHostLookupCached(t *testing.T) {
	edit, dns := withHostLookup(t, dnstest.Zone{
		loopbackPTR:           {"1.0.0.127.in-addr.arpa. 300 IN PTR mail.client.test."},
		"mail.client.test. A": {"mail.client.test. 300 IN A 127.0.0.1"},
	}, 2*time.Second)
	ts := newTestServer(t, edit)
	for range 3 {
		c := dial(t, ts.addr(0))
		c.greet()
		c.expect("QUIT", "221")
	}
	if n, m := dns.Count(loopbackPTR), dns.Count("mail.client.test. A"); n != 1 || m != 1 {
		t.Errorf("3 sessions asked PTR %d and A %d times, want 1 and 1", n, m)
	}
}

// connectMilter is a fake milter that keeps the connect event's host
// name and macros.
type connectMilter struct {
	fakeMilter
	mu     sync.Mutex
	host   string
	macros map[string]string
}

func (m *connectMilter) Connect(host, _ string, _ uint16, _ net.IP, mod *gomilter.Modifier) (gomilter.Response, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.host, m.macros = host, mod.Macros
	return gomilter.RespContinue, nil
}

// TestHostLookupMilter: the milters learn the client's name from the
// connect macros, as Sendmail and Postfix tell them.
func TestHostLookupMilter(t *testing.T) {
	for _, tt := range []struct {
		name                              string
		zone                              dnstest.Zone
		host, under, cname, cptr, resolve string
	}{{
		name: "confirmed",
		zone: dnstest.Zone{
			loopbackPTR:           {"1.0.0.127.in-addr.arpa. 300 IN PTR mail.client.test."},
			"mail.client.test. A": {"mail.client.test. 300 IN A 127.0.0.1"},
		},
		host: "mail.client.test", under: "mail.client.test [127.0.0.1]", cname: "mail.client.test", cptr: "mail.client.test", resolve: "OK",
	}, {
		name: "forged",
		zone: dnstest.Zone{
			loopbackPTR:    {"1.0.0.127.in-addr.arpa. 300 IN PTR bank.test."},
			"bank.test. A": {"bank.test. 300 IN A 192.0.2.1"},
		},
		host: "[127.0.0.1]", under: "bank.test [127.0.0.1] (may be forged)", cname: "[127.0.0.1]", cptr: "bank.test", resolve: "FORGED",
	}, {
		name: "no PTR",
		zone: dnstest.Zone{},
		host: "[127.0.0.1]", under: "[127.0.0.1] [127.0.0.1]", cname: "[127.0.0.1]", cptr: "[127.0.0.1]", resolve: "FAIL",
	}} {
		t.Run(tt.name, func(t *testing.T) {
			m := &connectMilter{}
			lookup, _ := withHostLookup(t, tt.zone, 2*time.Second)
			addMilter := withMilter(startMilter(t, m), "tempfail")
			ts := newTestServer(t, func(c *config.Config) { lookup(c); addMilter(c) })
			c := dial(t, ts.addr(0))
			c.greet()
			if got := c.sendMessage("a@client.test", []string{"u@example.test"}, milterMsg); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("DATA -> %q", got)
			}
			c.expect("QUIT", "221")
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.host != tt.host {
				t.Errorf("connect event host %q, want %q", m.host, tt.host)
			}
			for k, want := range map[string]string{"_": tt.under, "{client_name}": tt.cname, "{client_ptr}": tt.cptr, "{client_resolve}": tt.resolve} {
				if got := m.macros[k]; got != want {
					t.Errorf("macro %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
