package hostlookup

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

// zone is the DNS the tests' clients are looked up in.
var zone = dnstest.Zone{
	// confirmed
	"1.2.0.192.in-addr.arpa. PTR": {"1.2.0.192.in-addr.arpa. 300 IN PTR Mail.Client.TEST."},
	"mail.client.test. A":         {"mail.client.test. 600 IN A 192.0.2.1", "mail.client.test. 600 IN A 192.0.2.9"},
	// the first name does not confirm, the second does
	"2.2.0.192.in-addr.arpa. PTR": {"2.2.0.192.in-addr.arpa. 300 IN PTR other.test.", "2.2.0.192.in-addr.arpa. 300 IN PTR mx2.client.test."},
	"other.test. A":               {"other.test. 300 IN A 198.51.100.7"},
	"mx2.client.test. A":          {"mx2.client.test. 300 IN A 192.0.2.2"},
	// forged: the name points elsewhere; and a name that does not exist
	"3.2.0.192.in-addr.arpa. PTR": {"3.2.0.192.in-addr.arpa. 300 IN PTR paypal.test.", "3.2.0.192.in-addr.arpa. 300 IN PTR nx.test."},
	"paypal.test. A":              {"paypal.test. 300 IN A 198.51.100.1"},
	// the PTR lookup fails; a forward lookup fails
	"4.2.0.192.in-addr.arpa. SERVFAIL": nil,
	"5.2.0.192.in-addr.arpa. PTR":      {"5.2.0.192.in-addr.arpa. 300 IN PTR broken.test."},
	"broken.test. SERVFAIL":            nil,
	"6.2.0.192.in-addr.arpa. DROP":     nil,
	// names that must never be shown
	"7.2.0.192.in-addr.arpa. PTR": {`7.2.0.192.in-addr.arpa. 300 IN PTR evil\032name.test.`, `7.2.0.192.in-addr.arpa. 300 IN PTR x\(y.test.`},
	// a short TTL
	"8.2.0.192.in-addr.arpa. PTR": {"8.2.0.192.in-addr.arpa. 1 IN PTR short.client.test."},
	"short.client.test. A":        {"short.client.test. 1 IN A 192.0.2.8"},
	// IPv6
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR": {
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6.client.test."},
	"v6.client.test. AAAA": {"v6.client.test. 300 IN AAAA 2001:db8::1"},
	"v6.client.test. A":    {"v6.client.test. 300 IN A 192.0.2.1"},
	// in the hosts file only: the DNS name differs
	"elsewhere.client.test. A": {"elsewhere.client.test. 300 IN A 192.0.2.51"},
	". SOA":                    {"test. 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 120"},
}

func newResolver(t *testing.T, resolvers []string, o Options) *Resolver {
	t.Helper()
	o.Resolvers = resolvers
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.CacheSize == 0 {
		o.CacheSize = 100
	}
	if o.MaxTTL == 0 {
		o.MinTTL, o.MaxTTL = time.Second, time.Hour
	}
	if o.HostsFile == "" {
		o.HostsFile = "testdata/hosts"
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLookup(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	tests := []struct {
		ip        string
		status    Status
		name, ptr string
		hosts     bool
		cached    bool
		trace     []string
	}{
		{ip: "192.0.2.1", status: OK, name: "mail.client.test", ptr: "mail.client.test", trace: []string{
			`IP address lookup yielded "mail.client.test"`,
			"checking addresses for mail.client.test: 192.0.2.1 OK",
			"host name = mail.client.test",
		}},
		{ip: "192.0.2.2", status: OK, name: "mx2.client.test", ptr: "other.test", trace: []string{
			`IP address lookup yielded "other.test"`,
			`  alias "mx2.client.test"`,
			"no IP address for other.test matched 192.0.2.2 (198.51.100.7)",
			"checking addresses for mx2.client.test: 192.0.2.2 OK",
			"host name = mx2.client.test",
		}},
		{ip: "192.0.2.3", status: Forged, ptr: "paypal.test", trace: []string{
			`IP address lookup yielded "paypal.test"`,
			`  alias "nx.test"`,
			"no IP address for paypal.test matched 192.0.2.3 (198.51.100.1)",
			"no IP addresses found for nx.test",
			"192.0.2.3 does not match any IP address for paypal.test: no host name",
		}},
		{ip: "192.0.2.4", status: Temp, trace: []string{"IP address PTR lookup gave temporary error: answer code SERVFAIL"}},
		{ip: "192.0.2.5", status: Temp, ptr: "broken.test", trace: []string{
			`IP address lookup yielded "broken.test"`,
			"temporary error for host name lookup of broken.test: answer code SERVFAIL",
			"host name lookup deferred: no host name",
		}},
		{ip: "192.0.2.7", status: Fail, trace: []string{"IP address lookup yielded no name"}},
		{ip: "192.0.2.99", status: Fail, trace: []string{"IP address lookup yielded no name"}},
		{ip: "192.0.2.50", status: OK, name: "files.client.test", ptr: "files.client.test", hosts: true, trace: []string{
			`IP address lookup yielded "files.client.test" (hosts file)`,
			`  alias "files"`,
			"checking addresses for files.client.test: 192.0.2.50 OK",
			"checking addresses for files: 192.0.2.50 OK",
			"host name = files.client.test",
		}},
		{ip: "192.0.2.60", status: OK, name: "ok.client.test", ptr: "ok.client.test", hosts: true},
		{ip: "2001:db8::1", status: OK, name: "v6.client.test", ptr: "v6.client.test"},
		// The IPv4 address it maps, looked up above.
		{ip: "::ffff:192.0.2.1", status: OK, name: "mail.client.test", ptr: "mail.client.test", cached: true},
	}
	r := newResolver(t, []string{srv.Addr}, Options{})
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		got := r.Lookup(context.Background(), ip)
		if got.Status != tt.status || got.Name != tt.name || got.PTR != tt.ptr || got.FromHosts != tt.hosts || got.Cached != tt.cached {
			t.Errorf("%s: got %v name %q ptr %q hosts %v cached %v (err %v), want %v %q %q %v", tt.ip, got.Status, got.Name, got.PTR, got.FromHosts, got.Cached, got.Err, tt.status, tt.name, tt.ptr, tt.hosts)
		}
		if tt.trace != nil {
			if tr := got.Trace(ip.Unmap()); strings.Join(tr, "\n") != strings.Join(tt.trace, "\n") {
				t.Errorf("%s: trace\n%s\nwant\n%s", tt.ip, strings.Join(tr, "\n"), strings.Join(tt.trace, "\n"))
			}
		}
	}
}

// TestTimeout: a resolver that never answers costs one timeout, no more,
// and leaves no name; the failure is not cached.
func TestTimeout(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	r := newResolver(t, []string{srv.Addr}, Options{Timeout: 300 * time.Millisecond})
	ip := netip.MustParseAddr("192.0.2.6")
	start := time.Now()
	got := r.Lookup(context.Background(), ip)
	if d := time.Since(start); d > time.Second {
		t.Errorf("lookup took %v with a timeout of 300ms", d)
	}
	var de interface{ Timeout() bool }
	if got.Status != Temp || got.Name != "" || !errors.As(got.Err, &de) || !de.Timeout() {
		t.Errorf("got %v %q (err %v), want TEMP by timeout", got.Status, got.Name, got.Err)
	}
	r.Lookup(context.Background(), ip)
	if n := srv.Count("6.2.0.192.in-addr.arpa. PTR"); n != 2 {
		t.Errorf("asked %d times, want 2: a timeout is not cached", n)
	}
}

// TestClientGone: a session whose client left stops waiting at once.
func TestClientGone(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	r := newResolver(t, []string{srv.Addr}, Options{Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	p := r.Start(ctx, netip.MustParseAddr("192.0.2.6"))
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if got := p.Wait(); got.Status != Temp || !errors.Is(got.Err, context.Canceled) {
		t.Errorf("got %v (err %v), want TEMP, cancelled", got.Status, got.Err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("waited %v after the client left", d)
	}
}

// TestCache: an answer is kept for its TTL (the least of the PTR and the
// forward records, clamped), then asked again; no name (NXDOMAIN) is
// kept for the SOA's negative TTL.
func TestCache(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	r := newResolver(t, []string{srv.Addr}, Options{MinTTL: 0, MaxTTL: time.Hour})
	ctx := context.Background()
	for _, ip := range []string{"192.0.2.1", "192.0.2.8", "192.0.2.99"} {
		if got := r.Lookup(ctx, netip.MustParseAddr(ip)); got.Cached {
			t.Errorf("%s: first lookup cached", ip)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	for ip, cached := range map[string]bool{"192.0.2.1": true, "192.0.2.8": false, "192.0.2.99": true} {
		got := r.Lookup(ctx, netip.MustParseAddr(ip))
		if got.Cached != cached {
			t.Errorf("%s after 1.1s: cached %v, want %v", ip, got.Cached, cached)
		}
	}
	for key, want := range map[string]int{
		"1.2.0.192.in-addr.arpa. PTR":  1,
		"mail.client.test. A":          1,
		"8.2.0.192.in-addr.arpa. PTR":  2,
		"short.client.test. A":         2,
		"99.2.0.192.in-addr.arpa. PTR": 1,
	} {
		if n := srv.Count(key); n != want {
			t.Errorf("%s asked %d times, want %d", key, n, want)
		}
	}
	got := r.Lookup(ctx, netip.MustParseAddr("192.0.2.1"))
	if got.Status != OK || got.Name != "mail.client.test" || !strings.HasPrefix(got.Trace(netip.MustParseAddr("192.0.2.1"))[0], "host name of 192.0.2.1 from the cache") {
		t.Errorf("cached result %+v", got)
	}
}

// TestCoalesced: sessions from one address at once share one lookup.
func TestCoalesced(t *testing.T) {
	release := make(chan struct{})
	zh := zone.Handler(t)
	srv := dnstest.Start(t, func(q dns.Question, tcp bool) *dns.Msg {
		if q.Qtype == dns.TypePTR {
			<-release
		}
		return zh(q, tcp)
	})
	r := newResolver(t, []string{srv.Addr}, Options{})
	ip := netip.MustParseAddr("192.0.2.1")
	var wg sync.WaitGroup
	results := make([]Result, 20)
	for i := range results {
		p := r.Start(context.Background(), ip)
		wg.Go(func() { results[i] = p.Wait() })
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, got := range results {
		if got.Status != OK || got.Name != "mail.client.test" {
			t.Errorf("session %d: %v %q (err %v)", i, got.Status, got.Name, got.Err)
		}
	}
	if n := srv.Count("1.2.0.192.in-addr.arpa. PTR"); n != 1 {
		t.Errorf("PTR asked %d times for 20 sessions, want 1", n)
	}
}

// TestHostsOnly: without resolvers the hosts file names the clients it
// lists, and no other.
func TestHostsOnly(t *testing.T) {
	r := newResolver(t, nil, Options{})
	for ip, want := range map[string]string{"127.0.0.1": "localhost", "::1": "localhost", "192.0.2.50": "files.client.test", "192.0.2.1": "",
		// The zone names our interface: the address is the host's.
		"fe80::7%lo": "linklocal.client.test"} {
		got := r.Lookup(context.Background(), netip.MustParseAddr(ip))
		if got.Name != want || (want == "") != (got.Status == Fail) {
			t.Errorf("%s: %v %q, want %q", ip, got.Status, got.Name, want)
		}
	}
}

func TestNameOK(t *testing.T) {
	for in, want := range map[string]string{
		"Mail.Example.TEST.":            "mail.example.test",
		"localhost":                     "localhost",
		"host_1-a.example":              "host_1-a.example",
		"":                              "",
		".":                             "",
		"a..b":                          "",
		`evil\032name.test.`:            "",
		"x(y).test":                     "",
		"[192.0.2.1]":                   "",
		strings.Repeat("a", 64) + ".t":  "",
		strings.Repeat("a.", 127) + "a": "",
	} {
		got, ok := nameOK(in)
		if got != want || ok != (want != "") {
			t.Errorf("nameOK(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{OK: "OK", Fail: "FAIL", Forged: "FORGED", Temp: "TEMP"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", s, s.String(), want)
		}
	}
}

// BenchmarkCached is what a session from a known address pays at
// accept and before its greeting: a cache hit.
func BenchmarkCached(b *testing.B) {
	srv := dnstest.StartZone(b, zone)
	r, err := New(Options{Resolvers: []string{srv.Addr}, Timeout: 2 * time.Second, CacheSize: 100,
		MinTTL: time.Minute, MaxTTL: time.Hour, HostsFile: "testdata/hosts"})
	if err != nil {
		b.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	r.Lookup(context.Background(), ip)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := r.Start(context.Background(), ip).Wait(); res.Name != "mail.client.test" {
			b.Fatal(res)
		}
	}
}
