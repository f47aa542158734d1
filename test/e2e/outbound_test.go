package e2e

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mxgate/internal/dnstest"
	"mxgate/internal/tlstest"
)

// TestOutboundMX: mail for outside domains leaves by their MX hosts,
// found through a DNS server on loopback and pointing at a real MTA
// (smtp-sink): mail relayed for a trusted client, and the bounce to an
// outside sender. A domain whose MTA-STS policy (enforce) does not list
// its MX host gets nothing: the recipient waits, and the log says why.
func TestOutboundMX(t *testing.T) {
	t.Parallel()
	down := startScripted(t)
	mx := startSink(t)
	ca := tlstest.NewCA(t, "mxgate e2e CA")
	policyPort := tlstest.ServeMTASTS(t, ca, "mta-sts.strict.test",
		"version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	dns := dnstest.StartZone(t, dnstest.Zone{
		"outside.test. MX":          {"outside.test. 60 IN MX 10 mx.outside.test."},
		"mx.outside.test. A":        {"mx.outside.test. 60 IN A 127.0.0.1"},
		"strict.test. MX":           {"strict.test. 60 IN MX 10 mail.strict.test."},
		"mail.strict.test. A":       {"mail.strict.test. 60 IN A 127.0.0.1"},
		"_mta-sts.strict.test. TXT": {`_mta-sts.strict.test. 60 IN TXT "v=STSv1; id=20261206T1"`},
		"mta-sts.strict.test. A":    {"mta-sts.strict.test. 60 IN A 127.0.0.1"},
	})
	outbound := fmt.Sprintf("mode = \"mx\"\nresolver = %q\nport = %d\nmta_sts = \"enforce\"\nmta_sts_port = %d\nca_file = %q\ncommand_timeout = \"10s\"",
		dns.Addr, mx.port, policyPort, caFile)
	g := startMxgateOutbound(t, testdata("mxgate.toml.tmpl"), down.URL(), outbound)

	// -bt shows the MX route.
	if out := g.mustCLI("-bt", "friend@outside.test"); !strings.Contains(out, "router = dnslookup, transport = smtp") ||
		!strings.Contains(out, "mx.outside.test [127.0.0.1]") {
		t.Errorf("-bt friend@outside.test:\n%s\nwant router dnslookup and host mx.outside.test [127.0.0.1]", out)
	}

	// Relayed for a trusted client.
	c := mustDial(t, "127.0.0.2", g.addr)
	c.expect(t, "EHLO client.test", 250)
	relayed := c.send(t, "sender@example.test", []string{"friend@outside.test"}, dataBytes([]byte("From: sender@example.test\nSubject: out\n\nrelayed\n")))
	strict := c.send(t, "sender@example.test", []string{"x@strict.test"}, dataBytes([]byte("From: sender@example.test\nSubject: strict\n\nnot to an unlisted MX\n")))
	c.expect(t, "QUIT", 221)

	// The bounce to an outside sender: the store refuses the recipient.
	c = mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO outside.test", 250)
	refused := c.send(t, "someone@outside.test", []string{"fail@example.test"}, dataBytes([]byte("From: someone@outside.test\nSubject: in\n\nto be bounced\n")))
	c.expect(t, "QUIT", 221)

	g.waitCompleted(relayed, refused)
	g.requireLog(relayed, regexp.QuoteMeta("=> friend@outside.test R=dnslookup T=smtp H=mx.outside.test [127.0.0.1]"))
	waitFor(t, drainTimeout, func() string {
		if !g.logHas(logLine(strict, regexp.QuoteMeta("== x@strict.test R=dnslookup T=smtp defer (-1): MTA-STS policy of strict.test (enforce) allows none of its MX hosts (mail.strict.test)"))) {
			return "the MTA-STS deferral of " + strict
		}
		return ""
	})
	bounceRE := regexp.MustCompile(`^\S+ \S+ (\S+) <= <> R=` + regexp.QuoteMeta(refused) + ` `)
	var bounce string
	waitFor(t, drainTimeout, func() string {
		for _, l := range g.mainlog() {
			if m := bounceRE.FindStringSubmatch(l); m != nil {
				bounce = m[1]
			}
		}
		if bounce == "" || !g.logHas(logLine(bounce, `Completed$`)) {
			return "the bounce of " + refused + " delivered"
		}
		return ""
	})
	g.requireLog(bounce, regexp.QuoteMeta("=> someone@outside.test R=dnslookup T=smtp H=mx.outside.test [127.0.0.1]"))

	msgs := mx.messages(t)
	var rcpts []string
	for _, m := range msgs {
		rcpts = append(rcpts, m.rcpts...)
		if slices.Contains(m.rcpts, "someone@outside.test") {
			if !strings.Contains(m.raw, "X-Mail-Args: <>") || !strings.Contains(m.raw, "fail@example.test") || !strings.Contains(m.raw, "550 5.1.1") {
				t.Errorf("the bounce the MX got:\n%s\nwant MAIL FROM:<>, naming fail@example.test and the store's 550 5.1.1", m.raw)
			}
		}
	}
	slices.Sort(rcpts)
	if want := []string{"friend@outside.test", "someone@outside.test"}; !slices.Equal(rcpts, want) {
		t.Errorf("the MX host got mail for %v, want %v (nothing for strict.test)", rcpts, want)
	}
	if spooled := g.spooled(); !slices.Contains(spooled, strict) {
		t.Errorf("spool holds %v, want %s waiting for strict.test", spooled, strict)
	}
	// -bt agrees with the daemon, which defers strict.test.
	const want = "x@strict.test cannot be resolved at this time: MTA-STS policy of strict.test (enforce) allows none of its MX hosts (mail.strict.test)\n"
	if bt := g.cli("-bt", "x@strict.test"); bt.code != 1 || bt.stdout != want {
		t.Errorf("-bt x@strict.test: exit %d, stdout %q; want exit 1, %q", bt.code, bt.stdout, want)
	}
}
