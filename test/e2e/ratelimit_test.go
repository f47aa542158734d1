package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// TestRateLimitHold is issue 14's hold test: cPanel's "max emails per
// hour per domain" (3/1h, action hold) on the embedded state store. A
// burst of 6 from one domain is all accepted; the first 3 are delivered,
// the rest frozen under the hold key, with one paniclog alert; `hold
// list` shows them, `hold release` delivers them to the sink.
func TestRateLimitHold(t *testing.T) {
	requirePrograms(t, "smtp-sink")
	sink := startSink(t)
	g := startMxgateConfig(t, testdata("ratelimit-hold.toml.tmpl"), sink.URL())
	body := []byte("Subject: burst\n\nfrom a compromised script\n")

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	var ids []string
	for range 6 {
		ids = append(ids, c.send(t, "script@client.test", []string{"u@example.test"}, dataBytes(body)))
	}
	c.expect(t, "QUIT", 221)

	// Milliseconds apart, the 3rd is a rate just under 3: the 4th is over.
	g.waitCompleted(ids[:3]...)
	held := ids[3:]
	for _, id := range held {
		g.requireLog(id, regexp.QuoteMeta("Frozen (rate limit hold domains:client.test)")+"$")
	}
	alert := "ratelimit hold: domains:client.test over 3/1h"
	if n := countMatching(g.paniclog(), alert); n != 1 {
		t.Errorf("paniclog has %d alerts %q, want 1:\n%s", n, alert, strings.Join(g.paniclog(), "\n"))
	}
	list := g.mustCLI("hold", "list")
	if !strings.HasPrefix(list, "domains:client.test: 3 held\n") {
		t.Errorf("hold list:\n%s", list)
	}
	for _, id := range held {
		if !strings.Contains(list, id+" <script@client.test> *** frozen ***") {
			t.Errorf("hold list lacks %s:\n%s", id, list)
		}
	}

	// Released by the domain alone. The embedded store is the daemon's:
	// the command may say the rate was not cleared, on stderr.
	r := g.cli("hold", "release", "client.test")
	if r.code != 0 {
		t.Fatalf("hold release: status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, id := range held {
		if !strings.Contains(r.stdout, "Message "+id+" is no longer frozen\n") {
			t.Errorf("hold release stdout lacks %s:\n%s", id, r.stdout)
		}
	}
	g.waitCompleted(held...)
	g.waitSpoolEmpty()
	if got := len(sink.messages(t)); got != 6 {
		t.Errorf("sink holds %d messages, want all 6", got)
	}
	if out := g.mustCLI("hold", "list"); out != "" {
		t.Errorf("hold list after the release:\n%s", out)
	}
}

func countMatching(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// twoNodes starts two gateways on one redis-server with the config
// testdata/e2e/ratelimit-redis.toml.tmpl, delivering to one sink.
func twoNodes(t *testing.T) (*mxgate, *mxgate) {
	t.Helper()
	requirePrograms(t, "smtp-sink", "redis-server")
	redis := peertest.Start(t, "redis", "", 0)
	tmpl, err := os.ReadFile(testdata("ratelimit-redis.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ratelimit-redis.toml.tmpl")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(tmpl), "@REDIS@", redis)), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := startSink(t)
	return startMxgateConfig(t, path, sink.URL()), startMxgateConfig(t, path, sink.URL())
}

// TestRateLimitTwoNodes: a limit of 4 per hour for one sender is enforced
// across two gateways sharing redis: 2 messages through each pass, the
// 5th is deferred through either. The client is trusted (127.0.0.2):
// trusted clients are rate limited too (and not greylisted).
func TestRateLimitTwoNodes(t *testing.T) {
	n1, n2 := twoNodes(t)
	body := dataBytes([]byte("Subject: shared\n\ncounted once across the nodes\n"))
	for _, g := range []*mxgate{n1, n2} {
		c := mustDial(t, "127.0.0.2", g.addr)
		c.expect(t, "EHLO client.test", 250)
		for range 2 {
			c.send(t, "bulk@client.test", []string{"u@example.test"}, body)
		}
		c.expect(t, "QUIT", 221)
	}
	for _, g := range []*mxgate{n2, n1} {
		c := mustDial(t, "127.0.0.2", g.addr)
		c.expect(t, "EHLO client.test", 250)
		r := c.expect(t, "MAIL FROM:<bulk@client.test>", 451)
		if !strings.Contains(r.Text(), "4.7.0 Rate limit exceeded") {
			t.Errorf("MAIL over the limit -> %v, want 451 4.7.0 Rate limit exceeded", r)
		}
		c.expect(t, "QUIT", 221)
		rej, _ := os.ReadFile(filepath.Join(g.dataDir, "log", "rejectlog"))
		if !strings.Contains(string(rej), "temporarily rejected MAIL <bulk@client.test>: rate limit exceeded: senders sender bulk@client.test") {
			t.Errorf("rejectlog lacks the rate limit line:\n%s", rej)
		}
	}
}

// TestGreylistTwoNodes: a triplet node 1 greylisted passes at node 2
// once the delay is over; a new triplet at node 2 is greylisted.
func TestGreylistTwoNodes(t *testing.T) {
	n1, n2 := twoNodes(t)
	r := rcptReply(t, "127.0.0.1", n1.addr, "a@client.test", "u@example.test")
	if r.Code != 451 || !strings.Contains(r.Text(), "4.7.1 Greylisted, please try again in 2 seconds") {
		t.Fatalf("first RCPT at node 1 -> %v, want 451 4.7.1 Greylisted, please try again in 2 seconds", r)
	}
	time.Sleep(2500 * time.Millisecond) // greylist.delay "2s"
	c := mustDial(t, "127.0.0.1", n2.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "a@client.test", []string{"u@example.test"}, dataBytes([]byte("Subject: retried\n\nthrough the other node\n")))
	c.expect(t, "QUIT", 221)
	n2.waitCompleted(id)
	passed := regexp.MustCompile(`H=(?:\S+ )?` + regexp.QuoteMeta("(client.test) [127.0.0.1] greylist: triplet (127.0.0.0/24, <a@client.test>, <u@example.test>) passed, delayed ") + `\d+ seconds$`)
	if !n2.logHas(passed) {
		t.Errorf("node 2's mainlog has no line matching %q", passed)
	}
	if r := rcptReply(t, "127.0.0.1", n2.addr, "b@client.test", "u@example.test"); r.Code != 451 {
		t.Errorf("new triplet at node 2 -> %v, want 451 greylisted", r)
	}
}

// TestRateLimitAuthUserTwoNodes: issue 14's case, a compromised login.
// Two gateways share redis and hold a login's mail over 3 per hour: alice
// authenticates at each (submission, STARTTLS, passwd-file); her first 3
// messages, 2 through node 1 and 1 through node 2, are delivered, the
// 4th, through node 2, is accepted and held, whichever node counted the
// others.
func TestRateLimitAuthUserTwoNodes(t *testing.T) {
	t.Parallel()
	redis := peertest.Redis(t)
	sink := startSink(t)
	node := func() (*mxgate, string) {
		port := peertest.FreePort(t, false)
		tmpl := authConfig(t, port, "passwd-file:"+testdata("auth-users"))
		b, err := os.ReadFile(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, fmt.Sprintf("\n[[ratelimit]]\nname = \"logins\"\nkey = \"auth_user\"\nrate = \"3/1h\"\naction = \"hold\"\n\n[state]\nurl = %q\n", redis)...)
		if err := os.WriteFile(tmpl, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return startMxgateOutbound(t, tmpl, sink.URL(), outboundFor(sink.URL())), fmt.Sprintf("127.0.0.1:%d", port)
	}
	n1, sub1 := node()
	n2, sub2 := node()
	send := func(sub, subject string) string {
		c := mustDial(t, "127.0.0.1", sub)
		c.expect(t, "EHLO client.test", 250)
		c.startTLS(t)
		c.expect(t, plainAuth("alice@example.test", "secret"), 235)
		id := c.send(t, "alice@example.test", []string{"friend@outside.test"}, dataBytes([]byte("From: alice@example.test\nSubject: "+subject+"\n\nbody\n")))
		c.expect(t, "QUIT", 221)
		return id
	}
	first := []string{send(sub1, "one"), send(sub1, "two")}
	n1.waitCompleted(first...)
	third := send(sub2, "three")
	n2.waitCompleted(third)
	held := send(sub2, "four")
	n2.requireLog(held, regexp.QuoteMeta("Frozen (rate limit hold logins:alice@example.test)")+"$")
	if got := len(sink.messages(t)); got != 3 {
		t.Errorf("the sink got %d messages, want the 3 under the limit", got)
	}
	if out := n2.mustCLI("-bpc"); out != "1\n" {
		t.Errorf("node 2's -bpc = %q, want the held message", out)
	}
}
