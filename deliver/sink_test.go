package deliver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// sinkMessages is what the smtp-sink peertest started in dir saved: one
// file per message.
func sinkMessages(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "msg.*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// startSink runs Postfix's smtp-sink on 127.0.0.1 and returns its port
// and the directory it saves messages in.
func startSink(t *testing.T) (port int, dir string) {
	t.Helper()
	peertest.Require(t, "postfix", "smtp-sink")
	dir = t.TempDir()
	port = peertest.FreePort(t, false)
	peertest.Start(t, "smtp-sink", dir, port)
	return port, dir
}

// A message to an outside domain reaches the real MTA its MX names.
func TestMXToSink(t *testing.T) {
	port, dir := startSink(t)
	srv := dnstest.StartZone(t, dnstest.Zone{
		"outside.test. MX":     {"outside.test. 60 IN MX 10 mail.outside.test."},
		"mail.outside.test. A": {"mail.outside.test. 60 IN A 127.0.0.1"},
	})
	n := &mxNet{t: t, port: port}
	const body = "From: a@example.net\nTo: b@outside.test\nSubject: outbound\n\nA bounce, say.\n.leading dot\n"
	got := n.transport(srv, nil).Deliver(context.Background(), msg("", body, "b@outside.test"))
	if got[0].Status != Delivered || got[0].Host != "mail.outside.test [127.0.0.1]" {
		t.Fatalf("result %+v, want Delivered to mail.outside.test [127.0.0.1]", got[0])
	}
	msgs := sinkMessages(t, dir)
	if len(msgs) != 1 {
		t.Fatalf("the sink saved %d messages, want 1", len(msgs))
	}
	// smtp-sink saves the envelope as X- lines, its Received: line, then
	// the message as it arrived (LF line ends, dots unstuffed).
	for _, want := range []string{"X-Helo-Args: gw.example.net\n", "X-Mail-Args: <> BODY=8BITMIME\n", "X-Rcpt-Args: <b@outside.test>\n", "\n" + body} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("the sink saved:\n%q\nwant it to hold %q", msgs[0], want)
		}
	}
}

// MTA-STS enforce refuses an MX host the domain's policy does not list:
// nothing reaches it, and the recipient waits with an error naming
// MTA-STS.
func TestMXMTASTSRefusesSink(t *testing.T) {
	port, dir := startSink(t)
	ca := tlstest.NewCA(t, "Test CA")
	policyPort := tlstest.ServeMTASTS(t, ca, "mta-sts.example.test", "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n")
	srv := dnstest.StartZone(t, dnstest.Zone{
		"example.test. MX":           {"example.test. 60 IN MX 10 mail.example.test."},
		"mail.example.test. A":       {"mail.example.test. 60 IN A 127.0.0.1"},
		"_mta-sts.example.test. TXT": {`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=20261206"`},
		"mta-sts.example.test. A":    {"mta-sts.example.test. 60 IN A 127.0.0.1"},
	})
	n := &mxNet{t: t, port: port}
	tr := n.transport(srv, func(o *MXOptions) {
		o.MTASTS, o.MTASTSPort, o.RootCAs = "enforce", policyPort, ca.Pool
		o.MTASTSCache = filepath.Join(t.TempDir(), "mta-sts.json")
	})
	got := tr.Deliver(context.Background(), msg("s@example.net", "Subject: x\n\nhi\n", "b@example.test"))
	checkResults(t, got, []Result{{Rcpt: "b@example.test", Status: Deferred, Reason: PolicyRefused,
		Err: "MTA-STS policy of example.test (enforce) allows none of its MX hosts (mail.example.test)"}})
	if msgs := sinkMessages(t, dir); len(msgs) != 0 {
		t.Errorf("the sink got %d messages, want none", len(msgs))
	}
}

// Against a real server that offers AUTH without TLS (smtp-sink has no
// TLS): the smarthost password is never sent, nothing is delivered, and
// the recipient waits.
func TestSmarthostSinkNoClearTextAuth(t *testing.T) {
	port, dir := startSink(t)
	for _, mode := range []string{"opportunistic", "required"} {
		o := testOptions()
		o.StartTLS, o.AuthUser, o.AuthPassword = mode, "relay", "secret"
		tr := newTransport(t, fmt.Sprintf("smtp://127.0.0.1:%d", port), o)
		got := tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@outside.test"))
		want := Result{Rcpt: "a@outside.test", Status: Deferred, Reason: AuthFailed, Host: host,
			Err: "AUTH is configured, but the session is not encrypted: the password is not sent in clear text"}
		if mode == "required" {
			want.Reason, want.Err = TLSRequired, "a TLS session is required, but the server did not offer TLS support"
		}
		checkResults(t, got, []Result{want})
	}
	if msgs := sinkMessages(t, dir); len(msgs) != 0 {
		t.Errorf("the sink got %d messages, want none", len(msgs))
	}
}
