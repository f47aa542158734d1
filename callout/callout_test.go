package callout

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf collects Options.Log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) log(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *logBuf) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// testOptions fills what config would have filled into o: its defaults
// for the values a test leaves zero.
func testOptions(o Options) Options {
	if o.Hostname == "" {
		o.Hostname = "gw.example.net"
	}
	if o.Port == 0 {
		o.Port = 25
	}
	for p, def := range map[*time.Duration]time.Duration{
		&o.Timeout: 10 * time.Second, &o.Deadline: 30 * time.Second,
		&o.PositiveTTL: 24 * time.Hour, &o.NegativeTTL: 2 * time.Hour,
	} {
		if *p == 0 {
			*p = def
		}
	}
	if o.CacheSize == 0 {
		o.CacheSize = 100000
	}
	if o.PerHostConcurrency == 0 {
		o.PerHostConcurrency = 4
	}
	if o.PerHostRate == 0 {
		o.PerHostRate = 5
	}
	return o
}

func newChecker(t testing.TB, dnsAddr string, port int, set func(*Options)) (*Checker, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	o := Options{
		Hostname:    "gw.example.net",
		Resolvers:   []string{dnsAddr},
		Port:        port,
		Timeout:     5 * time.Second,
		Deadline:    10 * time.Second,
		PerHostRate: 1e6,
		Log:         lb.log,
	}
	if set != nil {
		set(&o)
	}
	c, err := New(testOptions(o))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, lb
}

func check(t testing.TB, c *Checker, sender string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Start(ctx, sender).Wait(ctx)
}

const mxHost = "mx.known.test [127.0.0.1]"

func TestProbe(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	users := []string{"alice@known.test", "alice@nomx.test", "alice@failover.test", "postmaster@known.test", "alice@pmless.test"}
	randomRcpt := `gw\.example\.net-\d+-testing@`
	tests := []struct {
		name      string
		server    kind
		port      func(t *testing.T) int // instead of a server
		set       func(*Options)
		sender    string
		want      Result
		wantReply string   // regexp instead of want.Reply when set
		rcpts     []string // regexps, in order
		log       []string // regexps, in order
		again     bool     // a second Start is answered from the cache
	}{
		{
			name: "known sender accepted", sender: "alice@known.test",
			want:  Result{Verdict: Accept, Host: mxHost},
			rcpts: []string{"alice@known.test"},
			log:   []string{`^callout for <alice@known.test> to mx.known.test \[127.0.0.1\]: accepted$`},
			again: true,
		},
		{
			name: "unknown sender refused with the remote reply", sender: "bob@known.test",
			want:  Result{Verdict: Reject, Reply: "550 5.1.1 <bob@known.test>: no such user", Host: mxHost},
			rcpts: []string{"bob@known.test"},
			log:   []string{`^callout for <bob@known.test> to mx.known.test \[127.0.0.1\]: 550 5.1.1 <bob@known.test>: no such user$`},
			again: true,
		},
		{
			name: "no MX falls back to the domain's address", sender: "alice@nomx.test",
			want:  Result{Verdict: Accept, Host: "nomx.test [127.0.0.1]"},
			rcpts: []string{"alice@nomx.test"},
			again: true,
		},
		{
			name: "MX host without address skipped for the next preference", sender: "alice@failover.test",
			want:  Result{Verdict: Accept, Host: mxHost},
			rcpts: []string{"alice@failover.test"},
			again: true,
		},
		{
			name: "null MX refused without connecting", sender: "x@null.test",
			want:  Result{Verdict: Reject, Reply: "domain accepts no mail (null MX)"},
			log:   []string{`^callout for <x@null.test>: domain accepts no mail \(null MX\)$`},
			again: true,
		},
		{
			name: "no such domain", sender: "x@nxdomain.test",
			want:  Result{Verdict: Reject, Reply: "no such domain: nxdomain.test"},
			again: true,
		},
		{
			name: "no MX and no address", sender: "x@nothing.test",
			want:  Result{Verdict: Reject, Reply: "no mail servers: nothing.test has no MX and no address"},
			again: true,
		},
		{
			name: "DNS failure is unknown and not cached", sender: "x@servfail.test",
			wantReply: `^DNS MX lookup for servfail.test: resolver 127.0.0.1:\d+: answer code SERVFAIL$`,
		},
		{
			name: "random refused, then the sender asked on the same connection", sender: "alice@known.test",
			set:   func(o *Options) { o.Random = true },
			want:  Result{Verdict: Accept, Host: mxHost},
			rcpts: []string{randomRcpt + `known\.test$`, `^alice@known\.test$`},
			again: true,
		},
		{
			name: "random accepted: domain accepts everything", sender: "anyone@known.test", server: acceptAll,
			set:       func(o *Options) { o.Random = true },
			want:      Result{Verdict: Accept, Host: mxHost},
			wantReply: `^random address <` + randomRcpt + `known.test> accepted: the domain accepts any local part, <anyone@known.test> is not proven$`,
			rcpts:     []string{randomRcpt + `known\.test$`},
			again:     true,
		},
		{
			name: "postmaster accepted", sender: "alice@known.test",
			set:   func(o *Options) { o.Postmaster = true },
			want:  Result{Verdict: Accept, Host: mxHost},
			rcpts: []string{`^alice@known\.test$`, `^postmaster@known\.test$`},
			again: true,
		},
		{
			name: "postmaster refused", sender: "alice@pmless.test",
			set:   func(o *Options) { o.Postmaster = true },
			want:  Result{Verdict: Reject, Host: mxHost, Reply: "domain does not accept postmaster: 550 5.1.1 <postmaster@pmless.test>: no such user"},
			rcpts: []string{`^alice@pmless\.test$`, `^postmaster@pmless\.test$`},
			again: true,
		},
		{
			name: "MAIL FROM:<> refused: the domain refuses bounces", sender: "alice@known.test", server: noBounces,
			want:  Result{Verdict: Reject, Host: mxHost, Reply: "550 5.7.1 we do not accept bounces"},
			again: true,
		},
		{
			name: "4xx is unknown and not cached", sender: "alice@known.test", server: tempfail,
			want:  Result{Verdict: Unknown, Host: mxHost, Reply: "451 4.3.0 try again later"},
			rcpts: []string{`^alice@known\.test$`},
		},
		{
			name: "connection refused on every host: unreachable, cached", sender: "alice@known.test",
			port:      func(t *testing.T) int { return closedPort(t) },
			wantReply: `^all MX hosts unreachable \(mx.known.test \[127.0.0.1\]: connect: dial tcp 127.0.0.1:\d+: connect: connection refused\)$`,
			again:     true,
		},
		{
			name: "silent server: per-command timeout", sender: "alice@known.test",
			port:      func(t *testing.T) int { return startSilent(t) },
			set:       func(o *Options) { o.Timeout = 200 * time.Millisecond },
			wantReply: `^all MX hosts timed out \(mx.known.test \[127.0.0.1\]: greeting/EHLO: no reply within 200ms\)$`,
			again:     true,
		},
		{
			name: "silent server: total deadline", sender: "alice@known.test",
			port:      func(t *testing.T) int { return startSilent(t) },
			set:       func(o *Options) { o.Deadline = 300 * time.Millisecond },
			wantReply: `^callout deadline 300ms reached \(mx.known.test \[127.0.0.1\]: greeting/EHLO: callout deadline reached\)$`,
			again:     true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srv *mta
			var port int
			if tc.port != nil {
				port = tc.port(t)
			} else {
				srv = startMTA(t, tc.server, users...)
				port = srv.port
			}
			c, lb := newChecker(t, dnsAddr, port, tc.set)
			got := check(t, c, tc.sender)
			want := tc.want
			if tc.wantReply != "" {
				if !regexp.MustCompile(tc.wantReply).MatchString(got.Reply) {
					t.Errorf("Reply = %q, want match for %s", got.Reply, tc.wantReply)
				}
				want.Reply = got.Reply
				if want.Host == "" {
					want.Host = got.Host
				}
			}
			if got != want {
				t.Errorf("Result = %+v, want %+v", got, want)
			}
			var rcpts []string
			if srv != nil {
				rcpts, _ = srv.counts()
				srv.mu.Lock()
				if srv.data != 0 {
					t.Errorf("the probe sent DATA %d times", srv.data)
				}
				if len(srv.helos) > 0 && srv.helos[0] != "gw.example.net" {
					t.Errorf("EHLO %q, want gw.example.net", srv.helos[0])
				}
				srv.mu.Unlock()
			}
			matchAll(t, "RCPT", rcpts, tc.rcpts)
			if tc.log != nil {
				matchAll(t, "log", lb.all(), tc.log)
			} else if len(lb.all()) == 0 {
				t.Error("the probe was not logged")
			}

			again := check(t, c, tc.sender)
			if again.Cached != tc.again {
				t.Errorf("second callout Cached = %v, want %v (%+v)", again.Cached, tc.again, again)
			}
			if again.Verdict != got.Verdict || again.Reply != got.Reply {
				t.Errorf("second callout = %+v, first %+v", again, got)
			}
			if srv != nil {
				rcpts2, _ := srv.counts()
				wantN := len(rcpts)
				if !tc.again {
					wantN *= 2
				}
				if len(rcpts2) != wantN {
					t.Errorf("after the second callout the server saw %d RCPTs, want %d: %q", len(rcpts2), wantN, rcpts2)
				}
			}
		})
	}
}

func matchAll(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %q, want %d matching %q", what, got, len(want), want)
		return
	}
	for i := range want {
		if !regexp.MustCompile(want[i]).MatchString(got[i]) {
			t.Errorf("%s[%d] = %q, want match for %s", what, i, got[i], want[i])
		}
	}
}

// A domain record speaks for all its addresses: after one sender of an
// accept-all domain, another is answered without connecting; after an
// unreachable probe, too.
func TestDomainRecords(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, acceptAll)
	c, _ := newChecker(t, dnsAddr, srv.port, func(o *Options) { o.Random = true })
	first := check(t, c, "a@known.test")
	second := check(t, c, "b@known.test")
	other := check(t, c, "c@other.test")
	if first.Verdict != Accept || !second.Cached || second.Verdict != Accept || second.Reply != first.Reply {
		t.Errorf("accept-all domain: first %+v, second %+v", first, second)
	}
	if other.Cached || other.Verdict != Accept {
		t.Errorf("another domain answered from the first one's record: %+v", other)
	}
	if rcpts, sessions := srv.counts(); sessions != 2 || len(rcpts) != 2 {
		t.Errorf("server saw %d sessions, RCPTs %q; want 2 and 2 (one random per domain)", sessions, rcpts)
	}
}

func TestPersistentCache(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, strict, "alice@known.test")
	file := filepath.Join(t.TempDir(), "db", "sub", "callout.db")
	open := func() *Checker {
		c, err := New(testOptions(Options{Hostname: "gw.example.net", Resolvers: []string{dnsAddr}, Port: srv.port, CacheFile: file, PerHostRate: 1e6}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open()
	first := []Result{check(t, c, "alice@known.test"), check(t, c, "bob@known.test")}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = open()
	defer c.Close()
	for i, sender := range []string{"alice@known.test", "bob@known.test"} {
		got := check(t, c, sender)
		want := first[i]
		want.Cached = true
		if got != want {
			t.Errorf("%s after restart = %+v, want %+v", sender, got, want)
		}
	}
	if rcpts, _ := srv.counts(); len(rcpts) != 2 {
		t.Errorf("server saw RCPTs %q, want only the two before the restart", rcpts)
	}
}

func TestCacheBound(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, acceptAll)
	file := filepath.Join(t.TempDir(), "callout.db")
	open := func() *Checker {
		c, err := New(testOptions(Options{Hostname: "gw.example.net", Resolvers: []string{dnsAddr}, Port: srv.port, CacheFile: file, CacheSize: 2, PerHostRate: 1e6}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open()
	for _, s := range []string{"a@known.test", "b@known.test", "c@known.test"} {
		check(t, c, s)
	}
	c.Close()
	c = open()
	defer c.Close()
	for _, tc := range []struct {
		sender string
		cached bool
	}{{"c@known.test", true}, {"b@known.test", true}, {"a@known.test", false}} {
		if got := check(t, c, tc.sender); got.Cached != tc.cached {
			t.Errorf("%s: Cached = %v, want %v (the oldest is evicted)", tc.sender, got.Cached, tc.cached)
		}
	}
}

// 50 sessions asking about one sender while its probe is in flight make
// exactly one probe and all see its answer.
func TestSingleFlight(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, strict, "alice@known.test")
	srv.gate = make(chan struct{})
	c, _ := newChecker(t, dnsAddr, srv.port, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pend := make([]*Pending, 50)
	var wg sync.WaitGroup
	for i := range pend {
		wg.Go(func() { pend[i] = c.Start(ctx, "alice@known.test") })
	}
	wg.Wait()
	close(srv.gate) // every Start happened before the probe could finish
	for i, p := range pend {
		if got := p.Wait(ctx); got.Verdict != Accept || got.Cached {
			t.Errorf("session %d: %+v, want the probe's Accept", i, got)
		}
	}
	if rcpts, sessions := srv.counts(); len(rcpts) != 1 || sessions != 1 {
		t.Errorf("server saw %d sessions and RCPTs %q, want exactly one", sessions, rcpts)
	}
}

func TestPerHostConcurrency(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, acceptAll)
	// Answers take a while, so probes would overlap beyond the limit if
	// the limit did not hold them back.
	srv.hold = 20 * time.Millisecond
	c, _ := newChecker(t, dnsAddr, srv.port, func(o *Options) { o.PerHostConcurrency = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pend []*Pending
	for i := range 12 {
		pend = append(pend, c.Start(ctx, fmt.Sprintf("u%d@known.test", i)))
	}
	for i, p := range pend {
		if got := p.Wait(ctx); got.Verdict != Accept {
			t.Errorf("u%d: %+v", i, got)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.maxActive != 2 || len(srv.rcpts) != 12 {
		t.Errorf("server answered %d RCPTs at once (want the limit, 2) and %d in all (want 12)", srv.maxActive, len(srv.rcpts))
	}
}

func TestHostLimits(t *testing.T) {
	h := newHostLimits(2, 1e6, 5)
	ip := netipAddr(t, "192.0.2.1")
	bg := context.Background()
	r1, err1 := h.acquire(bg, ip)
	r2, err2 := h.acquire(bg, ip)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	done, cancel := context.WithCancel(bg)
	cancel()
	if _, err := h.acquire(done, ip); err == nil || !strings.Contains(err.Error(), "2 probes already at 192.0.2.1") {
		t.Errorf("third probe at once: err = %v", err)
	}
	if r, err := h.acquire(bg, netipAddr(t, "192.0.2.2")); err != nil {
		t.Errorf("another host is not limited by the first: %v", err)
	} else {
		r()
	}
	r1()
	r3, err := h.acquire(done, ip)
	if err != nil {
		t.Errorf("after a release: %v", err)
	} else {
		r3()
	}
	r2()
}

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	l := newHostLimits(0, 2, 5).newHostLimit()
	reserve := func(at time.Time) time.Duration { return l.lim.ReserveN(at, 1).DelayFrom(at) }
	var got []time.Duration
	for range 7 {
		got = append(got, reserve(t0))
	}
	got = append(got, reserve(t0.Add(2*time.Second)))
	want := []time.Duration{0, 0, 0, 0, 0, 500 * time.Millisecond, time.Second, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
}

// With the bucket empty a probe is held back at once, without waiting out
// the deadline and without marking the domain unreachable.
func TestRateLimit(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, acceptAll)
	c, _ := newChecker(t, dnsAddr, srv.port, func(o *Options) { o.PerHostRate = 0.001 })
	for i := range PerHostBurst {
		if got := check(t, c, fmt.Sprintf("u%d@known.test", i)); got.Verdict != Accept {
			t.Fatalf("probe %d within the burst: %+v", i, got)
		}
	}
	got := check(t, c, "late@known.test")
	want := `^callout held back: mx.known.test \[127.0.0.1\]: rate limit for 127.0.0.1 \(0.001/s, burst 20\): next probe in 16m40s$`
	if got.Verdict != Unknown || !regexp.MustCompile(want).MatchString(got.Reply) {
		t.Errorf("probe over the rate = %+v, want Unknown matching %s", got, want)
	}
	if again := check(t, c, "late2@known.test"); again.Cached {
		t.Errorf("rate limit cached as a domain record: %+v", again)
	}
	if rcpts, _ := srv.counts(); len(rcpts) != PerHostBurst {
		t.Errorf("server saw %d RCPTs, want %d", len(rcpts), PerHostBurst)
	}
}

func TestStartRefusesUnprobeableSenders(t *testing.T) {
	c, _ := newChecker(t, "127.0.0.1:1", 25, nil)
	for _, tc := range []struct{ sender, reply string }{
		{"nodomain", "sender <nodomain> is not local@domain"},
		{"a@", "sender <a@> is not local@domain"},
		{"a@[192.0.2.1]", `sender <a@[192.0.2.1]>: "[192.0.2.1]" is not a domain that has mail servers`},
		{"a@localhost", `sender <a@localhost>: "localhost" is not a domain that has mail servers`},
	} {
		if got := check(t, c, tc.sender); got != (Result{Verdict: Reject, Reply: tc.reply}) {
			t.Errorf("%q: %+v, want Reject %q", tc.sender, got, tc.reply)
		}
	}
}

func TestQuoteLocal(t *testing.T) {
	for in, want := range map[string]string{
		"alice":        "alice",
		"a.b+tag":      "a.b+tag",
		"john doe":     `"john doe"`,
		`we"ird\`:      `"we\"ird\\"`,
		".dot":         `".dot"`,
		"a..b":         `"a..b"`,
		"o'brien{x}~!": "o'brien{x}~!",
	} {
		if got := quoteLocal(in); got != want {
			t.Errorf("quoteLocal(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestNewWithoutResolvers(t *testing.T) {
	if _, err := New(testOptions(Options{})); err == nil || err.Error() != "callout: dnsclient: no resolvers" {
		t.Errorf("New without resolvers = %v", err)
	}
}
