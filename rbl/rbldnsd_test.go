package rbl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"mxgate/internal/peertest"
)

// startRbldnsd runs the real rbldnsd through scripts/peers.sh until the
// test ends and returns its address. rbldnsd binds a UDP port.
func startRbldnsd(tb testing.TB) string {
	tb.Helper()
	peertest.Require(tb, "rbldnsd", "rbldnsd")
	return peertest.Start(tb, "rbldnsd", "", peertest.FreePort(tb, true), rbldnsdZones...)
}

// The zones of testdata/rbl as rbldnsd serves them.
var rbldnsdZones = []string{
	"bl.test:ip4set:testdata/rbl/bl4.zone",
	"bl.test:ip6trie:testdata/rbl/bl6.zone",
	"xbl.test:ip4set:testdata/rbl/xbl.zone",
	"wl.test:ip4set:testdata/rbl/wl.zone",
	"dbl.test:dnset:testdata/rbl/dbl.zone",
	"err.test:ip4set:testdata/rbl/err.zone",
}

// rejectScore is the score at which the tests' configuration refuses.
const rejectScore = 5

var rbldnsdLists = []List{
	{Zone: "bl.test", Kind: KindIP, Weight: 3},
	{Zone: "xbl.test", Kind: KindIP, Match: []string{"127.0.0.4-127.0.0.7"}, Weight: 2},
	{Zone: "wl.test", Kind: KindIP, Match: []string{"&0.0.0.2"}, Weight: -5},
	{Zone: "err.test", Kind: KindIP, Weight: 10},
	{Zone: "dbl.test", Kind: KindSenderDomain, Weight: 4},
	{Zone: "dbl.test", Kind: KindHELO, Weight: 1},
}

func TestRbldnsd(t *testing.T) {
	addr := startRbldnsd(t)
	var mu sync.Mutex
	var panics []string
	c := newChecker(t, Options{Resolvers: []string{addr}, Lists: rbldnsdLists,
		Panic: func(s string) { mu.Lock(); panics = append(panics, s); mu.Unlock() }})
	tests := []struct {
		name    string
		ip      string // looked up in the "ip" lists
		sender  string // looked up in the "sender_domain" lists
		helo    string // looked up in the "helo" lists
		want    string
		reject  bool
		strong  string // zone named in the rejection
		paniced string
	}{
		{name: "not listed", ip: "127.0.0.1", sender: "ham.test", helo: "mail.ham.test", want: "score 0\n"},
		{name: "rfc 5782 test entry", ip: "127.0.0.2", want: "score 0\n" +
			"hit bl.test 127.0.0.2 [127.0.0.2] w3 \"Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.2\"\n" +
			"hit xbl.test 127.0.0.2 [127.0.0.4] w2 \"Exploited host 127.0.0.2 in xbl.test\"\n" +
			"hit wl.test 127.0.0.2 [127.0.10.2] w-5 \"Allow-listed in wl.test: 127.0.0.2\"\n"},
		{name: "weighted sum crosses the threshold", ip: "198.51.100.20", want: "score 5\n" +
			"hit bl.test 198.51.100.20 [127.0.0.2] w3 \"Listed in bl.test, see http://bl.test/lookup?ip=198.51.100.20\"\n" +
			"hit xbl.test 198.51.100.20 [127.0.0.4] w2 \"Exploited host 198.51.100.20 in xbl.test\"\n",
			reject: true, strong: "bl.test"},
		{name: "allow-listed", ip: "198.51.100.10", want: "score -2\n" +
			"hit bl.test 198.51.100.10 [127.0.0.2] w3 \"Listed in bl.test, see http://bl.test/lookup?ip=198.51.100.10\"\n" +
			"hit wl.test 198.51.100.10 [127.0.10.2] w-5 \"Allow-listed in wl.test: 198.51.100.10\"\n"},
		{name: "cidr entry", ip: "192.0.2.9", want: "score 3\n" +
			"hit bl.test 192.0.2.9 [127.0.0.4] w3 \"CIDR listed in bl.test: 192.0.2.9\"\n"},
		{name: "ipv4-mapped", ip: "::ffff:192.0.2.200", want: "score 3\n" +
			"hit bl.test 192.0.2.200 [127.0.0.4] w3 \"CIDR listed in bl.test: 192.0.2.200\"\n"},
		{name: "ipv6 entry", ip: "2001:db8:bad::25", want: "score 3\n" +
			"hit bl.test 2001:db8:bad::25 [127.0.0.2] w3 \"IPv6 listed in bl.test: 2001:db8:bad::25\"\n"},
		{name: "ipv6 not listed", ip: "2001:db8:900d::25", want: "score 0\n"},
		{name: "rhsbl sender", sender: "Spam-Domain.test", want: "score 4\n" +
			"hit dbl.test spam-domain.test [127.0.1.2] w4 \"Spammer domain spam-domain.test listed in dbl.test\"\n"},
		// rbldnsd puts the matching entry, not the name asked, for a
		// wildcard's $.
		{name: "rhsbl subdomain helo", helo: "mx1.spam-domain.test", want: "score 1\n" +
			"hit dbl.test mx1.spam-domain.test [127.0.1.2] w1 \"Spammer domain spam-domain.test listed in dbl.test\"\n"},
		{name: "ip and sender add up", ip: "192.0.2.9", sender: "spam-domain.test", helo: "spam-domain.test", want: "score 8\n" +
			"hit bl.test 192.0.2.9 [127.0.0.4] w3 \"CIDR listed in bl.test: 192.0.2.9\"\n" +
			"hit dbl.test spam-domain.test [127.0.1.2] w4 \"Spammer domain spam-domain.test listed in dbl.test\"\n" +
			"hit dbl.test spam-domain.test [127.0.1.2] w1 \"Spammer domain spam-domain.test listed in dbl.test\"\n",
			reject: true, strong: "dbl.test"},
		{name: "error code", ip: "203.0.113.5", want: "score 0\n",
			paniced: "DNS list lookup for 203.0.113.5 at err.test returned 127.255.255.254; not a listing (rate limited or public resolver?)"},
		// Cached now, and within the interval: no second report.
		{name: "error code again", ip: "203.0.113.5", want: "score 0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			panics = nil
			mu.Unlock()
			ctx := context.Background()
			var ps []*Pending
			if tt.ip != "" {
				ps = append(ps, c.StartIP(ctx, netip.MustParseAddr(tt.ip)))
			}
			if tt.sender != "" {
				ps = append(ps, c.StartDomain(ctx, KindSenderDomain, tt.sender))
			}
			if tt.helo != "" {
				ps = append(ps, c.StartDomain(ctx, KindHELO, tt.helo))
			}
			var rs []Result
			for _, p := range ps {
				rs = append(rs, wait(t, p))
			}
			r := Merge(rs...)
			if got := render(r); got != tt.want {
				t.Errorf("got:\n%swant:\n%s", got, tt.want)
			}
			if (r.Score >= rejectScore) != tt.reject {
				t.Errorf("score %d: reject %v, want %v", r.Score, r.Score >= rejectScore, tt.reject)
			}
			if h, ok := r.Strongest(); tt.reject && (!ok || h.Zone != tt.strong) {
				t.Errorf("Strongest() = %s, %v; want %s", h.Zone, ok, tt.strong)
			}
			mu.Lock()
			got := strings.Join(panics, "|")
			mu.Unlock()
			if got != tt.paniced {
				t.Errorf("panic log %q, want %q", got, tt.paniced)
			}
		})
	}
}

// BenchmarkLookup4Zones measures what a session waits at RCPT with four
// zones (three IP lists at connect, one RHSBL at MAIL FROM) against
// rbldnsd on loopback: every answer new (uncached), or every answer from
// the cache.
func BenchmarkLookup4Zones(b *testing.B) {
	addr := startRbldnsd(b)
	lists := []List{
		{Zone: "bl.test", Kind: KindIP, Weight: 3},
		{Zone: "xbl.test", Kind: KindIP, Weight: 2},
		{Zone: "wl.test", Kind: KindIP, Weight: -5},
		{Zone: "dbl.test", Kind: KindSenderDomain, Weight: 4},
	}
	session := func(c *Checker, ip netip.Addr, sender string) Result {
		ctx := context.Background()
		pip := c.StartIP(ctx, ip)
		pdom := c.StartDomain(ctx, KindSenderDomain, sender)
		return Merge(pip.Wait(ctx), pdom.Wait(ctx))
	}
	b.Run("uncached", func(b *testing.B) {
		c := newChecker(b, Options{Resolvers: []string{addr}, Lists: lists})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			// A new client and sender each time: nothing is cached, and
			// most are not listed, as with real traffic.
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			if r := session(c, ip, fmt.Sprintf("d%d.example", i)); len(r.Errors) > 0 {
				b.Fatal(r.Errors)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := newChecker(b, Options{Resolvers: []string{addr}, Lists: lists})
		ip := netip.MustParseAddr("198.51.100.20") // listed twice, with TXT
		want := session(c, ip, "spam-domain.test")
		if len(want.Hits) != 3 {
			b.Fatalf("warm-up: %s", render(want))
		}
		b.ReportAllocs()
		for b.Loop() {
			if r := session(c, ip, "spam-domain.test"); r.Score != want.Score {
				b.Fatalf("score %d, want %d", r.Score, want.Score)
			}
		}
	})
}
