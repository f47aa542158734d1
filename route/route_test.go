package route

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"mxgate/address"
	"mxgate/deliver"
	"mxgate/filters"
	"mxgate/internal/dnstest"
	"mxgate/internal/tlstest"
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

// withMaildir adds to o a Maildir route for hosted.test and shop.test
// whose {user} layout has a user for hosted.test only, in the users file
// it returns.
func withMaildir(t *testing.T, o Options) (Options, string) {
	users := filepath.Join(t.TempDir(), "userdomains")
	if err := os.WriteFile(users, []byte("hosted.test: alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.RelayDomains = append(o.RelayDomains, "shop.test")
	md := deliver.NewMaildir(deliver.MaildirOptions{Root: "/srv/mail", Layout: "{user}/{domain}/{local}", Users: users, UID: -1, GID: -1, Mode: 0o700})
	o.Routes = append(o.Routes, StoreRoute{Name: "hosted", Domains: []string{"hosted.test", "shop.test"}, Transport: md,
		OverQuota: "defer", Verify: "none", Target: deliver.Target{Scheme: "maildir", Path: "/srv/mail"}})
	return o, users
}

func TestCheck(t *testing.T) {
	noUser := `Unrouteable address (no Maildir for domain shop.test: it has no user in maildir_users)`
	tests := []struct {
		mode, rcpt string
		noUsers    bool // the users file is gone
		action     filters.Action
		code       int
		enhanced   [3]int
		text, log  string
		trace      string // "": none
	}{
		{mode: "none", rcpt: "user@example.test", action: filters.Accept},
		{mode: "none", rcpt: "user@partner.test", action: filters.Accept},
		{mode: "none", rcpt: "user@foreign.test", action: filters.Reject, code: 550, enhanced: [3]int{5, 1, 2}, text: "Unrouteable address", log: "Unrouteable address",
			trace: `RCPT <user@foreign.test>: Unrouteable address: foreign.test is not a relay domain, no [[route]] names it, and outbound.mode is "none"`},
		{mode: "mx", rcpt: "user@foreign.test", action: filters.Accept},
		{mode: "smarthost", rcpt: `"a b"@foreign.test`, action: filters.Accept},
		{mode: "none", rcpt: "info@hosted.test", action: filters.Accept},
		{mode: "mx", rcpt: "x@shop.test", action: filters.Reject, code: 550, enhanced: [3]int{5, 1, 2}, text: "Unrouteable address", log: noUser,
			trace: "RCPT <x@shop.test>: " + noUser + ": store hosted has no Maildir for it"},
		{mode: "mx", rcpt: "info@hosted.test", noUsers: true, action: filters.Tempfail, code: 451, enhanced: [3]int{4, 3, 0}, text: "Temporary local problem - please try later"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.rcpt, func(t *testing.T) {
			o, users := withMaildir(t, options(tt.mode))
			if tt.noUsers {
				os.Remove(users)
			}
			s := NewCheck(New(o)).Open(context.Background(), &filters.Conn{})
			v := s.Rcpt(context.Background(), &filters.Tx{}, tt.rcpt)
			if v.Action != tt.action || v.Code != tt.code || v.Enhanced != tt.enhanced || v.Text != tt.text {
				t.Errorf("verdict %+v, want %v %d %v %q", v, tt.action, tt.code, tt.enhanced, tt.text)
			}
			if tt.trace != "" && strings.Join(v.Trace, "\n") != tt.trace {
				t.Errorf("trace %q, want %q", v.Trace, tt.trace)
			}
			switch {
			case tt.log != "" && v.Log != tt.log:
				t.Errorf("log %q, want %q", v.Log, tt.log)
			case tt.noUsers && !strings.HasPrefix(v.Log, "Could not complete recipient verify: maildir users file: "):
				t.Errorf("log %q, want Could not complete recipient verify: maildir users file: ...", v.Log)
			}
			if v.Action != filters.Accept && v.ReasonCode != "unroutable" {
				t.Errorf("reason code %q, want unroutable", v.ReasonCode)
			}
		})
	}
}

// TestRefusal: the refusal the RCPT check and local submission share.
func TestRefusal(t *testing.T) {
	unrouteable := &address.Refusal{Code: 550, Enhanced: [3]int{5, 1, 2}, Text: "Unrouteable address", Log: "Unrouteable address"}
	noUser := &address.Refusal{Code: 550, Enhanced: [3]int{5, 1, 2}, Text: "Unrouteable address", Log: "Unrouteable address (no Maildir for domain shop.test: it has no user in maildir_users)"}
	tests := []struct {
		mode, rcpt string
		want       *address.Refusal
	}{
		{"none", "user@example.test", nil},
		{"none", "user@partner.test", nil},
		{"none", "user@foreign.test", unrouteable},
		{"mx", "user@foreign.test", nil},
		{"smarthost", "user@foreign.test", nil},
		{"none", "Info+tag@hosted.test", nil},
		{"none", "x@shop.test", noUser},
		{"smarthost", "x@Shop.Test", noUser},
	}
	for _, tt := range tests {
		a, err := address.Parse(tt.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := withMaildir(t, options(tt.mode))
		if got := New(o).Refusal(a); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Refusal(%s) = %+v, want %+v", tt.mode, tt.rcpt, got, tt.want)
		}
	}
}

// TestTestMaildir: -bt of a Maildir store says what the RCPT check
// decides: the Maildir, undeliverable in the RCPT check's words, or
// cannot be resolved now.
func TestTestMaildir(t *testing.T) {
	o, users := withMaildir(t, options("none"))
	r := New(o)
	tests := []struct {
		rcpt, want string
		status     int
	}{
		{"Info+tag@hosted.test", "Info+tag@hosted.test\n" +
			"  router = hosted, transport = maildir\n" +
			"  maildir /srv/mail/alice/hosted.test/Info+tag\n" +
			"  verify = none\n", TestOK},
		{"x@shop.test", "x@shop.test is undeliverable: Unrouteable address (no Maildir for domain shop.test: it has no user in maildir_users)\n", TestUndeliverable},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if st := r.Test(context.Background(), &out, []string{tt.rcpt}); st != tt.status || out.String() != tt.want {
			t.Errorf("%s: status %d, output:\n%s\nwant %d:\n%s", tt.rcpt, st, out.String(), tt.status, tt.want)
		}
	}
	os.Remove(users)
	var out bytes.Buffer
	if st := r.Test(context.Background(), &out, []string{"info@hosted.test"}); st != TestDeferred ||
		!strings.HasPrefix(out.String(), "info@hosted.test cannot be resolved at this time: Could not complete recipient verify: maildir users file: ") {
		t.Errorf("status %d, output %q, want 1 and cannot be resolved", st, out.String())
	}
}

// TestTestMX: -bt of a foreign domain in mode "mx" prints the MX
// transport's own plan, so it says what the daemon does: the MX hosts in
// preference order with their usable addresses (no hosts file, no
// 0.0.0.0, at most 10 hosts), the implicit MX, a null MX or a domain that
// does not exist undeliverable, and a domain the daemon would defer
// (MTA-STS enforce allows no host, no usable address, DNS failure)
// cannot be resolved now.
func TestTestMX(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	stsPort := tlstest.ServeMTASTS(t, ca, "mta-sts.strict.test", "version: STSv1\nmode: enforce\nmx: *.other.test\nmax_age: 3600\n")
	zone := dnstest.Zone{
		"foreign.test. MX":          {"foreign.test. 300 IN MX 20 mx2.foreign.test.", "foreign.test. 300 IN MX 10 mx1.foreign.test."},
		"mx1.foreign.test. A":       {"mx1.foreign.test. 300 IN A 192.0.2.10"},
		"mx2.foreign.test. A":       {"mx2.foreign.test. 300 IN A 192.0.2.20"},
		"implicit.test. A":          {"implicit.test. 300 IN A 192.0.2.30"},
		"nullmx.test. MX":           {"nullmx.test. 300 IN MX 0 ."},
		"twonull.test. MX":          {"twonull.test. 300 IN MX 0 .", "twonull.test. 300 IN MX 0 ."},
		"zero.test. MX":             {"zero.test. 300 IN MX 10 mx.zero.test.", "zero.test. 300 IN MX 20 localhost.", "zero.test. 300 IN MX 30 mx3.zero.test."},
		"mx.zero.test. A":           {"mx.zero.test. 300 IN A 0.0.0.0"},
		"mx3.zero.test. A":          {"mx3.zero.test. 300 IN A 192.0.2.50"},
		"onlyzero.test. MX":         {"onlyzero.test. 300 IN MX 10 mx.zero.test."},
		"strict.test. MX":           {"strict.test. 300 IN MX 10 mx.strict.test."},
		"mx.strict.test. A":         {"mx.strict.test. 300 IN A 192.0.2.60"},
		"_mta-sts.strict.test. TXT": {`_mta-sts.strict.test. 300 IN TXT "v=STSv1; id=1"`},
		"mta-sts.strict.test. A":    {"mta-sts.strict.test. 300 IN A 127.0.0.1"},
		"broken.test. SERVFAIL":     nil,
	}
	many := "  MX lookup for many.test\n"
	for i := 1; i <= 12; i++ {
		zone["many.test. MX"] = append(zone["many.test. MX"], fmt.Sprintf("many.test. 300 IN MX %d mx%d.many.test.", i, i))
		zone[fmt.Sprintf("mx%d.many.test. A", i)] = []string{fmt.Sprintf("mx%d.many.test. 300 IN A 192.0.2.%d", i, 100+i)}
		if i <= 10 {
			many += fmt.Sprintf("  host mx%d.many.test [192.0.2.%d] MX=%d port=25\n", i, 100+i, i)
		}
	}
	dns := dnstest.StartZone(t, zone)
	mx, err := deliver.NewMX(deliver.MXOptions{Resolvers: []string{dns.Addr}, Port: 25, ConnectTimeout: 2 * time.Second, CommandTimeout: 2 * time.Second,
		MTASTS: "enforce", MTASTSPort: stsPort, RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	o := options("mx")
	o.Outbound.Transport = mx
	const notRelay = "  not a relay domain: only clients in relay.trusted_networks, local programs (sendmail) and mxgate's own bounces may send to it\n"
	tests := []struct {
		rcpt, want string
		status     int
	}{
		{"u@foreign.test", "u@foreign.test\n" +
			"  router = dnslookup, transport = smtp\n" +
			"  MX lookup for foreign.test\n" +
			"  host mx1.foreign.test [192.0.2.10] MX=10 port=25\n" +
			"  host mx2.foreign.test [192.0.2.20] MX=20 port=25\n" + notRelay, TestOK},
		{"u@implicit.test", "u@implicit.test\n" +
			"  router = dnslookup, transport = smtp\n" +
			"  MX lookup for implicit.test\n" +
			"  no MX records: the domain's own address (implicit MX)\n" +
			"  host implicit.test [192.0.2.30] port=25\n" + notRelay, TestOK},
		{"u@zero.test", "u@zero.test\n" +
			"  router = dnslookup, transport = smtp\n" +
			"  MX lookup for zero.test\n" +
			"  host mx.zero.test MX=10 skipped: no usable address (0.0.0.0)\n" +
			"  host localhost MX=20 skipped: no such host\n" +
			"  host mx3.zero.test [192.0.2.50] MX=30 port=25\n" + notRelay, TestOK},
		{"u@many.test", "u@many.test\n  router = dnslookup, transport = smtp\n" + many + notRelay, TestOK},
		{"u@nullmx.test", "u@nullmx.test is undeliverable: Unrouteable address (domain nullmx.test accepts no mail (null MX): 556 5.1.10 Recipient address has null MX)\n", TestUndeliverable},
		{"u@twonull.test", "u@twonull.test is undeliverable: Unrouteable address (domain twonull.test accepts no mail (null MX): 556 5.1.10 Recipient address has null MX)\n", TestUndeliverable},
		{"u@nowhere.test", "u@nowhere.test is undeliverable: Unrouteable address (domain nowhere.test does not exist (DNS: NXDOMAIN))\n", TestUndeliverable},
		{"u@strict.test", "u@strict.test cannot be resolved at this time: MTA-STS policy of strict.test (enforce) allows none of its MX hosts (mx.strict.test)\n", TestDeferred},
		{"u@onlyzero.test", "u@onlyzero.test cannot be resolved at this time: no MX host of onlyzero.test has a usable address\n" +
			"  MX lookup for onlyzero.test\n" +
			"  host mx.zero.test MX=10 skipped: no usable address (0.0.0.0)\n", TestDeferred},
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
		!strings.HasPrefix(out.String(), "u@broken.test cannot be resolved at this time: DNS lookup of the MX hosts of broken.test failed: ") {
		t.Errorf("status %d, output %q, want 1 and cannot be resolved", st, out.String())
	}
}
