package rbl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

// waitGuard bounds a test's wait for a Result: a hang is a failure, not a
// stuck test run. It is far above every timeout the tests configure.
const waitGuard = 10 * time.Second

// render is a Result as the gateway's logs would show it, one line each.
func render(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "score %d\n", r.Score)
	for _, h := range r.Hits {
		fmt.Fprintf(&b, "hit %s %s %v w%d %q\n", h.Zone, h.Key, h.Values, h.Weight, h.Text)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error %s %s tempfail=%v\n", e.Zone, e.Key, e.Tempfail)
	}
	return b.String()
}

// wait is p.Wait under the guard.
func wait(t testing.TB, p *Pending) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitGuard)
	defer cancel()
	r := p.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Wait did not return within %v", waitGuard)
	}
	return r
}

// testOptions fills what config would have filled into o: its defaults
// for the values a test leaves zero.
func testOptions(o Options) Options {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.MinTTL == 0 {
		o.MinTTL = 30 * time.Second
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = time.Hour
	}
	for i, l := range o.Lists {
		if l.OnError == "" {
			o.Lists[i].OnError = "ignore"
		}
	}
	return o
}

func newChecker(t testing.TB, o Options) *Checker {
	t.Helper()
	c, err := New(testOptions(o))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQueryNames(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"192.0.2.99", "99.2.0.192.bl.test."},
		{"127.0.0.2", "2.0.0.127.bl.test."},
		{"::ffff:192.0.2.1", "1.2.0.192.bl.test."},
		{"2001:db8:1:2::3", "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test."},
	}
	for _, tt := range tests {
		if got := ipName(netip.MustParseAddr(tt.ip), "bl.test"); got != tt.want {
			t.Errorf("ipName(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

// TestQueriesSent checks the names on the wire, the IPv4-mapped and
// scoped forms, the domain normalisation, and that kinds stay apart.
func TestQueriesSent(t *testing.T) {
	srv := startZone(t, nil)
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{
		{Zone: "bl.test", Kind: KindIP, Weight: 1},
		{Zone: "dbl.test", Kind: KindSenderDomain, Weight: 1},
		{Zone: "helo.test", Kind: KindHELO, Weight: 1},
	}})
	tests := []struct {
		name  string
		start func() *Pending
		want  []string // questions sent
	}{
		{"ipv4", func() *Pending { return c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1")) },
			[]string{"1.2.0.192.bl.test. A"}},
		{"mapped", func() *Pending { return c.StartIP(context.Background(), netip.MustParseAddr("::ffff:192.0.2.2")) },
			[]string{"2.2.0.192.bl.test. A"}},
		{"ipv6 with zone", func() *Pending { return c.StartIP(context.Background(), netip.MustParseAddr("fe80::1%eth0")) },
			[]string{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.bl.test. A"}},
		{"sender", func() *Pending { return c.StartDomain(context.Background(), KindSenderDomain, "Spam-Domain.TEST.") },
			[]string{"spam-domain.test.dbl.test. A"}},
		{"helo", func() *Pending { return c.StartDomain(context.Background(), KindHELO, "mail.example") },
			[]string{"mail.example.helo.test. A"}},
		{"address literal", func() *Pending { return c.StartDomain(context.Background(), KindHELO, "[192.0.2.1]") }, nil},
		{"empty domain", func() *Pending { return c.StartDomain(context.Background(), KindSenderDomain, "") }, nil},
		{"ip kind by domain", func() *Pending { return c.StartDomain(context.Background(), KindIP, "example.test") }, nil},
		{"invalid ip", func() *Pending { return c.StartIP(context.Background(), netip.Addr{}) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Total()
			r := wait(t, tt.start())
			if got := render(r); got != "score 0\n" {
				t.Errorf("result:\n%s", got)
			}
			for _, q := range tt.want {
				if srv.Count(q) != 1 {
					t.Errorf("question %q asked %d times, want 1", q, srv.Count(q))
				}
			}
			if got := srv.Total() - before; got != len(tt.want) {
				t.Errorf("%d questions sent, want %d (%v)", got, len(tt.want), tt.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"bad address", Options{Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"127.0.0.300"}}}},
			`rbl: list bl.test: match "127.0.0.300": "127.0.0.300" is not an IPv4 address`},
		{"range backwards", Options{Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"127.0.0.9-127.0.0.2"}}}},
			`rbl: list bl.test: match "127.0.0.9-127.0.0.2": range ends before it starts`},
		{"outside 127/8", Options{Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"10.0.0.2"}}}},
			`rbl: list bl.test: match "10.0.0.2": not a listing code (must be in 127.0.0.0/8 outside 127.255.255.0/24)`},
		{"error code", Options{Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"127.0.0.2-127.255.255.254"}}}},
			`rbl: list bl.test: match "127.0.0.2-127.255.255.254": not a listing code (must be in 127.0.0.0/8 outside 127.255.255.0/24)`},
		{"zero mask", Options{Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"&0.0.0.0"}}}},
			`rbl: list bl.test: match "&0.0.0.0": bitmask 0.0.0.0 would match every answer`},
		{"ipv6 mask", Options{Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: []string{"&::4"}}}},
			`rbl: list bl.test: match "&::4": "::4" is not an IPv4 address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.o.Resolvers == nil {
				tt.o.Resolvers = []string{"127.0.0.1:53"}
			}
			_, err := New(tt.o)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

// TestMatching runs each Match form against answers from the server.
func TestMatching(t *testing.T) {
	srv := startZone(t, map[string][]string{
		"2.2.0.192.bl.test. A":   {"2.2.0.192.bl.test. 300 IN A 127.0.0.2"},
		"2.2.0.192.bl.test. TXT": {`2.2.0.192.bl.test. 300 IN TXT "listed " "192.0.2.2"`, `2.2.0.192.bl.test. 300 IN TXT "again"`},
		"6.2.0.192.bl.test. A":   {"6.2.0.192.bl.test. 300 IN A 127.0.0.6", "6.2.0.192.bl.test. 300 IN A 127.0.0.11"},
		"6.2.0.192.bl.test. TXT": {`6.2.0.192.bl.test. 300 IN TXT "bad\013\010line"`},
		"12.2.0.192.bl.test. A":  {"12.2.0.192.bl.test. 300 IN A 127.0.0.12"},
	})
	tests := []struct {
		match []string
		ip    string
		want  string
	}{
		{nil, "192.0.2.2", "score 1\nhit bl.test 192.0.2.2 [127.0.0.2] w1 \"listed 192.0.2.2; again\"\n"},
		{nil, "192.0.2.1", "score 0\n"},
		{[]string{"127.0.0.2"}, "192.0.2.2", "score 1\nhit bl.test 192.0.2.2 [127.0.0.2] w1 \"listed 192.0.2.2; again\"\n"},
		{[]string{"127.0.0.3"}, "192.0.2.2", "score 0\n"},
		{[]string{"127.0.0.4-127.0.0.11"}, "192.0.2.6", "score 1\nhit bl.test 192.0.2.6 [127.0.0.6 127.0.0.11] w1 \"bad\\\\013\\\\010line\"\n"},
		{[]string{"127.0.0.4-127.0.0.11"}, "192.0.2.12", "score 0\n"},
		{[]string{"127.0.0.3", "127.0.0.11"}, "192.0.2.6", "score 1\nhit bl.test 192.0.2.6 [127.0.0.11] w1 \"bad\\\\013\\\\010line\"\n"},
		{[]string{"&0.0.0.4"}, "192.0.2.12", "score 1\nhit bl.test 192.0.2.12 [127.0.0.12] w1 \"\"\n"},
		{[]string{"&0.0.0.4"}, "192.0.2.6", "score 1\nhit bl.test 192.0.2.6 [127.0.0.6] w1 \"bad\\\\013\\\\010line\"\n"},
		{[]string{"&0.0.0.6"}, "192.0.2.12", "score 0\n"}, // 12 = 0b1100: bit 2 unset
		{[]string{"&0.0.0.2"}, "192.0.2.2", "score 1\nhit bl.test 192.0.2.2 [127.0.0.2] w1 \"listed 192.0.2.2; again\"\n"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%s", tt.match, tt.ip), func(t *testing.T) {
			c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{{Zone: "bl.test", Kind: KindIP, Match: tt.match, Weight: 1}}})
			if got := render(wait(t, c.StartIP(context.Background(), netip.MustParseAddr(tt.ip)))); got != tt.want {
				t.Errorf("got:\n%swant:\n%s", got, tt.want)
			}
		})
	}
}

// TestAnswerCodes covers what each kind of answer means, and that only a
// hit costs a TXT question.
func TestAnswerCodes(t *testing.T) {
	srv := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		label, _, _ := strings.Cut(q.Name, ".")
		switch label {
		case "1": // listed
			if q.Qtype == dns.TypeA {
				m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.0.0.2")}
			}
		case "2":
			m.Rcode = dns.RcodeNameError
		case "3": // NODATA
		case "4":
			m.Rcode = dns.RcodeServerFailure
		case "5":
			m.Rcode = dns.RcodeRefused
		case "6": // a public resolver's answer
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.255.255.254")}
		case "7": // outside 127/8 (wildcard DNS, a hijacking resolver)
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 192.0.2.99")}
		case "8": // one good code next to an error code
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.0.0.3"), rr(t, q.Name+" 60 IN A 127.255.255.252")}
		case "9": // a CNAME and an AAAA are not listings
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN CNAME x.test."), rr(t, "x.test. 60 IN AAAA ::1")}
		}
		return m
	})
	var panics []string
	var mu sync.Mutex
	for _, onError := range []string{"", "tempfail"} {
		c := newChecker(t, Options{
			Resolvers: []string{srv.Addr},
			Lists: []List{
				{Zone: "bl.test", Kind: KindIP, Weight: 2, OnError: onError},
				{Zone: "wl.test", Kind: KindIP, Weight: -3, OnError: onError},
			},
			Panic: func(s string) { mu.Lock(); panics = append(panics, s); mu.Unlock() },
		})
		tf := onError == "tempfail"
		tests := []struct {
			ip, want, panic string
		}{
			{"192.0.2.1", "score -1\nhit bl.test 192.0.2.1 [127.0.0.2] w2 \"\"\nhit wl.test 192.0.2.1 [127.0.0.2] w-3 \"\"\n", ""},
			{"192.0.2.2", "score 0\n", ""},
			{"192.0.2.3", "score 0\n", ""},
			{"192.0.2.4", fmt.Sprintf("score 0\nerror bl.test 192.0.2.4 tempfail=%v\nerror wl.test 192.0.2.4 tempfail=%v\n", tf, tf), ""},
			{"192.0.2.5", fmt.Sprintf("score 0\nerror bl.test 192.0.2.5 tempfail=%v\nerror wl.test 192.0.2.5 tempfail=%v\n", tf, tf), ""},
			{"192.0.2.6", "score 0\n", "DNS list lookup for 192.0.2.6 at bl.test returned 127.255.255.254; not a listing (rate limited or public resolver?)|" +
				"DNS list lookup for 192.0.2.6 at wl.test returned 127.255.255.254; not a listing (rate limited or public resolver?)"},
			// Within the error interval: no second report per zone.
			{"192.0.2.7", "score 0\n", ""},
			{"192.0.2.8", "score -1\nhit bl.test 192.0.2.8 [127.0.0.3] w2 \"\"\nhit wl.test 192.0.2.8 [127.0.0.3] w-3 \"\"\n", ""},
			{"192.0.2.9", "score 0\n", ""},
		}
		for _, tt := range tests {
			t.Run(onError+"/"+tt.ip, func(t *testing.T) {
				mu.Lock()
				panics = nil
				mu.Unlock()
				r := wait(t, c.StartIP(context.Background(), netip.MustParseAddr(tt.ip)))
				if got := render(r); got != tt.want {
					t.Errorf("got:\n%swant:\n%s", got, tt.want)
				}
				if r.Tempfail() != strings.Contains(tt.want, "tempfail=true") {
					t.Errorf("Tempfail() = %v", r.Tempfail())
				}
				mu.Lock()
				// The lists answer in parallel, so in either order.
				slices.Sort(panics)
				got := strings.Join(panics, "|")
				mu.Unlock()
				if got != tt.panic {
					t.Errorf("panic log %q, want %q", got, tt.panic)
				}
			})
		}
	}
	for _, code := range []string{"SERVFAIL", "REFUSED"} {
		c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{{Zone: "bl.test", Kind: KindIP}}})
		ip := map[string]string{"SERVFAIL": "192.0.2.4", "REFUSED": "192.0.2.5"}[code]
		r := wait(t, c.StartIP(context.Background(), netip.MustParseAddr(ip)))
		want := fmt.Sprintf("DNS list lookup for %s at bl.test failed: resolver %s: answer code %s", ip, srv.Addr, code)
		if len(r.Errors) != 1 || r.Errors[0].Error() != want {
			t.Errorf("errors %v, want %q", r.Errors, want)
		}
	}
	// Only hits were asked for their TXT reason.
	for _, ip := range []string{"2", "3", "4", "6", "7", "9"} {
		if n := srv.Count(ip + ".2.0.192.bl.test. TXT"); n != 0 {
			t.Errorf("TXT of 192.0.2.%s asked %d times for no hit", ip, n)
		}
	}
	// Once per Checker: each has its own cache.
	if n := srv.Count("1.2.0.192.bl.test. TXT"); n != 2 {
		t.Errorf("TXT of the hit asked %d times, want 2 (one per Checker)", n)
	}
}

// TestErrorInterval: a report per zone again once the interval has passed.
func TestErrorInterval(t *testing.T) {
	srv := startZone(t, map[string][]string{
		"1.2.0.192.bl.test. A": {"1.2.0.192.bl.test. 60 IN A 127.255.255.255"},
	})
	var panics []string
	c := newChecker(t, Options{Resolvers: []string{srv.Addr},
		Lists: []List{{Zone: "bl.test", Kind: KindIP}},
		Panic: func(s string) { panics = append(panics, s) }})
	c.errorInterval = time.Nanosecond
	for range 2 {
		wait(t, c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1")))
		time.Sleep(time.Millisecond)
	}
	want := "DNS list lookup for 192.0.2.1 at bl.test returned 127.255.255.255; not a listing (rate limited or public resolver?)"
	if len(panics) != 2 || panics[0] != want || panics[1] != want {
		t.Errorf("panic log %q, want twice %q", panics, want)
	}
}

// TestCacheTTL checks how long each answer is kept.
func TestCacheTTL(t *testing.T) {
	srv := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		label, _, _ := strings.Cut(q.Name, ".")
		soa := func(ttl, minimum int) dns.RR {
			return rr(t, fmt.Sprintf("bl.test. %d IN SOA ns.test. h.test. 1 600 300 86400 %d", ttl, minimum))
		}
		switch label {
		case "1":
			m.Answer = []dns.RR{rr(t, q.Name+" 5 IN A 127.0.0.2")}
		case "2":
			m.Answer = []dns.RR{rr(t, q.Name+" 600 IN A 127.0.0.2"), rr(t, q.Name+" 120 IN A 127.0.0.3")}
		case "3":
			m.Answer = []dns.RR{rr(t, q.Name+" 86400 IN A 127.0.0.2")}
		case "4":
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa(900, 90)}
		case "5":
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa(45, 900)}
		case "6":
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa(300, 1)}
		case "7":
			m.Rcode = dns.RcodeNameError
		case "8": // NODATA with an SOA
			m.Ns = []dns.RR{soa(900, 200)}
		}
		if q.Qtype == dns.TypeTXT {
			m.Answer = []dns.RR{rr(t, q.Name+` 7200 IN TXT "why"`)}
		}
		return m
	})
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, MinTTL: 30 * time.Second, MaxTTL: time.Hour,
		Lists: []List{{Zone: "bl.test", Kind: KindIP}}})
	tests := []struct {
		label string
		want  time.Duration
	}{
		{"1", 30 * time.Second},  // floor
		{"2", 120 * time.Second}, // the RRset's smallest TTL
		{"3", time.Hour},         // ceiling
		{"4", 90 * time.Second},  // SOA minimum
		{"5", 45 * time.Second},  // the SOA's own TTL when lower (RFC 2308)
		{"6", 30 * time.Second},  // floor
		{"7", 30 * time.Second},  // no SOA: floor
		{"8", 200 * time.Second}, // NODATA like NXDOMAIN
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr("192.0.2." + tt.label)
		wait(t, c.StartIP(context.Background(), ip))
		name := ipName(ip, "bl.test")
		e, ok := c.cache.lru.Peek(cacheKey{name, dns.TypeA})
		if !ok {
			t.Errorf("%s: not cached", name)
			continue
		}
		if got := e.ans.ttl; got != tt.want {
			t.Errorf("%s: cached for %v, want %v", name, got, tt.want)
		}
		// A second lookup is answered from the cache.
		wait(t, c.StartIP(context.Background(), ip))
		if n := srv.Count(name + " A"); n != 1 {
			t.Errorf("%s asked %d times, want 1", name, n)
		}
	}
	// The TXT of a hit has a TTL of its own.
	e, ok := c.cache.lru.Peek(cacheKey{"1.2.0.192.bl.test.", dns.TypeTXT})
	if !ok || e.ans.ttl != time.Hour {
		t.Errorf("TXT not cached for the ceiling of 1h")
	}
}

// TestCacheExpiry: an entry past its TTL is asked again.
func TestCacheExpiry(t *testing.T) {
	cc := newCache(10, time.Hour, nil)
	k := cacheKey{"x.test.", dns.TypeA}
	now := time.Now()
	cc.put(k, answer{ttl: time.Minute}, now)
	if _, ok := cc.get(k, now.Add(59*time.Second)); !ok {
		t.Error("expired before its TTL")
	}
	if _, ok := cc.get(k, now.Add(time.Minute)); ok {
		t.Error("still cached at its TTL")
	}
	if cc.len() != 0 {
		t.Errorf("expired entry kept: %d entries", cc.len())
	}
}

// TestErrorsNotCached: a SERVFAIL is asked again next time.
func TestErrorsNotCached(t *testing.T) {
	fail := true
	var mu sync.Mutex
	srv := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		m := new(dns.Msg)
		mu.Lock()
		defer mu.Unlock()
		if fail {
			m.Rcode = dns.RcodeServerFailure
		} else if q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.0.0.2")}
		}
		return m
	})
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{{Zone: "bl.test", Kind: KindIP, Weight: 1}}})
	ip := netip.MustParseAddr("192.0.2.1")
	if got := render(wait(t, c.StartIP(context.Background(), ip))); got != "score 0\nerror bl.test 192.0.2.1 tempfail=false\n" {
		t.Errorf("with SERVFAIL:\n%s", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if got := render(wait(t, c.StartIP(context.Background(), ip))); got != "score 1\nhit bl.test 192.0.2.1 [127.0.0.2] w1 \"\"\n" {
		t.Errorf("after recovery:\n%s", got)
	}
}

// TestCacheBound: the cache holds CacheSize entries, least recently used
// out first.
func TestCacheBound(t *testing.T) {
	srv := startZone(t, nil)
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, CacheSize: 2, Lists: []List{{Zone: "bl.test", Kind: KindIP}}})
	look := func(ip string) {
		wait(t, c.StartIP(context.Background(), netip.MustParseAddr(ip)))
	}
	look("192.0.2.1")
	look("192.0.2.2")
	look("192.0.2.1") // cached; .2 is now the least recently used
	look("192.0.2.3") // evicts .2
	look("192.0.2.1") // cached
	look("192.0.2.2") // asked again
	if n := c.cache.len(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
	for ip, want := range map[string]int{"1": 1, "2": 2, "3": 1} {
		if n := srv.Count(ip + ".2.0.192.bl.test. A"); n != want {
			t.Errorf("192.0.2.%s asked %d times, want %d", ip, n, want)
		}
	}
}

// TestSingleFlight: 50 sessions from one IP at once make one A and one TXT
// question. The server holds its answer until all 50 have started, so the
// cache cannot be what spares the questions.
func TestSingleFlight(t *testing.T) {
	release := make(chan struct{})
	srv := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		<-release
		m := new(dns.Msg)
		if q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.0.0.2")}
		} else {
			m.Answer = []dns.RR{rr(t, q.Name+` 60 IN TXT "listed"`)}
		}
		return m
	})
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Timeout: waitGuard, Lists: []List{{Zone: "bl.test", Kind: KindIP, Weight: 1}}})
	const sessions = 50
	var started, done sync.WaitGroup
	results := make([]string, sessions)
	started.Add(sessions)
	done.Add(sessions)
	for i := range sessions {
		go func() {
			defer done.Done()
			p := c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1"))
			started.Done()
			results[i] = render(wait(t, p))
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
	for i, r := range results {
		if r != "score 1\nhit bl.test 192.0.2.1 [127.0.0.2] w1 \"listed\"\n" {
			t.Errorf("session %d:\n%s", i, r)
		}
	}
	if a, txt := srv.Count("1.2.0.192.bl.test. A"), srv.Count("1.2.0.192.bl.test. TXT"); a != 1 || txt != 1 {
		t.Errorf("%d A and %d TXT questions for %d sessions, want 1 and 1", a, txt, sessions)
	}
}

// blackHole is a resolver address that receives and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// TestDeadResolver: a resolver that never answers costs a session the
// timeout, not more, and the lists report errors.
func TestDeadResolver(t *testing.T) {
	dead := blackHole(t)
	c := newChecker(t, Options{Resolvers: []string{dead}, Timeout: 200 * time.Millisecond, Lists: []List{
		{Zone: "bl.test", Kind: KindIP, Weight: 5},
		{Zone: "wl.test", Kind: KindIP, Weight: -5, OnError: "tempfail"},
	}})
	p := c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1"))
	// Wait has no deadline of its own: the Pending's timeout ends it.
	done := make(chan Result, 1)
	go func() { done <- p.Wait(context.Background()) }()
	var r Result
	select {
	case r = <-done:
	case <-time.After(waitGuard):
		t.Fatalf("Wait still blocked %v after a %v timeout", waitGuard, c.timeout)
	}
	if got := render(r); got != "score 0\nerror bl.test 192.0.2.1 tempfail=false\nerror wl.test 192.0.2.1 tempfail=true\n" {
		t.Errorf("got:\n%s", got)
	}
	if !r.Tempfail() {
		t.Error("Tempfail() false with a tempfail list failing")
	}
	for _, e := range r.Errors {
		// The session's timeout and the exchange's read deadline end at
		// about the same time; either names the timeout.
		if !errors.Is(e, context.DeadlineExceeded) && !errors.Is(e, os.ErrDeadlineExceeded) {
			t.Errorf("%v: not a timeout", e)
		}
		if !strings.HasPrefix(e.Error(), "DNS list lookup for 192.0.2.1 at "+e.Zone+" failed: ") {
			t.Errorf("error text %q", e.Error())
		}
	}
	// Wait again: the same answer.
	if got := render(p.Wait(context.Background())); got != render(r) {
		t.Errorf("second Wait:\n%s", got)
	}
}

// TestResolverOrder: a failing or dead first resolver hands over to the
// next within the same timeout.
func TestResolverOrder(t *testing.T) {
	good := startZone(t, map[string][]string{
		"1.2.0.192.bl.test. A": {"1.2.0.192.bl.test. 60 IN A 127.0.0.2"},
	})
	servfail := dnstest.Start(t, func(dns.Question, bool) *dns.Msg {
		return &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}}
	})
	tests := []struct {
		name  string
		first string
	}{
		{"servfail", servfail.Addr},
		{"dead", blackHole(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChecker(t, Options{Resolvers: []string{tt.first, good.Addr}, Timeout: time.Second,
				Lists: []List{{Zone: "bl.test", Kind: KindIP, Weight: 1}}})
			if got := render(wait(t, c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1")))); got != "score 1\nhit bl.test 192.0.2.1 [127.0.0.2] w1 \"\"\n" {
				t.Errorf("got:\n%s", got)
			}
		})
	}
}

// TestTruncated: a truncated UDP answer is asked again over TCP.
func TestTruncated(t *testing.T) {
	long := strings.Repeat("x", 250)
	srv := dnstest.Start(t, func(q dns.Question, tcp bool) *dns.Msg {
		m := new(dns.Msg)
		if q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.0.0.2")}
			return m
		}
		if !tcp {
			m.Truncated = true
			return m
		}
		m.Answer = []dns.RR{rr(t, q.Name+` 60 IN TXT "`+long+`"`)}
		return m
	})
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Lists: []List{{Zone: "bl.test", Kind: KindIP, Weight: 1}}})
	r := wait(t, c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1")))
	if len(r.Hits) != 1 || r.Hits[0].Text != long {
		t.Errorf("got:\n%s", render(r))
	}
	if u, tc := srv.Count("1.2.0.192.bl.test. TXT"), srv.Count("tcp 1.2.0.192.bl.test. TXT"); u != 1 || tc != 1 {
		t.Errorf("TXT asked %d times over UDP and %d over TCP, want 1 and 1", u, tc)
	}
}

// TestWaitGivesUp: Wait's own context ends it early with what is known.
func TestWaitGivesUp(t *testing.T) {
	release := make(chan struct{})
	srv := dnstest.Start(t, func(q dns.Question, _ bool) *dns.Msg {
		if strings.HasSuffix(q.Name, "slow.test.") {
			<-release
		}
		m := new(dns.Msg)
		if q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{rr(t, q.Name+" 60 IN A 127.0.0.2")}
		}
		return m
	})
	defer close(release)
	c := newChecker(t, Options{Resolvers: []string{srv.Addr}, Timeout: waitGuard, Lists: []List{
		{Zone: "fast.test", Kind: KindIP, Weight: 1},
		{Zone: "slow.test", Kind: KindIP, Weight: 1, OnError: "tempfail"},
	}})
	p := c.StartIP(context.Background(), netip.MustParseAddr("192.0.2.1"))
	// The fast list settles first; then Wait gives up on the slow one.
	for srv.Count("1.2.0.192.fast.test. TXT") == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var r Result
	for {
		r = p.Wait(ctx)
		if len(r.Hits) == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if got := render(r); got != "score 1\nhit fast.test 192.0.2.1 [127.0.0.2] w1 \"\"\nerror slow.test 192.0.2.1 tempfail=true\n" {
		t.Errorf("got:\n%s", got)
	}
	if !errors.Is(r.Errors[0], context.Canceled) {
		t.Errorf("error %v, want context.Canceled", r.Errors[0])
	}
}

func TestResultHelpers(t *testing.T) {
	ip := Result{Score: 1, Hits: []Hit{{Zone: "bl.test", Weight: 3}, {Zone: "wl.test", Weight: -2}}}
	dom := Result{Score: 5, Hits: []Hit{{Zone: "dbl.test", Weight: 5}, {Zone: "dbl2.test", Weight: 5}},
		Errors: []ListError{{Zone: "x.test"}}}
	tests := []struct {
		name     string
		r        Result
		want     string
		strong   string
		tempfail bool
	}{
		{"empty", Merge(), "score 0\n", "", false},
		{"ip", ip, "score 1\nhit bl.test  [] w3 \"\"\nhit wl.test  [] w-2 \"\"\n", "bl.test", false},
		{"merged", Merge(ip, dom), "score 6\nhit bl.test  [] w3 \"\"\nhit wl.test  [] w-2 \"\"\nhit dbl.test  [] w5 \"\"\nhit dbl2.test  [] w5 \"\"\nerror x.test  tempfail=false\n", "dbl.test", false},
		{"allow only", Result{Score: -2, Hits: []Hit{{Zone: "wl.test", Weight: -2}}}, "score -2\nhit wl.test  [] w-2 \"\"\n", "", false},
		{"tempfail", Result{Errors: []ListError{{Zone: "a.test"}, {Zone: "b.test", Tempfail: true}}}, "score 0\nerror a.test  tempfail=false\nerror b.test  tempfail=true\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(tt.r); got != tt.want {
				t.Errorf("got:\n%swant:\n%s", got, tt.want)
			}
			h, ok := tt.r.Strongest()
			if ok != (tt.strong != "") || h.Zone != tt.strong {
				t.Errorf("Strongest() = %q, %v; want %q", h.Zone, ok, tt.strong)
			}
			if tt.r.Tempfail() != tt.tempfail {
				t.Errorf("Tempfail() = %v", !tt.tempfail)
			}
		})
	}
}
