package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mxgate/internal/browsertest"
	"mxgate/internal/mailtest"
	"mxgate/internal/peertest"
)

// startDigestMxgate runs mxgate quarantining spam by the real spamd at
// spamd, with its admin listener on loopback and digests linking to it.
func startDigestMxgate(t *testing.T, spamd, downstream string) (*mxgate, string) {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	b, err := os.ReadFile(filepath.Join("testdata", "digest.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@SPAMD@", spamd, "@ADMIN@", admin).Replace(string(b))
	tmpl := filepath.Join(t.TempDir(), "digest.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return startMxgateConfig(t, tmpl, downstream), "http://" + admin
}

// sendTo runs one transaction from 127.0.0.1 to rcpts and returns the
// DATA reply.
func sendTo(t *testing.T, addr, msg string, rcpts ...string) reply {
	t.Helper()
	c := mustDial(t, "127.0.0.1", addr)
	c.expect(t, "EHLO client.test", 250)
	c.expect(t, "MAIL FROM:<a@client.test>", 250)
	for _, r := range rcpts {
		c.expect(t, "RCPT TO:<"+r+">", 250)
	}
	c.expect(t, "DATA", 354)
	if err := c.write(dataBytes([]byte(msg))); err != nil {
		t.Fatal(err)
	}
	r, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	c.expect(t, "QUIT", 221)
	return r
}

// page opens u in the browser and returns the HTTP status and the texts
// of the page's title and message.
func page(t *testing.T, ctx context.Context, u string) (int64, string, string) {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(u))
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	title, msg := pageText(t, ctx)
	return resp.Status, title, msg
}

func pageText(t *testing.T, ctx context.Context) (string, string) {
	t.Helper()
	title, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#title")))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#message")))
	if err != nil {
		t.Fatal(err)
	}
	return title, msg
}

// TestQuarantineDigest is the users' side of the quarantine: spam to two
// users is quarantined by the real spamd; `mxgate digest send` mails each
// a digest through the queue to the real smtp-sink; the release link of
// one, opened in real headless Chromium, shows what it will do, and its
// confirm button delivers the message to that user alone. A link altered
// by one character and an expired one are refused. Then eximstats over
// the mainlog counts as many messages received as delivered.
func TestQuarantineDigest(t *testing.T) {
	spamd := startScanner(t, "spamd")
	s := startSink(t)
	g, adminURL := startDigestMxgate(t, spamd, s.URL())
	// The links' key, made at the daemon's first start.
	if fi, err := os.Stat(filepath.Join(g.dataDir, "digest.key")); err != nil || fi.Size() != 32 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("data_dir/digest.key: %v, %v; want 32 bytes, mode 0600", fi, err)
	}

	spam := corpusMessage(t, "pharmacy-spam.eml")
	r := sendTo(t, g.addr, spam, "bob@example.test", "carol@example.test")
	if r.Code != 250 {
		t.Fatalf("spam: end of data -> %v, want 250 (quarantined)", r)
	}
	spamID := r.ID()
	g.requireLog(spamID, `quarantined: a@client\.test H=.* P=esmtp S=\d+ id=\S+: spam score [0-9.]+ >= quarantine 5`)
	subject := ""
	for _, h := range headers(spam) {
		if v, ok := strings.CutPrefix(h, "Subject: "); ok {
			subject = v
		}
	}

	out := g.mustCLI("digest", "send")
	sent := regexp.MustCompile(`(?m)^Digest (\S+) sent to (\S+): 1 message$`).FindAllStringSubmatch(out, -1)
	if len(sent) != 2 {
		t.Fatalf("digest send printed %q, want a digest for bob and one for carol", out)
	}
	digestIDs := map[string]string{} // recipient -> digest ID
	for _, m := range sent {
		digestIDs[m[2]] = m[1]
		g.requireLog(m[1], `<= <> U=mxgate P=local S=\d+ id=D`+m[1]+`@mx\.example\.test$`)
	}
	g.waitCompleted(digestIDs["bob@example.test"], digestIDs["carol@example.test"])
	if again := g.mustCLI("digest", "send"); again != "No quarantined messages to report\n" {
		t.Errorf("second digest send printed %q: the messages were reported already", again)
	}

	var release string
	for _, m := range s.messages(t) {
		if !slices.Equal(m.rcpts, []string{"bob@example.test"}) {
			continue
		}
		hdr, parts := mailtest.Alternative(t, m.raw)
		text, html := parts["text/plain"], parts["text/html"]
		if got := hdr.Get("Subject"); got != "Quarantine report: 1 message held for you" {
			t.Errorf("digest Subject %q", got)
		}
		if got := hdr.Get("From"); got != "postmaster@mx.example.test" {
			t.Errorf("digest From %q", got)
		}
		for _, want := range []string{"a@client.test", subject} {
			if !strings.Contains(text, want) || !strings.Contains(html, want) {
				t.Errorf("digest parts lack %q:\n%s\n%s", want, text, html)
			}
		}
		if m := regexp.MustCompile(`Release: (\S+)`).FindStringSubmatch(text); m != nil {
			release = m[1]
		}
	}
	if !strings.HasPrefix(release, adminURL+"/q/") {
		t.Fatalf("bob's digest has no release link under %s/q/ (got %q)", adminURL, release)
	}

	ctx := browsertest.New(t, 90*time.Second)
	status, title, msg := page(t, ctx, release)
	if status != 200 || title != "Release this message?" ||
		!strings.HasPrefix(msg, "Release the message from a@client.test, subject \""+subject+"\", received ") ||
		!strings.HasSuffix(msg, ", to you (bob@example.test)? It will be delivered to your mailbox.") {
		t.Fatalf("release page: %d %q %q", status, title, msg)
	}
	if g.logHas(regexp.MustCompile(`released from quarantine`)) {
		t.Fatalf("opening the link released the message:\n%s", strings.Join(g.mainlog(), "\n"))
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#confirm")))
	if err != nil {
		t.Fatal(err)
	}
	title, msg = pageText(t, ctx)
	if resp.Status != 200 || title != "Released" || msg != "The message has been released: it is on its way to your mailbox (bob@example.test)." {
		t.Fatalf("after confirm: %d %q %q", resp.Status, title, msg)
	}
	copyRE := regexp.MustCompile(`^\S+ \S+ ` + regexp.QuoteMeta(spamID) + ` released from quarantine for bob@example\.test by digest link: queued as (\S+)$`)
	var copyID string
	for _, l := range g.mainlog() {
		if m := copyRE.FindStringSubmatch(l); m != nil {
			copyID = m[1]
		}
	}
	if copyID == "" {
		t.Fatalf("mainlog has no release by the digest link:\n%s", strings.Join(g.mainlog(), "\n"))
	}
	g.requireLog(copyID, `<= a@client\.test H=\(client\.test\) \[127\.0\.0\.1\]:\d+ P=esmtp S=\d+ id=\S+ \(released from quarantine\)$`)
	g.waitCompleted(copyID)
	// The copy is the message as received: its Received: names the
	// quarantined ID.
	var released []sinkMessage
	for _, m := range s.messages(t) {
		if slices.Contains(m.ids, spamID) {
			released = append(released, m)
		}
	}
	if len(released) != 1 || !slices.Equal(released[0].rcpts, []string{"bob@example.test"}) || !strings.Contains(released[0].raw, "Subject: "+subject) {
		t.Fatalf("the released message at the sink: %+v; want it once, for bob alone", released)
	}

	// The same link again: done already. Carol's message is still held.
	if status, _, msg := page(t, ctx, release); status != 404 || msg != "This message is no longer in quarantine: it has already been released or deleted." {
		t.Errorf("the used link: %d %q", status, msg)
	}
	token := strings.TrimPrefix(release, adminURL+"/q/")
	i := len(token) / 2
	c := "A"
	if token[i] == 'A' {
		c = "B"
	}
	altered := adminURL + "/q/" + token[:i] + c + token[i+1:]
	if status, title, msg := page(t, ctx, altered); status != 403 || title != "Invalid link" || msg != "This link is not valid. Copy the whole link from the quarantine report." {
		t.Errorf("link altered by one character: %d %q %q", status, title, msg)
	}
	expired := strings.TrimSpace(g.mustCLI("digest", "link", spamID, "carol@example.test", "--lifetime", "-1h"))
	if status, title, msg := page(t, ctx, expired); status != 410 || title != "Link expired" || !strings.HasPrefix(msg, "This link has expired.") {
		t.Errorf("expired link: %d %q %q", status, title, msg)
	}
	if !strings.Contains(g.mustCLI("quarantine", "list"), spamID) {
		t.Errorf("carol's message left the quarantine")
	}

	// An admin releases the rest: carol's, under the message's own ID.
	if got := g.mustCLI("quarantine", "release", spamID); got != "Message "+spamID+" has been released from quarantine\n" {
		t.Errorf("quarantine release printed %q", got)
	}
	g.requireLog(spamID, `<= a@client\.test H=\(client\.test\) \[127\.0\.0\.1\]:\d+ P=esmtp S=\d+ id=\S+ \(released from quarantine\)$`, `=> carol@example\.test `)
	g.waitCompleted(spamID)

	// Two digests, bob's copy and carol's message: each received and
	// delivered once in the log's counts.
	totals, report := eximstats(t, filepath.Join(g.dataDir, "log", "mainlog"))
	if totals.Received != 4 || totals.Delivered != 4 {
		t.Errorf("eximstats: received %d, delivered %d; want 4 and 4\n%s\nmainlog:\n%s", totals.Received, totals.Delivered, report, strings.Join(g.mainlog(), "\n"))
	}

	// The tracking database says the same: bob's release by his link and
	// its copy, carol's delivery of the message itself; the copy has
	// the client.
	for _, tt := range []struct {
		id   string
		want []*regexp.Regexp
	}{
		{spamID, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^\s+Recipients:\s+<bob@example\.test> released$`),
			regexp.MustCompile(`(?m)^\s+<carol@example\.test> delivered: 250 `),
			regexp.MustCompile(`(?m)^\s+Verdict:\s+delivered`),
			regexp.MustCompile(`(?m)\s+admin\s+admin digest link: release for <bob@example\.test>$`),
			regexp.MustCompile(`(?m)\s+accepted\s+released for <bob@example\.test> as ` + copyID + `$`),
		}},
		{copyID, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^\s+Client:\s+.*\[127\.0\.0\.1\]`),
			regexp.MustCompile(`(?m)^\s+Verdict:\s+delivered`),
			regexp.MustCompile(`(?m)\s+accepted\s+accepted as ` + copyID + `: .* \(release\) of ` + spamID + `$`),
		}},
	} {
		waitFor(t, trackTimeout, func() string {
			r := g.cli("track", tt.id)
			for _, re := range tt.want {
				if !re.MatchString(r.stdout) {
					return fmt.Sprintf("`mxgate track %s` to match %s; it printed %q, %q", tt.id, re, r.stdout, r.stderr)
				}
			}
			return ""
		})
	}
}
