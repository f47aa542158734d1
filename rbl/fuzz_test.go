package rbl

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

// FuzzAnswer feeds arbitrary bytes as a DNS answer through what a lookup
// does with one off the network: unpack, interpret, evaluate. It must never
// panic, and what it keeps must stay within the promised bounds.
func FuzzAnswer(f *testing.F) {
	for _, seed := range [][]string{
		{"1.2.0.192.bl.test. 60 IN A 127.0.0.2"},
		{"1.2.0.192.bl.test. 60 IN A 127.255.255.254", "1.2.0.192.bl.test. 60 IN A 10.0.0.1"},
		{`1.2.0.192.bl.test. 60 IN TXT "Listed, see http://bl.test/?ip=192.0.2.1" "more"`},
	} {
		f.Add(dnstest.Answer(f, "1.2.0.192.bl.test.", dns.TypeA, seed...))
	}
	c, err := New(testOptions(Options{Resolvers: []string{"127.0.0.1:53"}, Panic: func(string) {},
		Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"127.0.0.2-127.0.0.11", "&0.0.0.4"}, Weight: 1}}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		name := "1.2.0.192.bl.test."
		if len(m.Question) > 0 {
			// Let answers to any question through the question check.
			name = m.Question[0].Name
		}
		for _, qtype := range []uint16{dns.TypeA, dns.TypeTXT} {
			a, err := c.interpret(m, name, qtype)
			if err != nil {
				continue
			}
			if a.ttl < c.minTTL || a.ttl > c.maxTTL {
				t.Errorf("TTL %v outside [%v, %v]", a.ttl, c.minTTL, c.maxTTL)
			}
			if len(a.text) > maxText {
				t.Errorf("text of %d bytes", len(a.text))
			}
			for _, ch := range []byte(a.text) {
				if ch < 0x20 || ch > 0x7e {
					t.Fatalf("unprintable %#x in text %q", ch, a.text)
				}
			}
			s := &slot{list: &c.lists[0], key: "192.0.2.1", name: name}
			for _, v := range c.evaluate(s, a.addrs) {
				inRange := v.Compare(netip.MustParseAddr("127.0.0.2")) >= 0 && v.Compare(netip.MustParseAddr("127.0.0.11")) <= 0
				masked := v.Is4() && v.As4()[3]&4 == 4
				if !v.Is4() || v.As4()[0] != 127 || v.Compare(netip.MustParseAddr("127.255.255.0")) >= 0 || !(inRange || masked) {
					t.Errorf("%v counted as a listing", v)
				}
			}
		}
	})
}
