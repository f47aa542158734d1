package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in         string // as go-smtp hands it over
		local      string
		domain     string
		wire       string // String()
		wantSyntax bool
	}{
		{in: "u@example.test", local: "u", domain: "example.test", wire: "u@example.test"},
		{in: "U.Ser@EXAMPLE.Test", local: "U.Ser", domain: "example.test", wire: "U.Ser@example.test"},
		{in: "u@localhost", local: "u", domain: "localhost", wire: "u@localhost"},
		{in: "first+tag@sub.example.test", local: "first+tag", domain: "sub.example.test", wire: "first+tag@sub.example.test"},
		// "john doe"@example.test: go-smtp removed the quotes, String restores them.
		{in: "john doe@example.test", local: "john doe", domain: "example.test", wire: `"john doe"@example.test`},
		{in: `a"b\c@example.test`, local: `a"b\c`, domain: "example.test", wire: `"a\"b\\c"@example.test`},
		{in: "a..b@example.test", local: "a..b", domain: "example.test", wire: `"a..b"@example.test`},
		{in: "u.@example.test", local: "u.", domain: "example.test", wire: `"u."@example.test`},
		// The domain starts after the last "@": "u@other.test"@example.test.
		{in: "u@other.test@example.test", local: "u@other.test", domain: "example.test", wire: `"u@other.test"@example.test`},
		{in: "用户@例え.テスト", local: "用户", domain: "例え.テスト", wire: "用户@例え.テスト"},
		{in: "u@[192.0.2.1]", local: "u", domain: "[192.0.2.1]", wire: "u@[192.0.2.1]"},
		{in: "u@[IPv6:2001:DB8:0::1]", local: "u", domain: "[ipv6:2001:db8::1]", wire: "u@[ipv6:2001:db8::1]"},
		{in: "u@[IPv6:::1]", local: "u", domain: "[ipv6:::1]", wire: "u@[ipv6:::1]"},
		{in: "postmaster", wantSyntax: true},
		{in: "u@", wantSyntax: true},
		{in: "@example.test", wantSyntax: true},
		{in: "", wantSyntax: true},
		{in: "u@example.test.", wantSyntax: true},
		{in: "u@other.test.", wantSyntax: true},
		{in: "u@.example.test", wantSyntax: true},
		{in: "u@example..test", wantSyntax: true},
		{in: "u@-example.test", wantSyntax: true},
		{in: "u@example-.test", wantSyntax: true},
		{in: "u@exa_mple.test", wantSyntax: true},
		{in: "u@example.test>", wantSyntax: true},
		{in: "u@192.0.2.1", wantSyntax: true},
		{in: "u@[192.0.2.1", wantSyntax: true},
		{in: "u@[300.0.2.1]", wantSyntax: true},
		{in: "u@[IPv6:192.0.2.1]", wantSyntax: true},
		{in: "u@[::1]", wantSyntax: true},
		{in: "u@[IPv6:fe80::1%eth0]", wantSyntax: true},
		{in: "u@[x-tag:whatever]", wantSyntax: true},
		{in: "u\r@example.test", wantSyntax: true},
		{in: "u\x00@example.test", wantSyntax: true},
		{in: "u\x7f@example.test", wantSyntax: true},
		{in: "\xff@example.test", wantSyntax: true},
		{in: "u@\xffexample.test", wantSyntax: true},
		{in: strings.Repeat("a", 65) + "@example.test", wantSyntax: true},
		{in: "u@" + strings.Repeat("a", 64) + ".test", wantSyntax: true},
		{in: "u@" + strings.Repeat("a.", 128) + "test", wantSyntax: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := Parse(tt.in)
			if tt.wantSyntax {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("Parse(%q) = %+v, %v; want an ErrSyntax", tt.in, a, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if a.Local != tt.local || a.Domain != tt.domain {
				t.Errorf("Parse(%q) = %q @ %q, want %q @ %q", tt.in, a.Local, a.Domain, tt.local, tt.domain)
			}
			if got := a.String(); got != tt.wire {
				t.Errorf("String() = %q, want %q", got, tt.wire)
			}
		})
	}
}

func TestNullAddressString(t *testing.T) {
	if got := (Address{}).String(); got != "" {
		t.Errorf("null path String() = %q, want \"\"", got)
	}
}

// TestRecipient walks the address tricks that made MTAs relay. The
// "handed" column is what go-smtp v0.25.1 passes to Session.Rcpt for the
// RCPT TO argument in the comment; the gateway tests send the wire forms.
func TestRecipient(t *testing.T) {
	pol := NewPolicy([]string{"Example.Test."}, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
	untrusted := netip.MustParseAddr("198.51.100.7")
	trusted := netip.MustParseAddr("192.0.2.10")
	mapped := netip.MustParseAddr("::ffff:192.0.2.10")

	const (
		ok         = ""
		relay      = "550 5.7.1 relay not permitted"
		restricted = "550 5.7.1 Restricted characters in address"
		syntax     = "501 5.1.3 Bad recipient address syntax"
	)
	tests := []struct {
		name      string
		handed    string
		untrusted string // reply for an untrusted client, "" = accepted
		trusted   string
		domain    string // Domain of the accepted address
	}{
		{"relay domain", "u@example.test", ok, ok, "example.test"},
		{"relay domain upper case", "u@EXAMPLE.TEST", ok, ok, "example.test"},
		{"other domain", "u@other.test", relay, ok, "other.test"},
		{"other domain upper case", "u@OTHER.TEST", relay, ok, "other.test"},
		{"subdomain of relay domain", "u@sub.example.test", relay, ok, "sub.example.test"},
		{"relay domain as a suffix", "u@notexample.test", relay, ok, "notexample.test"},
		// <u%other.test@example.test>
		{"percent hack", "u%other.test@example.test", restricted, restricted, ""},
		// <other.test!u@example.test>
		{"bang path", "other.test!u@example.test", restricted, restricted, ""},
		// <@example.test:u@other.test>: go-smtp drops the route.
		{"source route to other domain", "u@other.test", relay, ok, "other.test"},
		// <@other.test:u@example.test>: delivered to the relay domain itself.
		{"source route via other domain", "u@example.test", ok, ok, "example.test"},
		// <"u@other.test"@example.test>
		{"quoted local part with @", "u@other.test@example.test", restricted, restricted, ""},
		// <"@other.test:u"@example.test>
		{"quoted source route", "@other.test:u@example.test", restricted, restricted, ""},
		// <"u%other.test"@example.test>
		{"quoted percent", "u%other.test@example.test", restricted, restricted, ""},
		{"address literal", "u@[192.0.2.1]", relay, relay, ""},
		{"IPv6 address literal", "u@[IPv6:::1]", relay, relay, ""},
		{"trailing dot relay domain", "u@example.test.", syntax, syntax, ""},
		{"trailing dot other domain", "u@other.test.", syntax, syntax, ""},
		{"bare IP domain", "u@192.0.2.1", syntax, syntax, ""},
		{"leading dot", ".u@example.test", restricted, restricted, ""},
		{"pipe", "|/bin/sh@example.test", restricted, restricted, ""},
		{"file", "/etc/passwd@example.test", restricted, restricted, ""},
		{"dot dot slash", "a/../b@other.test", restricted, restricted, ""},
		{"no domain", "postmaster", syntax, syntax, ""},
		{"control character", "u\r\nRCPT@example.test", syntax, syntax, ""},
		{"quoted space", "john doe@example.test", ok, ok, "example.test"},
		{"UTF-8 local part", "用户@example.test", ok, ok, "example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				ip   netip.Addr
				want string
			}{{untrusted, tt.untrusted}, {trusted, tt.trusted}, {mapped, tt.trusted}} {
				a, ref := pol.Recipient(c.ip, tt.handed)
				got := ""
				if ref != nil {
					got = refusalReply(ref)
					if ref.Log == "" {
						t.Errorf("client %v, RCPT %q: refusal without a log text", c.ip, tt.handed)
					}
				}
				if got != c.want {
					t.Errorf("client %v, RCPT %q: got %q, want %q", c.ip, tt.handed, got, c.want)
					continue
				}
				if ref == nil && a.Domain != tt.domain {
					t.Errorf("client %v, RCPT %q: domain %q, want %q", c.ip, tt.handed, a.Domain, tt.domain)
				}
			}
		})
	}
}

func refusalReply(r *Refusal) string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

func TestTrusted(t *testing.T) {
	pol := NewPolicy(nil, []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"), // not masked in the config: still the whole /8
		netip.MustParsePrefix("2001:db8::/32"),
	})
	tests := []struct {
		ip   string
		want bool
	}{
		{"10.200.0.1", true},
		{"::ffff:10.0.0.1", true},
		{"11.0.0.1", false},
		{"2001:db8:1::1", true},
		{"2001:db9::1", false},
		{"::1", false},
	}
	for _, tt := range tests {
		if got := pol.Trusted(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Trusted(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

func TestSyntaxRefusalLogsDetail(t *testing.T) {
	pol := NewPolicy([]string{"example.test"}, nil)
	_, ref := pol.Recipient(netip.MustParseAddr("198.51.100.7"), "u@example.test.")
	if ref == nil {
		t.Fatal("trailing dot accepted")
	}
	want := `malformed address: "u@example.test.": empty label in domain (leading, trailing or double dot)`
	if ref.Log != want {
		t.Errorf("Log = %q, want %q", ref.Log, want)
	}
}
