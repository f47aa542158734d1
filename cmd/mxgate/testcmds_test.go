package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mxgate/internal/dnstest"
	"mxgate/internal/tlstest"
)

// gatewayConfig writes a config for mail to example.test from
// 127.0.0.1, delivering to url and sending nothing out, and returns its
// path and data_dir. The file ends in [downstream], for a test to add to.
func gatewayConfig(t *testing.T, url string) (cfgPath, dataDir string) {
	return routedConfig(t, `mode = "none"`, "", `url = "`+url+`"`)
}

// routedConfig is gatewayConfig with outbound, routes and downstream as
// the bodies of [outbound], the [[route]] sections and [downstream].
func routedConfig(t *testing.T, outbound, routes, downstream string) (cfgPath, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "var")
	cfgPath = filepath.Join(dir, "mxgate.toml")
	conf := `hostname = "mx.example.test"
listen   = ["127.0.0.1:0"]
data_dir = "` + dataDir + `"

[relay]
domains          = ["example.test", "mx.example.test", "hosted.test", "other.example"]
trusted_networks = ["127.0.0.1/32"]

# Clients are named only where a test says so, by its own fake DNS
# (hostLookupConfig): the machine's resolver answers as it likes.
[host_lookup]
enabled = false

[outbound]
` + outbound + `
` + routes + `
[downstream]
` + downstream + `
`
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dataDir
}

func TestRouteTestCommand(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		store    string // more [downstream] keys
		outbound string // [outbound]; `mode = "none"` when empty
		routes   string // [[route]] sections
		addrs    []string
		want     string
		wantCode int
	}{
		{
			name:  "smtp downstream",
			url:   "smtp://127.0.0.1:2600",
			addrs: []string{"user@Example.TEST"},
			want: "user@example.test\n" +
				"  router = downstream, transport = smtp\n" +
				"  host 127.0.0.1 [127.0.0.1] port=2600\n" +
				"  verify = none\n",
		},
		{
			name:  "lmtp over TCP, IPv6",
			url:   "lmtp://[::1]:24",
			addrs: []string{"user@example.test"},
			want: "user@example.test\n" +
				"  router = downstream, transport = lmtp\n" +
				"  host ::1 [::1] port=24\n" +
				"  verify = none\n",
		},
		{
			name:  "lmtp socket",
			url:   "lmtp+unix:///run/dovecot/lmtp",
			addrs: []string{"user@example.test"},
			want: "user@example.test\n" +
				"  router = downstream, transport = lmtp\n" +
				"  socket /run/dovecot/lmtp\n" +
				"  verify = none\n",
		},
		{
			name:  "maildir: sub-address and case as the store's",
			url:   "maildir:///srv/mail",
			addrs: []string{"user@example.test", "Root+tag@mx.example.test"},
			want: "user@example.test\n" +
				"  router = downstream, transport = maildir\n" +
				"  maildir /srv/mail/example.test/user\n" +
				"  verify = none\n" +
				"Root+tag@mx.example.test\n" +
				"  router = downstream, transport = maildir\n" +
				"  maildir /srv/mail/mx.example.test/root\n" +
				"  verify = none\n",
		},
		{
			name:  "routes: by domain, with their verification",
			url:   "lmtp://127.0.0.1:24",
			store: `verify_recipients = "callout"`,
			routes: `[[route]]
name    = "other"
domains = ["other.example"]
url     = "smtp://127.0.0.1:2601"
verify_recipients = "file:/etc/mxgate/recipients"
over_quota = "discard"

[[route]]
domains = ["partner.test"]
url     = "smtp://127.0.0.1:2602"
`,
			addrs: []string{"a@example.test", "b@other.example", "c@partner.test"},
			want: "a@example.test\n" +
				"  router = downstream, transport = lmtp\n" +
				"  host 127.0.0.1 [127.0.0.1] port=24\n" +
				"  verify = callout\n" +
				"b@other.example\n" +
				"  router = other, transport = smtp\n" +
				"  host 127.0.0.1 [127.0.0.1] port=2601\n" +
				"  verify = file:/etc/mxgate/recipients\n" +
				"c@partner.test\n" +
				"  router = partner.test, transport = smtp\n" +
				"  host 127.0.0.1 [127.0.0.1] port=2602\n" +
				"  verify = none\n" +
				"  not a relay domain: only clients in relay.trusted_networks, local programs (sendmail) and mxgate's own bounces may send to it\n",
		},
		{
			name:     "not a relay domain, nothing sent out",
			url:      "smtp://127.0.0.1:2600",
			addrs:    []string{"user@example.test", "user@other.test"},
			wantCode: 2,
			want: "user@example.test\n" +
				"  router = downstream, transport = smtp\n" +
				"  host 127.0.0.1 [127.0.0.1] port=2600\n" +
				"  verify = none\n" +
				"user@other.test is undeliverable: Unrouteable address (other.test is not a relay domain, no [[route]] names it, and outbound.mode is \"none\")\n",
		},
		{
			name:     "not a relay domain, through the smarthost",
			url:      "smtp://127.0.0.1:2600",
			outbound: "mode = \"smarthost\"\nsmarthost = \"smtp://127.0.0.1:2700\"\nstarttls = \"none\"",
			addrs:    []string{"user@other.test"},
			want: "user@other.test\n" +
				"  router = smarthost, transport = smtp\n" +
				"  host 127.0.0.1 [127.0.0.1] port=2700\n" +
				"  not a relay domain: only clients in relay.trusted_networks, local programs (sendmail) and mxgate's own bounces may send to it\n",
		},
		{
			name:     "address tricks",
			url:      "smtp://127.0.0.1:2600",
			addrs:    []string{"u%other.test@example.test", "other.test!u@example.test", "u@[192.0.2.1]"},
			wantCode: 2,
			want: "u%other.test@example.test is undeliverable: Restricted characters in address\n" +
				"other.test!u@example.test is undeliverable: Restricted characters in address\n" +
				"u@[192.0.2.1] is undeliverable: relay not permitted (address literals are never relayed)\n",
		},
		{
			name:     "bad syntax",
			url:      "smtp://127.0.0.1:2600",
			addrs:    []string{"user@"},
			wantCode: 1,
			want:     "user@ is undeliverable: malformed address: \"user@\": empty domain\n",
		},
		{
			name:     "bad syntax and undeliverable: the worse wins",
			url:      "smtp://127.0.0.1:2600",
			addrs:    []string{"user@", "user@other.test"},
			wantCode: 2,
			want: "user@ is undeliverable: malformed address: \"user@\": empty domain\n" +
				"user@other.test is undeliverable: Unrouteable address (other.test is not a relay domain, no [[route]] names it, and outbound.mode is \"none\")\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outbound := tt.outbound
			if outbound == "" {
				outbound = `mode = "none"`
			}
			cfg, dataDir := routedConfig(t, outbound, tt.routes, `url = "`+tt.url+"\"\n"+tt.store)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"mxgate", "-config", cfg, "-bt"}, tt.addrs...), strings.NewReader(""), &stdout, &stderr)
			if code != tt.wantCode || stdout.String() != tt.want || stderr.Len() != 0 {
				t.Errorf("exit %d, stdout:\n%s\nstderr: %q\nwant exit %d, stdout:\n%s", code, stdout.String(), stderr.String(), tt.wantCode, tt.want)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("-bt created %s (err %v)", dataDir, err)
			}
		})
	}
}

// TestRouteTestMXPlan: -bt asks the MX transport the daemon delivers by,
// with its settings: MTA-STS enforce that allows none of a domain's MX
// hosts cannot be resolved now (the daemon defers), the policy is kept in
// memory (nothing created under data_dir), and a DNS lookup waits
// outbound.command_timeout, as a delivery's does, not connect_timeout.
func TestRouteTestMXPlan(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	policyPort := tlstest.ServeMTASTS(t, ca, "mta-sts.strict.test", "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	zone := dnstest.StartZone(t, dnstest.Zone{
		"strict.test. MX":           {"strict.test. 60 IN MX 10 mail.strict.test."},
		"mail.strict.test. A":       {"mail.strict.test. 60 IN A 192.0.2.1"},
		"_mta-sts.strict.test. TXT": {`_mta-sts.strict.test. 60 IN TXT "v=STSv1; id=1"`},
		"mta-sts.strict.test. A":    {"mta-sts.strict.test. 60 IN A 127.0.0.1"},
		"slow.test. DROP":           nil,
	})
	outbound := fmt.Sprintf("mode = \"mx\"\nresolver = %q\nmta_sts = \"enforce\"\nmta_sts_port = %d\nca_file = %q\nconnect_timeout = \"1s\"\ncommand_timeout = \"2s\"",
		zone.Addr, policyPort, caFile)
	cfg, dataDir := routedConfig(t, outbound, "", `url = "smtp://127.0.0.1:2600"`)
	tests := []struct {
		addr, want string
		minTime    time.Duration
	}{
		{"x@strict.test", "x@strict.test cannot be resolved at this time: MTA-STS policy of strict.test (enforce) allows none of its MX hosts (mail.strict.test)\n", 0},
		{"x@slow.test", "x@slow.test cannot be resolved at this time: DNS lookup of the MX hosts of slow.test failed: ", 1900 * time.Millisecond},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := run([]string{"mxgate", "-config", cfg, "-bt", tt.addr}, strings.NewReader(""), &stdout, &stderr)
		if took := time.Since(start); code != 1 || !strings.HasPrefix(stdout.String(), tt.want) || stderr.Len() != 0 || took < tt.minTime {
			t.Errorf("-bt %s: exit %d after %v, stdout %q, stderr %q; want exit 1 after %v at least, stdout starting %q", tt.addr, code, took, stdout.String(), stderr.String(), tt.minTime, tt.want)
		}
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("-bt created %s (err %v)", dataDir, err)
	}
}

// TestRouteTestHostsFile: a downstream named localhost is found in
// /etc/hosts, as a delivery's dial finds it, though the resolver never
// answers.
func TestRouteTestHostsFile(t *testing.T) {
	hosts, err := os.ReadFile("/etc/hosts")
	if err != nil || !regexp.MustCompile(`(?m)^127\.0\.0\.1\s.*\blocalhost\b`).Match(hosts) {
		t.Skip("/etc/hosts does not map localhost to 127.0.0.1")
	}
	dead := dnstest.StartZone(t, dnstest.Zone{})
	dead.SetFault(dnstest.Drop)
	cfg, _ := gatewayConfig(t, "smtp://localhost:2600")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "connect_timeout = \"2s\"\n\n[rbl]\nresolver = %q\n", dead.Addr)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"mxgate", "-config", cfg, "-bt", "user@example.test"}, strings.NewReader(""), &stdout, &stderr)
	const want = "user@example.test\n" +
		"  router = downstream, transport = smtp\n" +
		"  host localhost [127.0.0.1] port=2600\n"
	if code != 0 || !strings.HasPrefix(stdout.String(), want) || stderr.Len() != 0 {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %q\nwant exit 0, stdout starting:\n%s", code, stdout.String(), stderr.String(), want)
	}
	if n := dead.Total(); n != 0 {
		t.Errorf("the resolver was asked %d questions", n)
	}
}

func TestRouteTestUsage(t *testing.T) {
	cfg, _ := gatewayConfig(t, "smtp://127.0.0.1:2600")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"mxgate", "-config", cfg, "-bt"}, strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.HasPrefix(stderr.String(), "mxgate: give one or more addresses\nusage: ") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// queueID stands for the random queue ID in the expected output.
var queueID = regexp.MustCompile(`[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}`)

func TestHostTestCommand(t *testing.T) {
	session := "EHLO client.test\r\n" +
		"MAIL FROM:<a@client.test>\r\n" +
		"RCPT TO:<u@example.test>\r\n" +
		"RCPT TO:<u@other.test>\r\n" +
		"DATA\r\n" +
		"Subject: test\r\n" +
		"\r\n" +
		"Hello.\r\n" +
		".\r\n" +
		"QUIT\r\n"
	wantOut := "**** SMTP testing session as if from host 192.0.2.1\n" +
		"**** but without any ident (RFC 1413) callback.\n" +
		"**** This is not for real!\n" +
		"\n" +
		"220 mx.example.test ESMTP Service Ready\r\n" +
		"250-Hello client.test\r\n" +
		"250-PIPELINING\r\n" +
		"250-8BITMIME\r\n" +
		"250-ENHANCEDSTATUSCODES\r\n" +
		"250-CHUNKING\r\n" +
		"250-SMTPUTF8\r\n" +
		"250-SIZE 52428800\r\n" +
		"250 LIMITS RCPTMAX=100\r\n" +
		"250 2.1.0 Sender OK\r\n" +
		"250 2.1.5 Recipient OK\r\n" +
		"550 5.7.1 relay not permitted\r\n" +
		"354 End data with <CR><LF>.<CR><LF>\r\n" +
		"250 2.0.0 OK id=ID (not queued: -bh test session)\r\n" +
		"221 2.0.0 Bye\r\n"
	wantTrace := ">>> host in relay.trusted_networks? no\n" +
		">>> MAIL <a@client.test>: accepted\n" +
		">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
		">>> RCPT <u@other.test>: relay not permitted\n" +
		"LOG: H=(client.test) [192.0.2.1] F=<a@client.test> rejected RCPT <u@other.test>: relay not permitted\n" +
		">>> DATA: accepted: S=202; not queued: test session\n"

	cfg, dataDir := gatewayConfig(t, "smtp://127.0.0.1:2600")
	var stdout, stderr bytes.Buffer
	code := run([]string{"mxgate", "-config", cfg, "-bh", "192.0.2.1"}, strings.NewReader(session), &stdout, &stderr)
	if code != 0 {
		t.Errorf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if got := queueID.ReplaceAllString(stdout.String(), "ID"); got != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, wantOut)
	}
	if stderr.String() != wantTrace {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), wantTrace)
	}
	// Nothing queued, nothing logged: not even the spool or log directory.
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("-bh created %s (err %v)", dataDir, err)
	}
}

// TestHostTestTrusted: 127.0.0.1 is trusted: it may relay, and says why,
// when something sends the mail out; with outbound "none" the recipient
// is refused at RCPT, in Exim's words. LF line ends (typed at a terminal)
// work as CRLF; an IP.PORT argument is Exim's.
func TestHostTestTrusted(t *testing.T) {
	session := "HELO client.test\nMAIL FROM:<>\nRCPT TO:<u@other.test>\nQUIT\n"
	tests := []struct {
		name, outbound, reply, trace string
	}{{
		name:     "outbound none",
		outbound: `mode = "none"`,
		reply:    "550 5.1.2 Unrouteable address\r\n221 2.0.0 Bye\r\n",
		trace: ">>> host in relay.trusted_networks? yes: may relay to any domain\n" +
			">>> MAIL <>: accepted\n" +
			">>> RCPT <u@other.test>: Unrouteable address: other.test is not a relay domain, no [[route]] names it, and outbound.mode is \"none\"\n" +
			"LOG: H=(client.test) [127.0.0.1] F=<> rejected RCPT <u@other.test>: Unrouteable address\n",
	}, {
		name:     "smarthost",
		outbound: "mode = \"smarthost\"\nsmarthost = \"smtp://127.0.0.1:2700\"",
		reply:    "250 2.1.5 Recipient OK\r\n221 2.0.0 Bye\r\n",
		trace: ">>> host in relay.trusted_networks? yes: may relay to any domain\n" +
			">>> MAIL <>: accepted\n" +
			">>> RCPT <u@other.test>: accepted: host in relay.trusted_networks\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := routedConfig(t, tt.outbound, "", `url = "smtp://127.0.0.1:2600"`)
			var stdout, stderr bytes.Buffer
			if code := run([]string{"mxgate", "-config", cfg, "-bh", "127.0.0.1.4321"}, strings.NewReader(session), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			if !strings.HasSuffix(stdout.String(), tt.reply) {
				t.Errorf("stdout:\n%s\nwant it to end in:\n%s", stdout.String(), tt.reply)
			}
			if stderr.String() != tt.trace {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), tt.trace)
			}
		})
	}
}

func TestHostTestBadIP(t *testing.T) {
	cfg, _ := gatewayConfig(t, "smtp://127.0.0.1:2600")
	for _, arg := range []string{"192.0.2", "example.test", "192.0.2.1.99999", "fe80::1%eth0.25"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"mxgate", "-config", cfg, "-bh", arg}, strings.NewReader("QUIT\r\n"), &stdout, &stderr)
		want := "mxgate: -bh: invalid IP address \"" + arg + "\" (want IP or IP.PORT)\n"
		if code != 1 || stderr.String() != want || stdout.Len() != 0 {
			t.Errorf("-bh %s: exit %d, stdout %q, stderr %q; want exit 1, %q", arg, code, stdout.String(), stderr.String(), want)
		}
	}
}
