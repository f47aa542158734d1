package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trackTimeout bounds the wait for the daemon's tracking writer, which
// commits every 200 ms, to have written what the test did.
const trackTimeout = 10 * time.Second

// TestTrackCLI: what the built gateway did is in its tracking database,
// as `mxgate track` shows it beside the running daemon: a message
// accepted and delivered with its timeline, and an attempt refused at
// RCPT with the reply the client got ("why didn't I get the mail from
// X?").
func TestTrackCLI(t *testing.T) {
	requirePrograms(t, "smtp-sink")
	s := startSink(t)
	g := startMxgate(t, s.URL())

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"bob@example.test"}, dataBytes(readTestdata(t, "message.eml")))
	c.expect(t, "QUIT", 221)
	if r := rcptReply(t, "127.0.0.1", g.addr, "mallory@bad.test", "victim@foreign.test"); r.Code != 550 {
		t.Fatalf("RCPT to a foreign domain -> %v, want 550", r)
	}
	g.waitCompleted(id)

	track := func(args ...string) func() string {
		return func() string {
			r := g.cli(append([]string{"track"}, args...)...)
			return fmt.Sprintf("exit %d, stdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	}
	for _, tt := range []struct {
		args []string
		want []*regexp.Regexp
	}{
		{[]string{"--sender", "@bad.test"}, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^\S+ \S+\s+#\d+\s+127\.0\.0\.1\s+<mallory@bad\.test>\s+victim@foreign\.test\s+rejected\s+550 5\.7\.1 \S`),
			regexp.MustCompile(`(?m)^1 messages$`),
		}},
		{[]string{id}, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^Message ` + id + ` \(#\d+\) on `),
			regexp.MustCompile(`(?m)^\s+Sender:\s+<alice@sender\.test>$`),
			regexp.MustCompile(`(?m)^\s+Recipients:\s+<bob@example\.test> delivered: 250 `),
			regexp.MustCompile(`(?m)^\s+Verdict:\s+delivered`),
			regexp.MustCompile(`(?m)\s+connect\s+connection from .*\[127\.0\.0\.1\] on smtp$`),
			regexp.MustCompile(`(?m)\s+accepted\s+accepted as ` + id + `: <alice@sender\.test> for <bob@example\.test>, \d+ bytes$`),
			regexp.MustCompile(`(?m)\s+delivery\s+delivered to bob@example\.test via `),
			regexp.MustCompile(`(?m)\s+completed\s+completed$`),
		}},
	} {
		waitFor(t, trackTimeout, func() string {
			out := track(tt.args...)()
			for _, re := range tt.want {
				if !re.MatchString(out) {
					return fmt.Sprintf("`mxgate track %s` to match %s; it printed %s", strings.Join(tt.args, " "), re, out)
				}
			}
			return ""
		})
	}
}

// TestTrackingFileAsUser: a tracking database outside data_dir, in a
// directory the daemon (started as root, switching to its user) makes:
// the directory is the user's, so `mxgate track` finds the rows after the
// daemon stopped, when SQLite must create the -wal and -shm again.
func TestTrackingFileAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starting a daemon that drops its privileges needs root")
	}
	requirePrograms(t, "smtp-sink")
	du := ensureUser(t, daemonUser)
	s := startSink(t)
	base := enterableTempDir(t, "tracking")
	g := mxgateIn(t, base)
	cfg := fmt.Sprintf(`hostname = "mx.example.test"
listen   = [%q]
data_dir = "data"
user     = %q

[relay]
domains = ["example.test"]

[outbound]
mode = "none"

[downstream]
url      = %q
starttls = "none"

[tracking]
url = "sqlite:track/db/tracking.db"
`, g.addr, daemonUser, s.URL())
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.cleanup)
	g.start()
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"bob@example.test"}, dataBytes(readTestdata(t, "message.eml")))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)
	g.stop()

	dir := filepath.Join(base, "track", "db")
	if fi, err := os.Stat(dir); err != nil || fi.Sys().(*syscall.Stat_t).Uid != du.Uid {
		t.Errorf("%s: %v, %v; want a directory of %s's", dir, fi, err, daemonUser)
	}
	r := g.cli("track", "--sender", "alice@sender.test")
	if r.code != 0 || !regexp.MustCompile(`(?m)^\S+ \S+\s+`+id+`\s+127\.0\.0\.1\s+<alice@sender\.test>\s+bob@example\.test\s+delivered\s`).MatchString(r.stdout) {
		t.Errorf("mxgate track with the daemon stopped: exit %d, stdout %q, stderr %q; want the delivered message", r.code, r.stdout, r.stderr)
	}
}
