package hostlookup

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

// FuzzPTRAnswer feeds arbitrary bytes as a PTR answer through what a
// lookup does with one off the network: unpack, take the PTR names, keep
// those that may be shown. It must never panic, and a name it keeps must
// be safe in a Received header, a log line and a milter macro.
func FuzzPTRAnswer(f *testing.F) {
	for _, seed := range [][]string{
		{"1.2.0.192.in-addr.arpa. 300 IN PTR mail.client.test."},
		{"1.2.0.192.in-addr.arpa. 300 IN PTR a.test.", "1.2.0.192.in-addr.arpa. 300 IN PTR B.TEST."},
		{`1.2.0.192.in-addr.arpa. 300 IN PTR evil\032\(name\).test.`},
		{"1.2.0.192.in-addr.arpa. 300 IN CNAME 1.0/25.2.0.192.in-addr.arpa.", "1.0/25.2.0.192.in-addr.arpa. 300 IN PTR classless.test."},
	} {
		f.Add(dnstest.Answer(f, "1.2.0.192.in-addr.arpa.", dns.TypePTR, seed...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		for _, n := range ptrNames(m) {
			name, ok := nameOK(n)
			if !ok {
				continue
			}
			if name == "" || len(name) > 253 || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
				t.Errorf("kept %q as %q", n, name)
			}
			for _, c := range []byte(name) {
				if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
					t.Fatalf("kept %q as %q: byte %#x", n, name, c)
				}
			}
		}
	})
}
