package e2e

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// daemonLine matches a mainlog or paniclog line of no message:
// "DATE TIME text", text matching the regular expression pattern.
func daemonLine(pattern string) *regexp.Regexp {
	return regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ` + pattern)
}

// countLines is how many of lines match re.
func countLines(lines []string, re *regexp.Regexp) int {
	n := 0
	for _, l := range lines {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// waitLog waits until some mainlog line matches re.
func (g *mxgate) waitLog(re *regexp.Regexp) {
	g.t.Helper()
	waitFor(g.t, readyTimeout, func() string {
		if countLines(g.mainlog(), re) == 0 {
			return fmt.Sprintf("a mainlog line matching %q", re)
		}
		return ""
	})
}

// editConfig rewrites the daemon's config file, replacing each old text
// (which must be there) by its new one.
func (g *mxgate) editConfig(oldnew ...string) {
	g.t.Helper()
	b, err := os.ReadFile(g.cfgPath)
	if err != nil {
		g.t.Fatal(err)
	}
	text := string(b)
	for i := 0; i < len(oldnew); i += 2 {
		if !strings.Contains(text, oldnew[i]) {
			g.t.Fatalf("config %s has no %q:\n%s", g.cfgPath, oldnew[i], text)
		}
		text = strings.Replace(text, oldnew[i], oldnew[i+1], 1)
	}
	if err := os.WriteFile(g.cfgPath, []byte(text), 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// rcptCode opens a session from local and answers one RCPT (after a MAIL that
// must be accepted) with its reply code.
func rcptCode(t *testing.T, local, addr, rcpt string) int {
	t.Helper()
	return rcptReply(t, local, addr, "alice@example.test", rcpt).Code
}

const (
	trustedLine   = `trusted_networks = ["127.0.0.2/32"]`
	untrustedLine = `trusted_networks = []`
	domainsLine   = `domains          = ["example.test"]`
	moreDomains   = `domains          = ["example.test", "new.test"]`
)

// TestReload is issue 13's second "done when": the relay policy changes
// under a running daemon by SIGHUP and by `mxgate reload`; a session open
// across the reload completes its message on the policy it began with;
// a broken config is refused (paniclog, file:line) and the old policy
// keeps serving, and `mxgate reload` refuses to signal for it.
func TestReload(t *testing.T) {
	requireCommand(t, "reload")
	ds := startScripted(t)
	g := startMxgate(t, ds.URL())
	msg, err := os.ReadFile(testdata("message.eml"))
	if err != nil {
		t.Fatal(err)
	}

	// 127.0.0.2 is trusted: it relays to any domain. Keep its session
	// in the middle of a transaction across the reload.
	old := mustDial(t, "127.0.0.2", g.addr)
	old.expect(t, "EHLO client.test", 250)
	old.expect(t, "MAIL FROM:<alice@example.test>", 250)
	old.expect(t, "RCPT TO:<bob@outside.test>", 250)

	g.editConfig(trustedLine, untrustedLine, domainsLine, moreDomains)
	g.signal(syscall.SIGHUP)
	g.waitLog(daemonLine(`configuration reloaded: generation 2$`))
	if n := countLines(g.mainlog(), daemonLine(`reloading configuration from `+regexp.QuoteMeta(g.cfgPath)+`$`)); n != 1 {
		t.Errorf("%d \"reloading configuration from %s\" lines, want 1", n, g.cfgPath)
	}

	// A new session has the new policy: no relaying, new.test accepted.
	if code := rcptCode(t, "127.0.0.2", g.addr, "carol@outside.test"); code != 550 {
		t.Errorf("after the reload, RCPT to outside.test from 127.0.0.2: %d, want 550 (no longer trusted)", code)
	}
	if code := rcptCode(t, "127.0.0.1", g.addr, "dave@new.test"); code != 250 {
		t.Errorf("after the reload, RCPT to new.test: %d, want 250 (a relay domain now)", code)
	}

	// The old session finishes on the old one, not dropped.
	old.expect(t, "RCPT TO:<erin@outside.test>", 250)
	old.expect(t, "DATA", 354)
	if err := old.write(dataBytes(msg)); err != nil {
		t.Fatal(err)
	}
	r, err := old.read()
	if err != nil || r.Code != 250 || r.ID() == "" {
		t.Fatalf("end of data in the session begun before the reload: %v, %v; want 250 with id=", r, err)
	}
	old.expect(t, "QUIT", 221)
	g.waitCompleted(r.ID())
	g.requireLog(r.ID(), `=> bob@outside.test R=smarthost`, `-> erin@outside.test R=smarthost`)

	// `mxgate reload`: trusted again; a listen change is not applied.
	g.editConfig(untrustedLine, trustedLine, `listen   = ["`+g.addr+`"]`, `listen   = ["127.0.0.1:1"]`)
	if out := g.mustCLI("reload", "--wait", "20s"); out != "configuration reloaded: generation 3\n" {
		t.Errorf("mxgate reload printed %q, want \"configuration reloaded: generation 3\\n\"", out)
	}
	if countLines(g.mainlog(), daemonLine(regexp.QuoteMeta("listen changed: restart needed (the old value stays in force)")+"$")) != 1 {
		t.Error("no mainlog line \"listen changed: restart needed\"")
	}
	if code := rcptCode(t, "127.0.0.2", g.addr, "frank@outside.test"); code != 250 {
		t.Errorf("after mxgate reload, RCPT to outside.test from 127.0.0.2: %d, want 250 (trusted again)", code)
	}

	// A broken config: refused by the daemon, which serves on.
	b, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.cfgPath, append([]byte("relay_domains = [\"x.test\"]\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	wantErr := g.cfgPath + `:1: unknown key "relay_domains"`
	g.signal(syscall.SIGHUP)
	refused := daemonLine(regexp.QuoteMeta(fmt.Sprintf("configuration reload from %s refused, generation 3 still serving: %s", g.cfgPath, wantErr)))
	waitFor(t, readyTimeout, func() string {
		if countLines(g.paniclog(), refused) == 0 {
			return fmt.Sprintf("a paniclog line matching %q", refused)
		}
		return ""
	})
	if !g.running() {
		t.Fatal("the daemon exited on a broken config")
	}
	if code := rcptCode(t, "127.0.0.2", g.addr, "gina@outside.test"); code != 250 {
		t.Errorf("after a refused reload, RCPT to outside.test from 127.0.0.2: %d, want 250 (generation 3 still serving)", code)
	}

	// `mxgate reload` checks first and does not signal.
	reloads := countLines(g.mainlog(), daemonLine(`reloading configuration from `))
	res := g.cli("reload")
	if res.code != 1 || res.stdout != "" || !strings.Contains(res.stderr, wantErr) {
		t.Errorf("mxgate reload on a broken config: status %d, stdout %q, stderr %q; want status 1 and %q", res.code, res.stdout, res.stderr, wantErr)
	}
	if n := countLines(g.mainlog(), daemonLine(`reloading configuration from `)); n != reloads {
		t.Errorf("mxgate reload signalled the daemon for a broken config (%d reload lines, was %d)", n, reloads)
	}
	g.stop()
}

// TestReloadTLS: SNI picks the certificate by the client's server name
// (the default without one); `mxgate reload` makes the daemon serve a
// renewed certificate without a restart, and refuses a broken one (exit
// 1, the daemon's reason), the renewed certificate still served.
func TestReloadTLS(t *testing.T) {
	requireCommand(t, "reload")
	ds := startScripted(t)
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	def := tlstest.WriteFiles(t, file("default.pem"), file("default.key"), "mx.example.test")
	other := tlstest.WriteFiles(t, file("other.pem"), file("other.key"), "mail.other.test")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "\n[smtp]\n", fmt.Sprintf(`
listen_tls = [%q]

[tls]
cert = %q
key  = %q

[[tls.certificate]]
cert = %q
key  = %q

[smtp]
`, tlsAddr, file("default.pem"), file("default.key"), file("other.pem"), file("other.key")), 1)
	tmpl := file("reload-tls.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startMxgateConfig(t, tmpl, ds.URL())

	served := func(name string) []byte {
		t.Helper()
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: replyTimeout}, Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}}
		c, err := d.Dial("tcp", tlsAddr)
		if err != nil {
			t.Fatalf("TLS to %s as %q: %v", tlsAddr, name, err)
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw
	}
	for _, tc := range []struct {
		name string
		want []byte
	}{{"mail.other.test", other}, {"mx.example.test", def}, {"elsewhere.test", def}, {"", def}} {
		if !bytes.Equal(served(tc.name), tc.want) {
			t.Errorf("SNI %q: not the certificate for that name", tc.name)
		}
	}

	renewed := tlstest.WriteFiles(t, file("other.pem"), file("other.key"), "mail.other.test")
	if out := g.mustCLI("reload"); out != "configuration reloaded: generation 2\n" {
		t.Errorf("mxgate reload printed %q", out)
	}
	if !bytes.Equal(served("mail.other.test"), renewed) {
		t.Error("after mxgate reload the renewed certificate is not served")
	}

	if err := os.WriteFile(file("other.key"), []byte("-----BEGIN EC PRIVATE KEY-----\nbroken\n-----END EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// mxgate reload loads the key as the daemon would and does not signal.
	res := g.cli("reload")
	bad := fmt.Sprintf("%s:15: key \"tls.certificate[0].key\": %s with certificate %s: ", g.cfgPath, file("other.key"), file("other.pem"))
	if res.code != 1 || res.stdout != "" || !strings.HasPrefix(res.stderr, "mxgate: not reloading: "+bad) {
		t.Errorf("mxgate reload with a broken key: status %d, stdout %q, stderr %q; want status 1 and %q...", res.code, res.stdout, res.stderr, "mxgate: not reloading: "+bad)
	}
	// A SIGHUP all the same (systemctl reload): refused by the daemon.
	g.signal(syscall.SIGHUP)
	refused := daemonLine(regexp.QuoteMeta(fmt.Sprintf("configuration reload from %s refused, generation 2 still serving: %s", g.cfgPath, bad)))
	g.waitLog(refused)
	if countLines(g.paniclog(), refused) != 1 {
		t.Errorf("no paniclog line %s:\n%s", refused, strings.Join(g.paniclog(), "\n"))
	}
	if !bytes.Equal(served("mail.other.test"), renewed) {
		t.Error("after a refused reload the renewed certificate is no longer served")
	}
	g.stop()
}
