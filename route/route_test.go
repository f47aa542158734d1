package route

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"mxgate/address"
	"mxgate/deliver"
	"mxgate/filters"
	"mxgate/internal/dnstest"
)

// named is a transport that only has a name: routing never sends.
type named string

func (n named) Name() string { return string(n) }
func (n named) Deliver(context.Context, *deliver.Message) []deliver.Result {
	panic("routing tests send nothing")
}

// options are a gateway for example.test and hosted.test, a route for
// other.example (a relay domain) and one for partner.test (not one), and
// outbound in mode.
func options(mode string) Options {
	o := Options{
		RelayDomains: []string{"example.test", "hosted.test", "other.example"},
		Default: StoreRoute{Name: DefaultRouter, Transport: named("lmtp"), OverQuota: "defer", Verify: "callout",
			Target: deliver.Target{Scheme: "lmtp", Host: "127.0.0.1", Port: 24}},
		Routes: []StoreRoute{
			{Name: "other", Domains: []string{"other.example"}, Transport: named("smtp"), OverQuota: "discard", Verify: "none",
				Target: deliver.Target{Scheme: "smtp", Host: "127.0.0.1", Port: 2601}},
			{Name: "partner.test", Domains: []string{"partner.test"}, Transport: named("smtp"), OverQuota: "bounce", Verify: "none",
				Target: deliver.Target{Scheme: "lmtp+unix", Path: "/run/partner/lmtp"}},
		},
		Outbound:   OutboundRoute{Mode: mode},
		DNSTimeout: 2 * time.Second,
		MXPort:     25,
	}
	switch mode {
	case "mx":
		o.Outbound.Transport = named("smtp")
	case "smarthost":
		o.Outbound.Transport = named("smtp")
		o.Outbound.Smarthost = deliver.Target{Scheme: "smtp", Host: "127.0.0.1", Port: 2700}
	}
	return o
}

func TestRoute(t *testing.T) {
	tests := []struct {
		mode, rcpt string
		router     string
		kind       Kind
		overQuota  string
	}{
		{"none", "user@example.test", "downstream", Store, "defer"},
		{"none", "User@EXAMPLE.test.", "downstream", Store, "defer"},
		{"none", `"john doe"@hosted.test`, "downstream", Store, "defer"},
		{"none", "user@other.example", "other", Store, "discard"},
		{"none", "user@partner.test", "partner.test", Store, "bounce"},
		{"none", "user@foreign.test", "", Unroutable, ""},
		{"none", "postmaster", "", Unroutable, ""},
		{"mx", "user@foreign.test", "dnslookup", Outbound, ""},
		{"mx", "user@sub.example.test", "dnslookup", Outbound, ""},
		{"smarthost", "user@foreign.test", "smarthost", Outbound, ""},
		{"smarthost", "user@partner.test", "partner.test", Store, "bounce"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.rcpt, func(t *testing.T) {
			d := New(options(tt.mode)).Route(tt.rcpt)
			if d.Router != tt.router || d.Kind != tt.kind || d.OverQuota != tt.overQuota || (d.Transport == nil) != (tt.kind == Unroutable) {
				t.Errorf("Route(%q) = %+v, want router %q kind %d over_quota %q", tt.rcpt, d, tt.router, tt.kind, tt.overQuota)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		mode, rcpt string
		action     filters.Action
		trace      string // "": none
	}{
		{"none", "user@example.test", filters.Accept, ""},
		{"none", "user@partner.test", filters.Accept, ""},
		{"none", "user@foreign.test", filters.Reject, `RCPT <user@foreign.test>: Unrouteable address: foreign.test is not a relay domain, no [[route]] names it, and outbound.mode is "none"`},
		{"mx", "user@foreign.test", filters.Accept, ""},
		{"smarthost", `"a b"@foreign.test`, filters.Accept, ""},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.rcpt, func(t *testing.T) {
			s := NewCheck(New(options(tt.mode))).Open(context.Background(), &filters.Conn{})
			v := s.Rcpt(context.Background(), &filters.Tx{}, tt.rcpt)
			if v.Action != tt.action || strings.Join(v.Trace, "\n") != tt.trace {
				t.Errorf("verdict %+v, want %v with trace %q", v, tt.action, tt.trace)
			}
			if v.Action == filters.Reject && (v.Code != 550 || v.Enhanced != [3]int{5, 1, 2} || v.Text != "Unrouteable address" || v.Log != "Unrouteable address" || v.ReasonCode != "unroutable") {
				t.Errorf("refusal %+v, want 550 5.1.2 Unrouteable address", v)
			}
		})
	}
}

// TestRefusal: the refusal the RCPT check and local submission share.
func TestRefusal(t *testing.T) {
	unrouteable := &address.Refusal{Code: 550, Enhanced: [3]int{5, 1, 2}, Text: "Unrouteable address", Log: "Unrouteable address"}
	tests := []struct {
		mode, rcpt string
		want       *address.Refusal
	}{
		{"none", "user@example.test", nil},
		{"none", "user@partner.test", nil},
		{"none", "user@foreign.test", unrouteable},
		{"mx", "user@foreign.test", nil},
		{"smarthost", "user@foreign.test", nil},
	}
	for _, tt := range tests {
		a, err := address.Parse(tt.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if got := New(options(tt.mode)).Refusal(a); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Refusal(%s) = %+v, want %+v", tt.mode, tt.rcpt, got, tt.want)
		}
	}
}

// TestTestMX: -bt of a foreign domain in mode "mx" shows the MX hosts in
// preference order with their addresses, the implicit MX, and refuses a
// null MX and a domain that does not exist.
func TestTestMX(t *testing.T) {
	dns := dnstest.StartZone(t, dnstest.Zone{
		"foreign.test. MX":      {"foreign.test. 300 IN MX 20 mx2.foreign.test.", "foreign.test. 300 IN MX 10 mx1.foreign.test."},
		"mx1.foreign.test. A":   {"mx1.foreign.test. 300 IN A 192.0.2.10"},
		"mx2.foreign.test. A":   {"mx2.foreign.test. 300 IN A 192.0.2.20"},
		"implicit.test. A":      {"implicit.test. 300 IN A 192.0.2.30"},
		"nullmx.test. MX":       {"nullmx.test. 300 IN MX 0 ."},
		"broken.test. SERVFAIL": nil,
	})
	o := options("mx")
	o.Resolvers = []string{dns.Addr}
	tests := []struct {
		rcpt, want string
		status     int
	}{
		{"u@foreign.test", "u@foreign.test\n" +
			"  router = dnslookup, transport = smtp\n" +
			"  MX lookup for foreign.test\n" +
			"  host mx1.foreign.test [192.0.2.10] MX=10 port=25\n" +
			"  host mx2.foreign.test [192.0.2.20] MX=20 port=25\n" +
			"  not a relay domain: only clients in relay.trusted_networks, local programs (sendmail) and mxgate's own bounces may send to it\n", TestOK},
		{"u@implicit.test", "u@implicit.test\n" +
			"  router = dnslookup, transport = smtp\n" +
			"  MX lookup for implicit.test\n" +
			"  no MX records: the domain's own address (implicit MX)\n" +
			"  host implicit.test [192.0.2.30] port=25\n" +
			"  not a relay domain: only clients in relay.trusted_networks, local programs (sendmail) and mxgate's own bounces may send to it\n", TestOK},
		{"u@nullmx.test", "u@nullmx.test is undeliverable: Unrouteable address (nullmx.test has a null MX: it accepts no mail)\n", TestUndeliverable},
		{"u@nowhere.test", "u@nowhere.test is undeliverable: Unrouteable address (nowhere.test does not exist)\n", TestUndeliverable},
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			var out bytes.Buffer
			if st := New(o).Test(context.Background(), &out, []string{tt.rcpt}); st != tt.status || out.String() != tt.want {
				t.Errorf("status %d, output:\n%s\nwant %d:\n%s", st, out.String(), tt.status, tt.want)
			}
		})
	}
	var out bytes.Buffer
	if st := New(o).Test(context.Background(), &out, []string{"u@broken.test"}); st != TestDeferred ||
		!strings.HasPrefix(out.String(), "u@broken.test cannot be resolved at this time: MX lookup for broken.test: ") {
		t.Errorf("status %d, output %q, want 1 and cannot be resolved", st, out.String())
	}
}
