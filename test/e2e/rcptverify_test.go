package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// startDovecotUsers is startDovecot with a passwd-file userdb of the
// users in testdata/e2e/dovecot-users: LMTP refuses the others, and the
// auth-userdb socket answers lookups.
func startDovecotUsers(t *testing.T) *dovecot {
	t.Helper()
	return startDovecot(t, testdata("dovecot-users"))
}

// socket is the auth-userdb socket of a Dovecot with a users file.
func (d *dovecot) socket() string { return filepath.Join(d.dir, "run", "auth-userdb") }

// stop stops Dovecot before the test ends: the store is down.
func (d *dovecot) stop(t *testing.T) { peertest.Run(t, "stop", "dovecot-lmtp", d.dir) }

// verifyConfig is the e2e config template with verify_recipients on
// [downstream] and a short lookup timeout.
func verifyConfig(t *testing.T, verify string) string {
	t.Helper()
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	const url = `url             = "{{.Downstream}}"`
	text := strings.Replace(string(b), url, url+"\nverify_recipients = \""+verify+"\"", 1)
	text = strings.Replace(text, `domains          = ["example.test"]`, `domains          = ["example.test", "catchall.test"]`, 1)
	text += "\n[recipient_verify]\ntimeout = \"2s\"\nidle_timeout = \"1s\"\n"
	path := filepath.Join(t.TempDir(), "mxgate.toml.tmpl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	unknownReply   = "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"
	storeDownReply = "451 4.4.3 <carol@example.test>: Recipient address verification failed: mail store not available"
)

// rcpt opens a session from a client, gives MAIL and returns the reply to
// RCPT TO:<to>, lines joined.
func rcpt(t *testing.T, g *mxgate, to string) string {
	t.Helper()
	return rcptReply(t, "127.0.0.1", g.addr, "a@sender.test", to).String()
}

// bh runs `mxgate -bh IP` on g's config with the SMTP command lines as
// its input and returns what it printed, trace and replies.
func bh(t *testing.T, g *mxgate, ip string, lines ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "-config", g.cfgPath, "-bh", ip)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\r\n") + "\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mxgate -bh %s: %v\n%s", ip, err, out)
	}
	return string(out)
}

// TestRecipientVerify runs each source against a real Dovecot LMTP store
// with a passwd-file userdb: an unknown user is refused at RCPT and
// nothing is queued or delivered; known users, a sub-address and a
// capitalised local part among them, are delivered into their Maildirs;
// with the source down a new address gets 451 at RCPT, while an answer
// in the cache still counts.
func TestRecipientVerify(t *testing.T) {
	t.Parallel()
	for _, source := range []string{"callout", "dovecot", "file"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			d := startDovecotUsers(t)
			var verify, list string
			switch source {
			case "callout":
				verify = "callout"
			case "dovecot":
				verify = "dovecot:" + d.socket()
			case "file":
				list = filepath.Join(t.TempDir(), "recipients")
				verify = "file:" + list
			}
			g := startMxgateConfig(t, verifyConfig(t, verify), d.URL())

			if source == "file" {
				// A list that is not there yet is a store that is down;
				// once written it is read with no restart.
				if got := rcpt(t, g, "carol@example.test"); got != storeDownReply {
					t.Errorf("RCPT before the list exists -> %q, want %q", got, storeDownReply)
				}
				b, err := os.ReadFile(testdata("recipients"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(list, b, 0o644); err != nil {
					t.Fatal(err)
				}
				time.Sleep(1100 * time.Millisecond) // the list is looked at once a second
			}

			c := mustDial(t, "127.0.0.1", g.addr)
			c.expect(t, "EHLO client.test", 250)
			c.expect(t, "MAIL FROM:<a@sender.test>", 250)
			if r, _ := c.cmd("RCPT TO:<nobody@example.test>"); r.String() != unknownReply {
				t.Errorf("RCPT unknown user -> %q, want %q", r, unknownReply)
			}
			if r, _ := c.cmd("DATA"); r.Code/100 != 5 {
				t.Errorf("DATA without a recipient -> %v, want 5xx", r)
			}
			c.expect(t, "RSET", 250)
			msg := readTestdata(t, "message.eml")
			id := c.send(t, "a@sender.test", []string{"known@example.test", "Bob+news@example.test"}, dataBytes(msg))
			c.expect(t, "QUIT", 221)
			g.waitCompleted(id)
			if ids := g.spooled(); len(ids) != 0 {
				t.Errorf("spool holds %v, want nothing", ids)
			}
			for _, local := range []string{"known", "bob"} {
				if files := d.newMail(t, "example.test", local); len(files) != 1 {
					t.Errorf("%s@example.test: %d messages delivered, want 1", local, len(files))
				}
			}
			if _, err := os.Stat(filepath.Join(d.dir, "mail", "example.test", "nobody")); !os.IsNotExist(err) {
				t.Errorf("a Maildir for nobody@example.test: %v", err)
			}

			rejects := g.rejectlog()
			want := map[string]string{
				"callout": `rejected RCPT <nobody@example.test>: response to "RCPT TO:<nobody@example.test>" from 127.0.0.1 [127.0.0.1] was: 550 5.1.1 <nobody@example.test> User doesn't exist: nobody@example.test`,
				"dovecot": `rejected RCPT <nobody@example.test>: Unrouteable address (dovecot userdb ` + d.socket() + `: NOTFOUND)`,
				"file":    `rejected RCPT <nobody@example.test>: Unrouteable address (not in recipients file ` + list + `)`,
			}[source]
			// 127.0.0.1 is "localhost" by /etc/hosts (host_lookup).
			if !slices.Contains(rejects, "H=localhost (client.test) [127.0.0.1] F=<a@sender.test> "+want) {
				t.Errorf("rejectlog lacks %q:\n%s", want, strings.Join(rejects, "\n"))
			}

			if source == "callout" {
				// -bh asks the store too, with a cache of its own.
				trace := bh(t, g, "127.0.0.1", "EHLO client.test", "MAIL FROM:<a@sender.test>",
					"RCPT TO:<Known@example.test>", "RCPT TO:<known@example.test>", "RCPT TO:<nobody@example.test>", "QUIT")
				via := "callout to lmtp " + strings.TrimPrefix(d.URL(), "lmtp://")
				for _, want := range []string{
					">>> recipient verify for <Known@example.test>: " + via + " as <known@example.test>: found (accepted by lmtp ",
					">>> recipient verify for <known@example.test>: " + via + " (cached): found",
					">>> recipient verify for <nobody@example.test>: " + via + ": not found (response to \"RCPT TO:<nobody@example.test>\"",
					unknownReply,
				} {
					if !strings.Contains(trace, want) {
						t.Errorf("-bh output lacks %q:\n%s", want, trace)
					}
				}
			}
			if source == "file" {
				if got := rcpt(t, g, "anyone@catchall.test"); !strings.HasPrefix(got, "250 ") {
					t.Errorf("RCPT to a catch-all domain -> %q, want 250", got)
				}
				return
			}
			d.stop(t)
			// Dovecot's processes answer on the connections they hold
			// while they shut down: the pooled one has to go idle first.
			time.Sleep(1500 * time.Millisecond)
			if got := rcpt(t, g, "carol@example.test"); got != storeDownReply {
				t.Errorf("RCPT with the store down -> %q, want %q", got, storeDownReply)
			}
			if got := rcpt(t, g, "known@example.test"); !strings.HasPrefix(got, "250 ") {
				t.Errorf("RCPT of a cached user with the store down -> %q, want 250", got)
			}
			if got := rcpt(t, g, "nobody@example.test"); got != unknownReply {
				t.Errorf("RCPT of a cached unknown user with the store down -> %q, want %q", got, unknownReply)
			}
			g.stop()
		})
	}
}
