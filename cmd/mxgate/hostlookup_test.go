package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"mxgate/internal/dnstest"
)

// hostLookupConfig turns host_lookup on in the config at cfgPath (made by
// routedConfig), asking a fake DNS that serves z.
func hostLookupConfig(t *testing.T, cfgPath string, z dnstest.Zone) {
	t.Helper()
	srv := dnstest.StartZone(t, z)
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	on := strings.Replace(string(b), "[host_lookup]\nenabled = false\n",
		"[host_lookup]\nenabled = true\nresolver = \""+srv.Addr+"\"\ntimeout = \"2s\"\n", 1)
	if on == string(b) {
		t.Fatal("the test config has no [host_lookup] to turn on")
	}
	if err := os.WriteFile(cfgPath, []byte(on), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHostTestHostLookup: -bh looks the client's name up as the daemon
// does and traces it, Exim's way: the PTR names, the forward check of
// each, and the name H= then shows; a name that does not confirm is
// traced, never logged or used.
func TestHostTestHostLookup(t *testing.T) {
	zone := dnstest.Zone{
		"1.2.0.192.in-addr.arpa. PTR": {"1.2.0.192.in-addr.arpa. 300 IN PTR mail.client.test."},
		"mail.client.test. A":         {"mail.client.test. 300 IN A 192.0.2.1"},
		"2.2.0.192.in-addr.arpa. PTR": {"2.2.0.192.in-addr.arpa. 300 IN PTR bank.test."},
		"bank.test. A":                {"bank.test. 300 IN A 198.51.100.1"},
	}
	session := "HELO client.test\nMAIL FROM:<a@client.test>\nRCPT TO:<u@other.test>\nQUIT\n"
	tests := []struct{ ip, trace string }{{
		ip: "192.0.2.1",
		trace: ">>> host in relay.trusted_networks? no\n" +
			">>> looking up host name for 192.0.2.1\n" +
			">>> IP address lookup yielded \"mail.client.test\"\n" +
			">>> checking addresses for mail.client.test: 192.0.2.1 OK\n" +
			">>> host name = mail.client.test\n" +
			">>> MAIL <a@client.test>: accepted\n" +
			">>> RCPT <u@other.test>: relay not permitted\n" +
			"LOG: H=mail.client.test (client.test) [192.0.2.1] F=<a@client.test> rejected RCPT <u@other.test>: relay not permitted\n",
	}, {
		ip: "192.0.2.2",
		trace: ">>> host in relay.trusted_networks? no\n" +
			">>> looking up host name for 192.0.2.2\n" +
			">>> IP address lookup yielded \"bank.test\"\n" +
			">>> no IP address for bank.test matched 192.0.2.2 (198.51.100.1)\n" +
			">>> 192.0.2.2 does not match any IP address for bank.test: no host name\n" +
			">>> MAIL <a@client.test>: accepted\n" +
			">>> RCPT <u@other.test>: relay not permitted\n" +
			"LOG: H=(client.test) [192.0.2.2] F=<a@client.test> rejected RCPT <u@other.test>: relay not permitted\n",
	}, {
		ip: "192.0.2.3",
		trace: ">>> host in relay.trusted_networks? no\n" +
			">>> looking up host name for 192.0.2.3\n" +
			">>> IP address lookup yielded no name\n" +
			"LOG: no host name found for IP address 192.0.2.3\n" +
			">>> MAIL <a@client.test>: accepted\n" +
			">>> RCPT <u@other.test>: relay not permitted\n" +
			"LOG: H=(client.test) [192.0.2.3] F=<a@client.test> rejected RCPT <u@other.test>: relay not permitted\n",
	}}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			cfg, _ := routedConfig(t, `mode = "none"`, "", `url = "smtp://127.0.0.1:2600"`)
			hostLookupConfig(t, cfg, zone)
			var stdout, stderr bytes.Buffer
			if code := run([]string{"mxgate", "-config", cfg, "-bh", tt.ip}, strings.NewReader(session), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			if stderr.String() != tt.trace {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), tt.trace)
			}
		})
	}
}
