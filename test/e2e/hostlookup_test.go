package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
)

// TestHostLookup: mxgate names a client by its forward-confirmed reverse
// DNS, asking the resolver of [host_lookup]: the Received header of the
// delivered copy and the mainlog's H= show the name of 127.0.0.1, whose
// PTR name points back to it, and not the one 127.0.0.2's PTR gives,
// which points elsewhere.
func TestHostLookup(t *testing.T) {
	t.Parallel()
	resolver := dnstest.StartZone(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa. PTR": {"1.0.0.127.in-addr.arpa. 300 IN PTR mail.e2e.test."},
		"mail.e2e.test. A":            {"mail.e2e.test. 300 IN A 127.0.0.1"},
		"2.0.0.127.in-addr.arpa. PTR": {"2.0.0.127.in-addr.arpa. 300 IN PTR forged.e2e.test."},
		"forged.e2e.test. A":          {"forged.e2e.test. 300 IN A 192.0.2.1"},
	}).Addr
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(t.TempDir(), "hostlookup.toml.tmpl")
	text := string(b) + "\n[host_lookup]\nresolver = \"" + resolver + "\"\ntimeout  = \"3s\"\n"
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSink(t)
	g := startMxgateConfig(t, tmpl, s.URL())

	tests := []struct {
		from     string // the client's address
		received string // the delivered copy's Received header, up to "id"
		host     string // H= of its "<=" line
	}{
		{"127.0.0.1", "Received: from client.test (mail.e2e.test [127.0.0.1]) by mx.example.test with ESMTP id ", "mail.e2e.test (client.test) [127.0.0.1]"},
		{"127.0.0.2", "Received: from client.test ([127.0.0.2]) by mx.example.test with ESMTP id ", "(client.test) [127.0.0.2]"},
	}
	ids := make([]string, len(tests))
	for i, tt := range tests {
		c := mustDial(t, tt.from, g.addr)
		c.expect(t, "EHLO client.test", 250)
		c.expect(t, "MAIL FROM:<a@client.test>", 250)
		c.expect(t, "RCPT TO:<u@example.test>", 250)
		c.expect(t, "DATA", 354)
		if err := c.write(dataBytes([]byte("Subject: from " + tt.from + "\n\nhello\n"))); err != nil {
			t.Fatal(err)
		}
		r, err := c.read()
		if err != nil || r.Code != 250 {
			t.Fatalf("from %s: end of data -> %v, %v", tt.from, r, err)
		}
		c.expect(t, "QUIT", 221)
		ids[i] = r.ID()
	}
	g.waitCompleted(ids...)
	for i, tt := range tests {
		g.requireLog(ids[i], `<= a@client\.test H=`+regexp.QuoteMeta(tt.host)+`:\d+ P=esmtp S=\d+`)
		var got string
		for _, m := range s.messages(t) {
			if len(m.ids) > 0 && m.ids[0] == ids[i] {
				for _, h := range headers(m.raw) {
					if strings.Contains(h, "id "+ids[i]) {
						got = h
					}
				}
			}
		}
		if !strings.HasPrefix(got, tt.received+ids[i]) {
			t.Errorf("from %s: delivered with %q, want %q", tt.from, got, tt.received+ids[i])
		}
	}
	if n := len(exigrep(t, "mail.e2e.test", filepath.Join(g.dataDir, "log", "mainlog"))); n == 0 {
		t.Error("exigrep mail.e2e.test finds no line")
	}
}

// TestHostLookupMilter: a real milter learns the client's name from
// mxgate. opendkim signs mail only from internal hosts, listed here by
// name alone (InternalHosts mail.e2e.test): the mail of 127.0.0.1, whose
// PTR name confirms, arrives signed; the mail of 127.0.0.3, whose PTR
// name does not confirm (so the milter is told "[127.0.0.3]"), does not.
// Not parallel: the milter's host list comes through the environment.
func TestHostLookupMilter(t *testing.T) {
	t.Setenv("OPENDKIM_INTERNAL_HOSTS", "mail.e2e.test")
	opendkim, dkimDir := startScannerIn(t, "opendkim")
	resolver := dnstest.StartZone(t, dnstest.Zone{
		"1.0.0.127.in-addr.arpa. PTR": {"1.0.0.127.in-addr.arpa. 300 IN PTR mail.e2e.test."},
		"mail.e2e.test. A":            {"mail.e2e.test. 300 IN A 127.0.0.1"},
		"3.0.0.127.in-addr.arpa. PTR": {"3.0.0.127.in-addr.arpa. 300 IN PTR mail.e2e.test."},
	}).Addr
	s := startSink(t)
	text := milterConfig +
		"\n[host_lookup]\nresolver = \"" + resolver + "\"\ntimeout  = \"3s\"\n" +
		"\n[[milter]]\naddress = \"inet:" + opendkim + "\"\nname = \"opendkim\"\n"
	tmpl := filepath.Join(t.TempDir(), "milter.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startMxgateConfig(t, tmpl, s.URL())

	signed := map[string]bool{}
	for _, from := range []string{"127.0.0.1", "127.0.0.3"} {
		c := mustDial(t, from, g.addr)
		c.expect(t, "EHLO client.test", 250)
		c.expect(t, "MAIL FROM:<alice@example.test>", 250)
		c.expect(t, "RCPT TO:<u@example.test>", 250)
		c.expect(t, "DATA", 354)
		msg := "From: Alice <alice@example.test>\nTo: u@example.test\nSubject: from " + from + "\n" +
			"Message-ID: <hostlookup-" + from + "@example.test>\n\nSign me if you know me.\n"
		if err := c.write(dataBytes([]byte(msg))); err != nil {
			t.Fatal(err)
		}
		r, err := c.read()
		if err != nil || r.Code != 250 {
			t.Fatalf("from %s: end of data -> %v, %v", from, r, err)
		}
		c.expect(t, "QUIT", 221)
		signed[r.ID()] = from == "127.0.0.1"
	}
	ids := make([]string, 0, len(signed))
	for id := range signed {
		ids = append(ids, id)
	}
	g.waitCompleted(ids...)
	for _, m := range s.messages(t) {
		if len(m.ids) != 1 {
			t.Fatalf("%s: mxgate IDs %v, want one", m.path, m.ids)
		}
		has := strings.Contains(m.raw, "\nDKIM-Signature: ") || strings.HasPrefix(m.raw, "DKIM-Signature: ")
		switch {
		case signed[m.ids[0]] && !has:
			t.Errorf("message %s from mail.e2e.test [127.0.0.1] is not signed:\n%s", m.ids[0], m.raw)
		case signed[m.ids[0]]:
			verifyDKIM(t, m.raw, peertest.DKIMRecord(t, dkimDir))
		case has:
			t.Errorf("message %s from [127.0.0.3] (PTR name not confirmed) is signed:\n%s", m.ids[0], m.raw)
		}
	}
}
