package msgauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"mxgate/filters"
	"mxgate/internal/dnstest"
	"mxgate/spool"
)

// testKey is the RSA key of sel1._domainkey.example.test, made once: 2048-bit
// generation is slow.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func dkimRecord(pub crypto.PublicKey, kind string) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	if kind == "ed25519" {
		// RFC 8463: the bare 32-byte key, not SubjectPublicKeyInfo.
		der = der[len(der)-32:]
	}
	return "v=DKIM1; k=" + kind + "; p=" + base64.StdEncoding.EncodeToString(der)
}

// zone is the test DNS data: TXT records by name; names in servfail fail.
type zone struct {
	txt      map[string][]string
	servfail map[string]bool
}

func testZone() *zone {
	return &zone{
		txt: map[string][]string{
			"example.test":                  {"v=spf1 ip4:192.0.2.1 include:inc.test -all"},
			"inc.test":                      {"v=spf1 ip4:192.0.2.2 -all"},
			"soft.test":                     {"v=spf1 ~all"},
			"none.test":                     {"v=spf1 ip4:192.0.2.1 -all"},
			"sel1._domainkey.example.test":  {dkimRecord(testKey().Public(), "rsa")},
			"_dmarc.example.test":           {"v=DMARC1; p=reject; sp=quarantine"},
			"_dmarc.none.test":              {"v=DMARC1; p=none"},
			"_dmarc.soft.test":              {"v=DMARC1; p=reject; aspf=s"},
			"sel1._domainkey.none.test":     {"v=DKIM1; k=rsa; p=bm90IGEga2V5"},
			"sub.example.test":              {"v=spf1 ip4:192.0.2.1 -all"},
			"other.test":                    {"v=spf1 ip4:192.0.2.9 -all"},
			"sel1._domainkey.tempfail.test": nil,
		},
		servfail: map[string]bool{"tempfail.test": true, "_dmarc.tempfail.test": true, "sel1._domainkey.tempfail.test": true},
	}
}

// startDNS serves z until the test ends.
func startDNS(tb testing.TB, z *zone) string {
	tb.Helper()
	return startZone(tb, z).Addr
}

func startZone(tb testing.TB, z *zone) *dnstest.Server {
	tb.Helper()
	dz := dnstest.Zone{}
	for name, txts := range z.txt {
		key := name + ". TXT"
		dz[key] = []string{}
		for _, t := range txts {
			dz[key] = append(dz[key], dnstest.TXT(name, 60, t))
		}
	}
	for name := range z.servfail {
		dz[name+". SERVFAIL"] = nil
	}
	return dnstest.StartZone(tb, dz)
}

// message builds the filters.Message of raw (LF endings) as the gateway
// spools it.
func message(tb testing.TB, raw, sender, helo, ip string) *filters.Message {
	tb.Helper()
	head, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		tb.Fatalf("test message without a blank line: %q", raw)
	}
	var hs []spool.Header
	for line := range strings.SplitAfterSeq(head+"\n", "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Text += line
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		hs = append(hs, spool.Header{Type: spool.HeaderType(name), Text: line})
	}
	return &filters.Message{
		ID: "1abcde-000001-AB", Sender: sender, Helo: helo,
		ClientIP: netip.MustParseAddr(ip), Headers: hs,
		Size:     int64(len(raw)),
		OpenBody: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

// sign returns raw (LF endings) with a DKIM-Signature by d=domain s=sel1.
func sign(tb testing.TB, raw, domain string, key crypto.Signer) string {
	tb.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(strings.ReplaceAll(raw, "\n", "\r\n")), &dkim.SignOptions{
		Domain: domain, Selector: "sel1", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n")
}

func letter(from string) string {
	return "From: Alice <alice@" + from + ">\nTo: bob@example.net\nSubject: test\n\nHello Bob.\n"
}

func TestCheck(t *testing.T) {
	server := startDNS(t, testZone())
	signed := sign(t, letter("example.test"), "example.test", testKey())
	tests := []struct {
		name       string
		raw        string
		sender     string
		helo, ip   string
		spfReject  bool
		dmarcRej   bool
		wantAR     string
		wantAction filters.Action
		wantReply  string // "550 5.7.1 text" for a refusal
		wantLog    string
	}{
		{
			name: "all pass", raw: signed, sender: "alice@example.test", helo: "mail.example.test", ip: "192.0.2.1",
			dmarcRej: true, spfReject: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@example.test;\n" +
				"\tdkim=pass header.d=example.test header.s=sel1;\n\tdmarc=pass header.from=example.test\n",
			wantLog: "spf=pass dkim=pass:example.test dmarc=pass policy=reject",
		},
		{
			name: "spf include, ipv4-mapped client", raw: letter("example.test"), sender: "alice@example.test", helo: "h", ip: "::ffff:192.0.2.2",
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@example.test; dkim=none;\n" +
				"\tdmarc=pass header.from=example.test\n",
			wantLog: "spf=pass dkim=none dmarc=pass policy=reject",
		},
		{
			name: "body modified, spf aligned", raw: strings.Replace(signed, "Hello Bob.", "Hello Eve.", 1),
			sender: "alice@example.test", helo: "h", ip: "192.0.2.1", dmarcRej: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@example.test;\n" +
				"\tdkim=fail reason=\"body hash did not verify\" header.d=example.test header.s=sel1;\n" +
				"\tdmarc=pass header.from=example.test\n",
			wantLog: "spf=pass dkim=fail:example.test dmarc=pass policy=reject",
		},
		{
			name: "forged: spf fail and dmarc p=reject, both stamped", raw: letter("example.test"), sender: "alice@example.test", helo: "h", ip: "198.51.100.7",
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=fail smtp.mailfrom=alice@example.test; dkim=none;\n" +
				"\tdmarc=fail header.from=example.test\n",
			wantLog: "spf=fail dkim=none dmarc=fail policy=reject",
		},
		{
			name: "forged: dmarc p=reject honoured", raw: letter("example.test"), sender: "alice@example.test", helo: "h", ip: "198.51.100.7",
			dmarcRej: true, wantAction: filters.Reject, wantReply: "550 5.7.1 DMARC policy of example.test says reject",
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=fail smtp.mailfrom=alice@example.test; dkim=none;\n" +
				"\tdmarc=fail header.from=example.test\n",
			wantLog: "spf=fail dkim=none dmarc=fail policy=reject",
		},
		{
			name: "forged: spf fail rejected first", raw: letter("example.test"), sender: "alice@example.test", helo: "h", ip: "198.51.100.7",
			dmarcRej: true, spfReject: true, wantAction: filters.Reject, wantReply: "550 5.7.23 SPF check failed",
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=fail smtp.mailfrom=alice@example.test; dkim=none;\n" +
				"\tdmarc=fail header.from=example.test\n",
			wantLog: "spf=fail dkim=none dmarc=fail policy=reject",
		},
		{
			name: "subdomain falls back to the org domain's sp=quarantine", raw: letter("sub.example.test"), sender: "alice@other.test", helo: "h", ip: "198.51.100.7",
			dmarcRej: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=fail smtp.mailfrom=alice@other.test; dkim=none;\n" +
				"\tdmarc=fail header.from=sub.example.test\n",
			wantLog: "spf=fail dkim=none dmarc=fail policy=quarantine",
		},
		{
			name: "relaxed alignment: spf of the subdomain passes for the org domain", raw: letter("example.test"), sender: "alice@sub.example.test", helo: "h", ip: "192.0.2.1",
			dmarcRej: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@sub.example.test; dkim=none;\n" +
				"\tdmarc=pass header.from=example.test\n",
			wantLog: "spf=pass dkim=none dmarc=pass policy=reject",
		},
		{
			name: "dkim of another domain does not align; p=none only stamped", raw: sign(t, letter("none.test"), "example.test", testKey()),
			sender: "alice@other.test", helo: "h", ip: "198.51.100.7", dmarcRej: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=fail smtp.mailfrom=alice@other.test;\n" +
				"\tdkim=pass header.d=example.test header.s=sel1;\n\tdmarc=fail header.from=none.test\n",
			wantLog: "spf=fail dkim=pass:example.test dmarc=fail policy=none",
		},
		{
			name: "softfail; strict spf alignment", raw: letter("soft.test"), sender: "alice@soft.test", helo: "h", ip: "198.51.100.7",
			spfReject: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=softfail smtp.mailfrom=alice@soft.test; dkim=none;\n" +
				"\tdmarc=fail header.from=soft.test\n",
			wantLog: "spf=softfail dkim=none dmarc=fail policy=reject",
		},
		{
			name: "null sender: HELO identity", raw: letter("example.test"), sender: "", helo: "example.test", ip: "192.0.2.1",
			wantAR: "Authentication-Results: mx.example.test; spf=pass smtp.helo=example.test;\n" +
				"\tdkim=none; dmarc=pass header.from=example.test\n",
			wantLog: "spf=pass dkim=none dmarc=pass policy=reject",
		},
		{
			name: "DNS failures are temperror, never a refusal", raw: sign(t, letter("tempfail.test"), "tempfail.test", testKey()),
			sender: "alice@tempfail.test", helo: "h", ip: "192.0.2.1", spfReject: true, dmarcRej: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=temperror smtp.mailfrom=alice@tempfail.test;\n" +
				"\tdkim=temperror reason=\"key unavailable: lookup sel1._domainkey.tempfail.test: answer code SERVFAIL\" header.d=tempfail.test header.s=sel1;\n" +
				"\tdmarc=temperror reason=\"dmarc: TXT record unavailable: lookup _dmarc.tempfail.test: answer code SERVFAIL\" header.from=tempfail.test\n",
			wantLog: "spf=temperror dkim=temperror:tempfail.test dmarc=temperror",
		},
		{
			name: "folded From", raw: "From: \"Alice\"\n\t<alice@Example.TEST>\n\nbody\n", sender: "alice@example.test", helo: "h", ip: "192.0.2.1",
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@example.test; dkim=none;\n" +
				"\tdmarc=pass header.from=example.test\n",
			wantLog: "spf=pass dkim=none dmarc=pass policy=reject",
		},
		{
			name: "no From: dmarc permerror", raw: "Subject: x\n\nbody\n", sender: "alice@example.test", helo: "h", ip: "192.0.2.1", dmarcRej: true,
			wantAR: "Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@example.test; dkim=none;\n" +
				"\tdmarc=permerror reason=\"no From header\"\n",
			wantLog: "spf=pass dkim=none dmarc=permerror",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(Options{AuthservID: "mx.example.test", Resolvers: []string{server}, SPFFailReject: tt.spfReject, DMARCReject: tt.dmarcRej})
			v, err := f.Check(context.Background(), message(t, tt.raw, tt.sender, tt.helo, tt.ip))
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Headers) != 1 || v.Headers[0].Text != tt.wantAR || v.Headers[0].Type != ' ' {
				t.Errorf("headers:\n%q\nwant\n%q", v.Headers, tt.wantAR)
			}
			if v.Action != tt.wantAction {
				t.Errorf("action %s, want %s", v.Action, tt.wantAction)
			}
			if tt.wantReply != "" {
				got := fmt.Sprintf("%d %d.%d.%d %s", v.Code, v.Enhanced[0], v.Enhanced[1], v.Enhanced[2], v.Text)
				if got != tt.wantReply {
					t.Errorf("reply %q, want %q", got, tt.wantReply)
				}
			}
			if v.Log != tt.wantLog {
				t.Errorf("log %q, want %q", v.Log, tt.wantLog)
			}
		})
	}
}

// TestDNSFailuresAreTemperror: whatever way the resolvers fail (SERVFAIL,
// REFUSED, no answer at all), SPF, DKIM and DMARC are temperror, never
// permerror, and no reason names a resolver's address or port.
func TestDNSFailuresAreTemperror(t *testing.T) {
	raw := sign(t, letter("example.test"), "example.test", testKey())
	const (
		head = "Authentication-Results: mx.example.test;\n\tspf=temperror smtp.mailfrom=alice@example.test;\n"
		dkim = "\tdkim=temperror reason=\"key unavailable: lookup sel1._domainkey.example.test: %s\" header.d=example.test header.s=sel1;\n"
		dmrc = "\tdmarc=temperror reason=\"dmarc: TXT record unavailable: lookup _dmarc.example.test: %s\" header.from=example.test\n"
	)
	tests := []struct {
		name   string
		faults []dnstest.Fault // one resolver each, asked in order
		reason string
	}{
		{"SERVFAIL", []dnstest.Fault{dnstest.ServFail}, "answer code SERVFAIL"},
		{"REFUSED", []dnstest.Fault{dnstest.Refused}, "answer code REFUSED"},
		{"no answer", []dnstest.Fault{dnstest.Drop}, "timed out"},
		{"REFUSED, then no answer", []dnstest.Fault{dnstest.Refused, dnstest.Drop}, "answer code REFUSED, timed out"},
		{"SERVFAIL, then REFUSED", []dnstest.Fault{dnstest.ServFail, dnstest.Refused}, "answer code SERVFAIL, answer code REFUSED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resolvers []string
			for _, f := range tt.faults {
				srv := startZone(t, testZone())
				srv.SetFault(f)
				resolvers = append(resolvers, srv.Addr)
			}
			f := New(Options{AuthservID: "mx.example.test", Resolvers: resolvers, Timeout: 300 * time.Millisecond, SPFFailReject: true, DMARCReject: true})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			v, err := f.Check(ctx, message(t, raw, "alice@example.test", "mail.example.test", "192.0.2.1"))
			if err != nil {
				t.Fatal(err)
			}
			want := head + fmt.Sprintf(dkim, tt.reason) + fmt.Sprintf(dmrc, tt.reason)
			if len(v.Headers) != 1 || v.Headers[0].Text != want {
				t.Errorf("headers:\n%q\nwant\n%q", v.Headers, want)
			}
			for _, h := range v.Headers {
				if strings.Contains(h.Text, "127.0.0.1") || strings.Contains(h.Text, "port") {
					t.Errorf("a resolver's address in %q", h.Text)
				}
			}
			if v.Action != filters.Accept {
				t.Errorf("action %s, want accept: a DNS failure never refuses", v.Action)
			}
			if want := "spf=temperror dkim=temperror:example.test dmarc=temperror"; v.Log != want {
				t.Errorf("log %q, want %q", v.Log, want)
			}
		})
	}
}
