package e2e

import (
	"fmt"
	"regexp"
	"strings"
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
