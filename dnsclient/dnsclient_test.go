package dnsclient

import (
	"context"
	"errors"
	"net/netip"
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
	c, _ := New([]string{srv.Addr}, time.Second)
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

func fmtAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}
