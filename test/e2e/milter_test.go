package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"mxgate/internal/peertest"
)

// milterConfig is mxgate calling the real milters at addrs, in order.
const milterConfig = `hostname = "mx.example.test"
listen   = ["{{.Listen}}"]
data_dir = "{{.DataDir}}"

[smtp]
command_timeout  = "30s"
data_timeout     = "30s"
shutdown_timeout = "10s"

[relay]
domains          = ["example.test"]
trusted_networks = ["127.0.0.2/32"]

[outbound]
{{.Outbound}}

[downstream]
url             = "{{.Downstream}}"
starttls        = "none"
connect_timeout = "5s"
command_timeout = "10s"
data_timeout    = "10s"

[queue]
retry        = "F,10m,1s"
run_interval = "1s"
`

// TestMilters sends mail through mxgate to Debian's rspamd in milter mode
// and opendkim in sign mode (both started by peers.sh) and checks what
// arrives downstream: rspamd's spam headers on the pharmacy spam, and
// opendkim's DKIM-Signature on mail from example.test.
func TestMilters(t *testing.T) {
	t.Parallel()
	rspamd := startScanner(t, "rspamd")
	opendkim, dkimDir := startScannerIn(t, "opendkim")
	s := startSink(t)
	text := milterConfig +
		"\n[[milter]]\naddress = \"inet:" + rspamd + "\"\nname = \"rspamd\"\neom_timeout = \"30s\"\n" +
		"\n[[milter]]\naddress = \"inet:" + opendkim + "\"\nname = \"opendkim\"\n"
	tmpl := filepath.Join(t.TempDir(), "milter.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startMxgateConfig(t, tmpl, s.URL())

	spam := corpusMessage(t, "pharmacy-spam.eml")
	signed := "From: Alice <alice@example.test>\nTo: u@example.test\nSubject: signed by the gateway\n" +
		"Message-ID: <dkim-1@example.test>\n\nPlease sign this.\n"
	tests := []struct {
		name string
		msg  string
		want []string // header name prefixes the delivered copy must hold
	}{
		{"pharmacy spam", spam, []string{"X-Spamd-Bar: ", "X-Spam-Status: "}},
		{"example.test mail", signed, []string{"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.test; s=sel1;"}},
	}
	want := map[string][]string{}
	var ids []string
	var signedID string
	for _, tc := range tests {
		r := sendOne(t, g.addr, tc.msg)
		if r.Code != 250 {
			t.Fatalf("%s: end of data -> %q, want 250", tc.name, r)
		}
		want[r.ID()] = tc.want
		ids = append(ids, r.ID())
		if tc.msg == signed {
			signedID = r.ID()
		}
	}
	g.waitCompleted(ids...)
	got := s.messages(t)
	if len(got) != len(tests) {
		t.Fatalf("smtp-sink received %d messages, want %d", len(got), len(tests))
	}
	for _, m := range got {
		if len(m.ids) != 1 {
			t.Errorf("%s: mxgate IDs %v, want one", m.path, m.ids)
			continue
		}
		if m.ids[0] == signedID {
			verifyDKIM(t, m.raw, peertest.DKIMRecord(t, dkimDir))
		}
		hs := headers(m.raw)
		for _, w := range want[m.ids[0]] {
			found := false
			for _, h := range hs {
				found = found || strings.HasPrefix(strings.Join(strings.Fields(h), " "), w)
			}
			if !found {
				t.Errorf("message %s lacks %q; headers:\n%s", m.ids[0], w, strings.Join(hs, "\n"))
			}
		}
	}
}

// verifyDKIM checks that the DKIM-Signature of the delivered message
// verifies with record, the signer's public key: what opendkim signed is
// what the store got, the headers it saw and the body alone.
func verifyDKIM(t *testing.T, raw, record string) {
	t.Helper()
	msg := strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != "sel1._domainkey.example.test" {
				return nil, fmt.Errorf("no TXT record for %s", domain)
			}
			return []string{record}, nil
		},
	})
	if err != nil {
		t.Fatalf("reading the delivered message's DKIM signature: %v", err)
	}
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.test" {
		for _, v := range vs {
			t.Errorf("DKIM d=%s: %v", v.Domain, v.Err)
		}
		t.Fatalf("%d signature(s), want one of example.test that verifies", len(vs))
	}
}
