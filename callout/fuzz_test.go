package callout

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

// FuzzInterpretMX feeds DNS answers off the network to the MX and address
// interpretation: whatever arrives, the hosts come out as clean names in
// preference order, never a panic.
func FuzzInterpretMX(f *testing.F) {
	for _, rrs := range [][]string{
		{"d.test. 60 IN MX 10 mx.d.test.", "d.test. 60 IN MX 5 mx0.d.test."},
		{"d.test. 60 IN MX 0 ."},
		{"d.test. 60 IN MX 0 .", "d.test. 60 IN MX 10 mx.d.test."},
		{"d.test. 60 IN A 127.0.0.1", "d.test. 60 IN AAAA ::1"},
	} {
		f.Add(dnstest.Answer(f, "d.test.", dns.TypeMX, rrs...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		hosts, nullMX, nx := interpretMX(m)
		if (nullMX || nx) && len(hosts) > 0 {
			t.Errorf("null MX %v / NXDOMAIN %v with hosts %v", nullMX, nx, hosts)
		}
		if len(hosts) > maxMailHosts {
			t.Errorf("%d hosts, more than %d", len(hosts), maxMailHosts)
		}
		for i, h := range hosts {
			if h.name == "" || strings.HasSuffix(h.name, ".") || h.name != strings.ToLower(h.name) || strings.ContainsAny(h.name, " \\\"()[]<>;") {
				t.Errorf("host %q is not a clean name", h.name)
			}
			if i > 0 && hosts[i-1].pref > h.pref {
				t.Errorf("hosts out of preference order: %v", hosts)
			}
		}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			for _, ip := range interpretAddrs(m, qt) {
				if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || (qt == dns.TypeA && !ip.Is4()) {
					t.Errorf("%s answer gave address %v", dns.TypeToString[qt], ip)
				}
			}
		}
	})
}

// FuzzTalk plays any server byte stream to the SMTP conversation: it ends
// with an outcome whose reply is one bounded printable line, and Reject or
// Accept only on a reply the server really gave.
func FuzzTalk(f *testing.F) {
	for _, s := range []string{
		"220 mx ESMTP\r\n250-mx\r\n250 PIPELINING\r\n250 2.1.0 Ok\r\n550 5.1.1 <a@d.test>: no such user\r\n221 Bye\r\n",
		"220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n221 bye\r\n",
		"220 mx\r\n250 mx\r\n250 ok\r\n550 no\r\n250 reset\r\n250 mx\r\n250 ok\r\n250 ok\r\n221 bye\r\n",
		"554 go away\r\n",
		"220 mx\r\n250 mx\r\n550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
		"220 mx\r\n250 mx\r\n250 ok\r\n451 4.3.0 later\r\n",
		"garbage\r\n",
	} {
		f.Add([]byte(s), true, true)
	}
	f.Fuzz(func(t *testing.T, script []byte, random, postmaster bool) {
		c := &Checker{o: Options{Hostname: "gw.test", Timeout: time.Second, Deadline: time.Second, PositiveTTL: time.Hour, NegativeTTL: time.Hour}}
		client, server := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, server) }()
		go func() {
			_, _ = server.Write(script)
			server.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		a := address{key: "a@d.test", rcpt: "a@d.test", domain: "d.test"}
		out := c.talk(ctx, client, "mx.d.test [192.0.2.1]", a, &probeState{random: random, postmaster: postmaster})
		client.Close()
		r := out.res.Reply
		if len(r) > maxReply || strings.ContainsFunc(r, func(ch rune) bool { return ch < 0x20 || ch > 0x7e }) {
			t.Errorf("reply %q is not one bounded printable line", r)
		}
		if !out.answered && out.res.Verdict != Unknown {
			t.Errorf("verdict %v from a host that never answered", out.res.Verdict)
		}
		if out.res.Verdict == Reject && !strings.Contains(r, "5") {
			t.Errorf("Reject without a 5xx reply: %q", r)
		}
	})
}
