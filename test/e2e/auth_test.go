package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// authConfig is the e2e config template with a submission listener on
// port, the TLS certificate it needs and [auth] on backend.
func authConfig(t *testing.T, port int, backend string) string {
	t.Helper()
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key := tlstest.Files(t, "mx.example.test")
	text := strings.Replace(string(b), `listen   = ["{{.Listen}}"]`,
		fmt.Sprintf("listen   = [\"{{.Listen}}\"]\nlisten_submission = [\"127.0.0.1:%d\"]", port), 1)
	text += fmt.Sprintf("\n[tls]\ncert = %q\nkey = %q\n\n[auth]\nbackend = %q\nfail_delay = \"0s\"\nmax_failures = 3\ntimeout = \"5s\"\n",
		cert, key, backend)
	path := filepath.Join(t.TempDir(), "mxgate.toml.tmpl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startTLS says STARTTLS and EHLO again under TLS; it returns the EHLO
// reply.
func (c *client) startTLS(t *testing.T) reply {
	t.Helper()
	c.expect(t, "STARTTLS", 220)
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.example.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	return c.expect(t, "EHLO client.test", 250)
}

func plainAuth(user, pass string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
}

// TestAuthSubmissionDovecot: authenticated submission against the real
// Dovecot auth service (its auth-client socket, a passwd-file passdb of
// bcrypt, SHA512-CRYPT and argon2 hashes). AUTH before STARTTLS gets 538;
// a good login relays to an outside domain (the smarthost, smtp-sink),
// logged with A=plain:USER, which eximstats reads; a foreign sender is
// refused; a From: other than the login gets Sender:; bad logins get 535,
// then 421, and the block holds for a good password too.
func TestAuthSubmissionDovecot(t *testing.T) {
	t.Parallel()
	dc := startDovecot(t, testdata("auth-users"))
	sink := startSink(t)
	port := peertest.FreePort(t, false)
	sub := fmt.Sprintf("127.0.0.1:%d", port)
	g := startMxgateOutbound(t, authConfig(t, port, "dovecot:"+filepath.Join(dc.dir, "run", "auth-client")), sink.URL(), outboundFor(sink.URL()))

	socket := filepath.Join(dc.dir, "run", "auth-client")
	// (Its stderr warns that the test certificate expires within the hour.)
	if r := g.cli("config", "check", "--probe"); r.code != 0 || !strings.Contains(r.stdout, "auth dovecot:"+socket+": OK (VERSION 1 handshake, PLAIN offered") {
		t.Errorf("config check --probe: status %d\n%s\nwant the auth-client socket OK", r.code, r.stdout)
	}

	c := mustDial(t, "127.0.0.1", sub)
	if r := c.expect(t, "EHLO client.test", 250); strings.Contains(r.Text(), "AUTH") {
		t.Errorf("AUTH advertised before STARTTLS:\n%s", r.Text())
	}
	if r := c.expect(t, plainAuth("alice@example.test", "secret"), 538); r.String() != "538 5.7.11 Encryption required for requested authentication mechanism" {
		t.Errorf("AUTH before STARTTLS -> %v", r)
	}
	if r := c.startTLS(t); !strings.Contains(r.Text(), "AUTH PLAIN LOGIN") {
		t.Errorf("AUTH PLAIN LOGIN not advertised under TLS:\n%s", r.Text())
	}
	// Every scheme of the users file, checked by Dovecot.
	for _, u := range []string{"carol@example.test", "dave@example.test"} {
		d := mustDial(t, "127.0.0.1", sub)
		d.expect(t, "EHLO client.test", 250)
		d.startTLS(t)
		d.expect(t, plainAuth(u, "secret"), 235)
		d.expect(t, "QUIT", 221)
	}
	c.expect(t, plainAuth("alice@example.test", "secret"), 235)
	if r := c.expect(t, "MAIL FROM:<eve@other.test>", 550); !strings.Contains(r.Text(), "not owned by authenticated user alice@example.test") {
		t.Errorf("foreign sender -> %v", r)
	}
	id := c.send(t, "alice@example.test", []string{"friend@outside.test"},
		dataBytes([]byte("From: Bob <bob@example.test>\nSubject: submitted\n\nrelayed after AUTH\n")))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)
	g.requireLog(id, `<= alice@example\.test H=(localhost )?\(client\.test\) \[127\.0\.0\.1\]:\d+ P=esmtpsa X=\S+ CV=no A=plain:alice@example\.test S=\d+`)
	msgs := sink.messages(t)
	if len(msgs) != 1 || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != "friend@outside.test" {
		t.Fatalf("smtp-sink got %d messages (%+v), want one for friend@outside.test", len(msgs), msgs)
	}
	if !strings.Contains(msgs[0].raw, "\nSender: alice@example.test\n") {
		t.Errorf("delivered message has no Sender: alice@example.test:\n%s", msgs[0].raw)
	}

	// Bad logins: 535 each, then 421 and the connection closed; the IP
	// stays blocked, a good password included.
	login := func(pass string, want int) {
		t.Helper()
		d := mustDial(t, "127.0.0.1", sub)
		d.expect(t, "EHLO client.test", 250)
		d.startTLS(t)
		r := d.expect(t, plainAuth("alice@example.test", pass), want)
		if want == 535 && r.String() != "535 5.7.8 Authentication credentials invalid" {
			t.Errorf("bad login -> %v", r)
		}
	}
	for range 3 {
		login("wrong", 535)
	}
	login("wrong", 421)
	login("secret", 421)

	rl, err := os.ReadFile(filepath.Join(g.dataDir, "log", "rejectlog"))
	if err != nil {
		t.Fatal(err)
	}
	// Exim's words, which fail2ban's exim filter reads.
	failed := regexp.MustCompile(`(?m) plain authenticator failed for (localhost )?\(client\.test\) \[127\.0\.0\.1\]: 535 Incorrect authentication data \(set_id=alice@example\.test\)$`)
	if n := len(failed.FindAll(rl, -1)); n != 3 {
		t.Errorf("rejectlog has %d lines matching %s, want 3:\n%s", n, failed, rl)
	}
	totals, report := eximstats(t, filepath.Join(g.dataDir, "log", "mainlog"))
	if totals.Received != 1 || totals.Delivered != 1 {
		t.Errorf("eximstats: received %d, delivered %d, want 1 and 1:\n%s", totals.Received, totals.Delivered, report)
	}
}

// TestAuthPasswdFile: the passwd-file backend reads the same users file
// (bcrypt, SHA512-CRYPT, argon2id) and logs LOGIN as A=login:USER; with
// policy "login" another address of the domain is refused; -bh, which
// has no TLS, answers AUTH with 538.
func TestAuthPasswdFile(t *testing.T) {
	t.Parallel()
	sink := startSink(t)
	port := peertest.FreePort(t, false)
	sub := fmt.Sprintf("127.0.0.1:%d", port)
	tmpl := authConfig(t, port, "passwd-file:"+testdata("auth-users"))
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmpl, append(b, "sender_policy = \"login\"\nsender_map = \""+testdata("auth-sender-logins")+"\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startMxgateOutbound(t, tmpl, sink.URL(), outboundFor(sink.URL()))
	var ids []string
	for _, u := range []string{"alice@example.test", "carol@example.test", "dave@example.test"} {
		c := mustDial(t, "127.0.0.1", sub)
		c.expect(t, "EHLO client.test", 250)
		c.startTLS(t)
		if u == "alice@example.test" { // max_failures is 3 per IP
			c.expect(t, plainAuth(u, "wrong"), 535)
		}
		c.expect(t, "AUTH LOGIN", 334)
		c.expect(t, base64.StdEncoding.EncodeToString([]byte(u)), 334)
		c.expect(t, base64.StdEncoding.EncodeToString([]byte("secret")), 235)
		c.expect(t, "MAIL FROM:<bob@example.test>", 550)
		c.expect(t, "RSET", 250)
		ids = append(ids, c.send(t, u, []string{"friend@outside.test"}, dataBytes([]byte("From: "+u+"\nSubject: own\n\nbody\n"))))
		c.expect(t, "QUIT", 221)
	}
	g.waitCompleted(ids...)
	for i, u := range []string{"alice", "carol", "dave"} {
		g.requireLog(ids[i], `<= `+u+`@example\.test .* P=esmtpsa .* A=login:`+u+`@example\.test S=`)
	}
	for _, m := range sink.messages(t) {
		if strings.Contains(m.raw, "\nSender:") {
			t.Errorf("a From: that is the login got a Sender:\n%s", m.raw)
		}
	}
	if out := bh(t, g, "192.0.2.1", "EHLO client.test", plainAuth("alice@example.test", "secret"), "QUIT"); !strings.Contains(out, "538 5.7.11 Encryption required") {
		t.Errorf("-bh AUTH:\n%s\nwant 538 5.7.11", out)
	}
	// The sender map lets alice use sales@example.org, which the login
	// policy alone refuses; the message says who sent it.
	c := mustDial(t, "127.0.0.1", sub)
	c.expect(t, "EHLO client.test", 250)
	c.startTLS(t)
	c.expect(t, plainAuth("alice@example.test", "secret"), 235)
	id := c.send(t, "sales@example.org", []string{"friend@outside.test"}, dataBytes([]byte("From: sales@example.org\nSubject: offer\n\nbody\n")))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)
	found := false
	for _, m := range sink.messages(t) {
		if strings.Contains(m.raw, "\nSubject: offer\n") {
			found = strings.Contains(m.raw, "\nSender: alice@example.test\n")
		}
	}
	if !found {
		t.Error("the message from sales@example.org did not arrive with Sender: alice@example.test")
	}
}
