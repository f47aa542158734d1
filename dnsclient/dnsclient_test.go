package dnsclient

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/internal/dnstest"
)

var zone = dnstest.Zone{
	"a.test. A":    {"a.test. 60 IN A 192.0.2.1"},
	"a.test. AAAA": {"a.test. 60 IN AAAA 2001:db8::1"},
	"a.test. TXT":  {dnstest.TXT("a.test", 60, strings.Repeat("x", 1500))},
	"v4.test. A":   {"v4.test. 60 IN A 192.0.2.4"},
}

func exchange(t *testing.T, c *Client, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Exchange(ctx, name, qtype, Answerable(name, qtype))
}

func TestNoResolvers(t *testing.T) {
	if _, err := New(nil, time.Second); err == nil {
		t.Error("New(nil) succeeded")
	}
}

// TestTruncated: an answer too long for UDP is asked again over TCP.
func TestTruncated(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	c, err := New([]string{srv.Addr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := exchange(t, c, "a.test.", dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	if txt := strings.Join(r.Answer[0].(*dns.TXT).Txt, ""); len(txt) != 1500 {
		t.Errorf("TXT of %d bytes, want 1500", len(txt))
	}
	if u, tc := srv.Count("a.test. TXT"), srv.Count("tcp a.test. TXT"); u != 1 || tc != 1 {
		t.Errorf("asked %d times over UDP and %d over TCP, want 1 and 1", u, tc)
	}
}

// TestOrder: a resolver that fails hands over to the next, within the
// caller's deadline even when it never answers; the error of all failing
// names every resolver for the log, and its Reason none.
func TestOrder(t *testing.T) {
	good := dnstest.StartZone(t, zone).Addr
	bad := func(f dnstest.Fault) string {
		s := dnstest.StartZone(t, zone)
		s.SetFault(f)
		return s.Addr
	}
	servfail, refused, dead := bad(dnstest.ServFail), bad(dnstest.Refused), bad(dnstest.Drop)
	for _, first := range []string{servfail, refused, dead} {
		c, _ := New([]string{first, good}, time.Second)
		start := time.Now()
		if _, err := exchange(t, c, "a.test.", dns.TypeA); err != nil {
			t.Errorf("first %s: %v", first, err)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("first %s: took %v", first, d)
		}
	}
	c, _ := New([]string{servfail, refused, dead}, time.Second)
	_, err := exchange(t, c, "a.test.", dns.TypeA)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v, want *Error", err)
	}
	want := "resolver " + servfail + ": answer code SERVFAIL; resolver " + refused + ": answer code REFUSED; resolver " + dead + ": "
	if !strings.HasPrefix(e.Error(), want) {
		t.Errorf("error %q, want it to start %q", e.Error(), want)
	}
	if got := e.Reason(); got != "answer code SERVFAIL, answer code REFUSED, timed out" {
		t.Errorf("Reason() = %q", got)
	}
	if e.Timeout() {
		t.Error("Timeout() true though two resolvers answered")
	}
	var rc *RcodeError
	if !errors.As(err, &rc) || rc.Rcode != dns.RcodeServerFailure {
		t.Errorf("errors.As RcodeError: %v", rc)
	}
}

func TestLookupIP(t *testing.T) {
	srv := dnstest.StartZone(t, zone)
	c, _ := New([]string{srv.Addr}, time.Second, WithHostsFile(""))
	ctx := context.Background()
	for host, want := range map[string]string{"a.test": "[192.0.2.1 2001:db8::1]", "v4.test.": "[192.0.2.4]"} {
		ips, err := c.LookupIP(ctx, host)
		if err != nil || fmtAddrs(ips) != want {
			t.Errorf("LookupIP(%s) = %v, %v; want %s", host, ips, err, want)
		}
	}
	if _, err := c.LookupIP(ctx, "nx.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupIP(nx.test) error %v, want ErrNotFound", err)
	}
}

// TestLookupIPHostsFile: a name the hosts file lists is answered from it,
// without asking the resolvers (here one that never answers, as a
// resolver that does not know localhost may not); any other name, and
// every name when the file is missing, goes to the resolvers.
func TestLookupIPHostsFile(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	err := os.WriteFile(hosts, []byte(`# test hosts
127.0.0.1	localhost
::1		localhost ip6-localhost	# the IPv6 loopback
192.0.2.7 downstream.test Mail.Example.TEST
2001:db8::7 mail.example.test
192.0.2.8 mail.example.test
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	dead := dnstest.StartZone(t, zone)
	dead.SetFault(dnstest.Drop)
	c, _ := New([]string{dead.Addr}, time.Second, WithHostsFile(hosts))
	ctx := context.Background()
	for host, want := range map[string]string{
		"localhost":          "[127.0.0.1 ::1]",
		"LOCALHOST.":         "[127.0.0.1 ::1]",
		"ip6-localhost":      "[::1]",
		"downstream.test":    "[192.0.2.7]",
		"mail.example.test.": "[192.0.2.7 192.0.2.8 2001:db8::7]",
	} {
		ips, err := c.LookupIP(ctx, host)
		if err != nil || fmtAddrs(ips) != want {
			t.Errorf("LookupIP(%s) = %v, %v; want %s", host, ips, err, want)
		}
	}
	if n := dead.Count("localhost. A"); n != 0 {
		t.Errorf("the resolver was asked %d times for a name in the hosts file", n)
	}

	srv := dnstest.StartZone(t, zone)
	for _, file := range []string{hosts, filepath.Join(t.TempDir(), "missing")} {
		c, _ := New([]string{srv.Addr}, time.Second, WithHostsFile(file))
		if ips, err := c.LookupIP(ctx, "a.test"); err != nil || fmtAddrs(ips) != "[192.0.2.1 2001:db8::1]" {
			t.Errorf("hosts file %s: LookupIP(a.test) = %v, %v; want the resolver's", file, ips, err)
		}
		if _, err := c.LookupIP(ctx, "nx.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("hosts file %s: LookupIP(nx.test) error %v, want ErrNotFound", file, err)
		}
	}
}

func TestParseHosts(t *testing.T) {
	const file = "127.0.0.1 localhost\n" +
		"#192.0.2.1 commented.test\n" +
		"192.0.2.2 # only.comment.test\n" +
		"not-an-ip bad.test\n" +
		"fe80::1%lo zoned.test\n" +
		"::ffff:192.0.2.3 mapped.test\n" +
		"192.0.2.4\n" +
		"192.0.2.5 dup.test\n192.0.2.5 dup.test dup.test\n"
	for host, want := range map[string]string{
		"localhost":         "[127.0.0.1]",
		"commented.test":    "[]",
		"only.comment.test": "[]",
		"bad.test":          "[]",
		"zoned.test":        "[]",
		"mapped.test":       "[192.0.2.3]",
		"dup.test":          "[192.0.2.5]",
		"":                  "[]",
		".":                 "[]",
	} {
		if got := fmtAddrs(parseHosts([]byte(file), host)); got != want {
			t.Errorf("parseHosts(%q) = %s, want %s", host, got, want)
		}
	}
}

func fmtAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// TestLookup: the records of the asked type, NXDOMAIN as an answer, the
// AD bit asked for and reported, resolver failures as errors.
func TestLookup(t *testing.T) {
	z := dnstest.Zone{
		"example.test. MX":      {"example.test. 60 IN MX 10 mx.example.test."},
		"secure.test. TLSA":     {"secure.test. 60 IN TLSA 3 1 1 0123456789abcdef"},
		"broken.test. SERVFAIL": nil,
		"nodata.test. A":        {"nodata.test. 60 IN A 192.0.2.1"},
	}
	zh := z.Handler(t)
	srv := dnstest.Start(t, func(q dns.Question, tcp bool) *dns.Msg {
		m := zh(q, tcp)
		if m != nil && strings.HasPrefix(strings.ToLower(q.Name), "secure.") {
			m.AuthenticatedData = true
		}
		return m
	})
	c, _ := New([]string{srv.Addr}, time.Second)
	ctx := context.Background()
	tests := []struct {
		name    string
		qtype   uint16
		records int
		nx      bool
		secure  bool
		err     string
	}{
		{name: "example.test", qtype: dns.TypeMX, records: 1},
		{name: "secure.test.", qtype: dns.TypeTLSA, records: 1, secure: true},
		{name: "nodata.test", qtype: dns.TypeMX},
		{name: "nx.test", qtype: dns.TypeMX, nx: true},
		{name: "broken.test", qtype: dns.TypeMX, err: "answer code SERVFAIL"},
	}
	for _, tt := range tests {
		a, err := c.Lookup(ctx, tt.name, tt.qtype)
		var e *Error
		switch {
		case tt.err != "":
			if !errors.As(err, &e) || e.Reason() != tt.err {
				t.Errorf("Lookup(%s) error %v, want %s", tt.name, err, tt.err)
			}
		case err != nil:
			t.Errorf("Lookup(%s): %v", tt.name, err)
		case len(a.Records) != tt.records || a.NXDomain != tt.nx || a.Secure != tt.secure:
			t.Errorf("Lookup(%s) = %+v, want %d records, nx %v, secure %v", tt.name, a, tt.records, tt.nx, tt.secure)
		}
	}
}

// TestHostsNames: the names of an address in a hosts file, for a client
// the DNS has no PTR for: every line's names in order, each once.
func TestHostsNames(t *testing.T) {
	const file = "127.0.0.1 localhost\n" +
		"127.0.0.1\tvm Runsc.  # the container's\n" +
		"#192.0.2.1 commented.test\n" +
		"::ffff:192.0.2.3 mapped.test\n" +
		"::1 localhost ip6-localhost\n" +
		"fe80::1%lo zoned.test\n" +
		"127.0.0.1 localhost\n"
	for ip, want := range map[string]string{
		"127.0.0.1":        "localhost vm runsc",
		"::1":              "localhost ip6-localhost",
		"192.0.2.1":        "",
		"192.0.2.3":        "mapped.test",
		"::ffff:127.0.0.1": "localhost vm runsc",
		"fe80::1":          "",
	} {
		if got := strings.Join(parseHostsNames([]byte(file), netip.MustParseAddr(ip)), " "); got != want {
			t.Errorf("names of %s = %q, want %q", ip, got, want)
		}
	}
	if got := HostsNames("", netip.MustParseAddr("127.0.0.1")); got != nil {
		t.Errorf("no hosts file: %q", got)
	}
	if got := HostsNames(filepath.Join(t.TempDir(), "missing"), netip.MustParseAddr("127.0.0.1")); got != nil {
		t.Errorf("missing hosts file: %q", got)
	}
}
