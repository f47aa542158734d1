package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// postfixWait bounds the waits on what Postfix does after it answered:
// relaying to the sink, closing its milter connection.
const postfixWait = 30 * time.Second

// startPostfixMxgate starts mxgate from the template file name (under
// test/e2e/testdata) with each placeholder of subst ("@NAME@", value, ...)
// filled in, delivering to s.
func startPostfixMxgate(t *testing.T, name string, s *sink, subst ...string) *mxgate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(tmpl, []byte(strings.NewReplacer(subst...).Replace(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	return startMxgateConfig(t, tmpl, s.URL())
}

// addr is the sink's "127.0.0.1:PORT", where Postfix relays to.
func (s *sink) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// waitSinkCase waits until the sink holds the one message whose
// X-Test-Case field is name and returns it.
func waitSinkCase(t *testing.T, s *sink, pf *peertest.Postfix, name string) sinkMessage {
	t.Helper()
	var found []sinkMessage
	waitFor(t, postfixWait, func() string {
		found = found[:0]
		for _, m := range s.messages(t) {
			if strings.Contains(m.raw, "\nX-Test-Case: "+name+"\r\n") || strings.Contains(m.raw, "\nX-Test-Case: "+name+"\n") {
				found = append(found, m)
			}
		}
		if len(found) == 0 {
			return fmt.Sprintf("no message X-Test-Case: %s at the sink; Postfix's log:\n%s", name, pf.Maillog(t))
		}
		return ""
	})
	if len(found) != 1 {
		t.Fatalf("%d messages X-Test-Case: %s at the sink, want 1", len(found), name)
	}
	return found[0]
}

// connectionsActive is mxgate_connections_active on the /metrics of the
// admin listener admin.
func connectionsActive(t *testing.T, admin string) (int, error) {
	t.Helper()
	code, body := httpGet(t, "http://"+admin+"/metrics")
	if code != 200 {
		return 0, fmt.Errorf("GET /metrics -> %d", code)
	}
	m := regexp.MustCompile(`(?m)^mxgate_connections_active (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no mxgate_connections_active in /metrics")
	}
	f, err := strconv.ParseFloat(m[1], 64)
	return int(f), err
}

// bodyFiles lists the milter server's temporary body files under dir.
func bodyFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), "milter-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestPostfixMilter is issue 16's milter Done-when against Debian's
// Postfix: a private instance with mxgate as its smtpd_milters (protocol
// 6), mxgate asking the real spamd, clamd and rbldnsd. What Postfix's
// client is told and what Postfix relays to the sink must be gateway
// mode's: the pharmacy spam stamped with mxgate's X-Spam-* fields (the
// sender's forged ones gone), EICAR refused after the dot with mxgate's
// text, a client on bl.test refused at RCPT with mxgate's text; the
// refusals in gateway mode's rejectlog lines, Postfix's queue ID the
// message's ID in the mainlog. Sessions
// the client drops at MAIL, RCPT and in DATA leave no body file in
// data_dir and no connection open in mxgate's metrics.
func TestPostfixMilter(t *testing.T) {
	t.Parallel()
	requirePrograms(t, "postfix")
	spamd, clamd := startScanner(t, "spamd"), startScanner(t, "clamd")
	resolver := startRbldnsd(t)
	s := startSink(t)
	milter := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	g := startPostfixMxgate(t, "postfix-milter.toml.tmpl", s,
		"@SPAMD@", spamd, "@CLAMD@", clamd, "@RESOLVER@", resolver, "@MILTER@", milter, "@ADMIN@", admin)
	pf := peertest.StartPostfix(t, s.addr(), "smtpd_milters = inet:"+milter+"\n"+
		"milter_protocol = 6\n"+
		"milter_default_action = tempfail\n"+
		"milter_content_timeout = 60s\n")

	t.Run("pharmacy spam stamped", func(t *testing.T) {
		spam := "X-Test-Case: spam\nX-Spam-Status: No, score=-10.0\nX-Spam-Flag: NO\n" + corpusMessage(t, "pharmacy-spam.eml")
		c := mustDial(t, "127.0.0.1", pf.Addr)
		c.expect(t, "EHLO client.test", 250)
		r, err := c.transaction("a@client.test", []string{"u@example.test"}, dataBytes([]byte(spam)))
		if err != nil || r.Code != 250 {
			t.Fatalf("end of data through Postfix -> %v, %v; want 250", r, err)
		}
		c.expect(t, "QUIT", 221)
		// Postfix's queue ID (the milter macro i) is the message's ID in
		// mxgate's mainlog, so exigrep follows it.
		qid := regexp.MustCompile(`queued as (\w+)`).FindStringSubmatch(r.Text())
		if qid == nil {
			t.Fatalf("Postfix's 250 names no queue ID: %v", r)
		}
		if log := strings.Join(g.in(t).mainlog(), "\n"); !strings.Contains(log, qid[1]) {
			t.Errorf("mxgate's mainlog never names Postfix's queue ID %s:\n%s", qid[1], log)
		}
		m := waitSinkCase(t, s, pf, "spam")
		// The stamps sit right below Postfix's own Received line, as
		// they sit below mxgate's in gateway mode.
		// (The sink's own fields and Received line come first.)
		fs := headers(m.raw)
		i := slices.IndexFunc(fs, func(f string) bool {
			return strings.HasPrefix(f, "Received: from client.test ") && strings.Contains(f, "(Postfix)")
		})
		if i < 0 || i+1 >= len(fs) || !strings.HasPrefix(fs[i+1], "X-Spam-Status: Yes, score=") {
			t.Errorf("the delivered message's fields %q, want X-Spam-Status: Yes, ... right below Postfix's Received", fs)
		}
		hs := spamHeaders(m.raw)
		for _, want := range []string{"X-Spam-Status: Yes, score=", "X-Spam-Score: ", "X-Spam-Bar: +", "X-Spam-Flag: YES"} {
			n := 0
			for _, h := range hs {
				if strings.HasPrefix(h, want) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d fields %q... at the sink, want 1; X-Spam-* fields: %q", n, want, hs)
			}
		}
		for _, h := range hs {
			if h == "X-Spam-Status: No, score=-10.0" || h == "X-Spam-Flag: NO" {
				t.Errorf("the sender's forged %q reached the sink", h)
			}
		}
	})

	t.Run("EICAR refused", func(t *testing.T) {
		c := mustDial(t, "127.0.0.1", pf.Addr)
		c.expect(t, "EHLO client.test", 250)
		r, err := c.transaction("a@client.test", []string{"u@example.test"},
			dataBytes([]byte("X-Test-Case: eicar\nFrom: a@client.test\nSubject: test\n\n"+eicar+"\n")))
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != 550 || !strings.HasPrefix(r.Text(), "5.7.1 Virus found: ") {
			t.Errorf("end of data through Postfix -> %v, want mxgate's 550 5.7.1 Virus found: ...", r)
		}
		c.expect(t, "QUIT", 221)
		// Gateway mode's line, under Postfix's queue ID.
		re := regexp.MustCompile(`^[0-9A-Za-z]+ H=\(client\.test\) \[127\.0\.0\.1\] F=<a@client\.test> rejected after DATA: Virus found: Test\.EICAR\.NDB\.UNOFFICIAL$`)
		if rej := g.in(t).rejectlog(); !slices.ContainsFunc(rej, re.MatchString) {
			t.Errorf("rejectlog has no line matching %s:\n%s", re, strings.Join(rej, "\n"))
		}
	})

	t.Run("RBL-listed client refused at RCPT", func(t *testing.T) {
		r := rcptReply(t, "127.0.0.20", pf.Addr, "a@client.test", "u@example.test")
		want := "554 5.7.1 Service unavailable; client [127.0.0.20] blocked using bl.test (Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.20)"
		if r.String() != want {
			t.Errorf("RCPT from 127.0.0.20 through Postfix -> %v, want %s", r, want)
		}
		// Gateway mode's rejectlog line (TestRBL), word for word.
		line := "H=(client.test) [127.0.0.20] F=<a@client.test> rejected RCPT <u@example.test>: 127.0.0.20 is listed at bl.test (127.0.0.2: Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.20)"
		if rej := g.in(t).rejectlog(); !slices.Contains(rej, line) {
			t.Errorf("rejectlog lacks %q:\n%s", line, strings.Join(rej, "\n"))
		}
	})

	t.Run("aborted sessions leave nothing", func(t *testing.T) {
		steps := []struct {
			name  string
			lines []string // sent after EHLO, each answered before the next
			data  string   // then sent without an end, and the connection dropped
		}{
			{"at MAIL", []string{"MAIL FROM:<a@client.test>"}, ""},
			{"at RCPT", []string{"MAIL FROM:<a@client.test>", "RCPT TO:<u@example.test>"}, ""},
			{"in DATA", []string{"MAIL FROM:<a@client.test>", "RCPT TO:<u@example.test>", "DATA"}, "Subject: cut\r\n\r\nhalf a"},
		}
		for _, st := range steps {
			c := mustDial(t, "127.0.0.1", pf.Addr)
			c.expect(t, "EHLO client.test", 250)
			for _, l := range st.lines {
				if r, err := c.cmd(l); err != nil || r.Code >= 400 {
					t.Fatalf("%s: %s -> %v, %v", st.name, l, r, err)
				}
			}
			if st.data != "" {
				if err := c.write([]byte(st.data)); err != nil {
					t.Fatal(err)
				}
			}
			// The gauge counts Postfix's milter session while the
			// client's is open, or its 0 below would prove nothing.
			waitFor(t, postfixWait, func() string {
				if n, err := connectionsActive(t, admin); err != nil || n < 1 {
					return fmt.Sprintf("mxgate_connections_active %d (%v) with a session %s open, want 1", n, err, st.name)
				}
				return ""
			})
			c.Close()
		}
		waitFor(t, postfixWait, func() string {
			n, err := connectionsActive(t, admin)
			if err != nil {
				return err.Error()
			}
			if n != 0 {
				return fmt.Sprintf("mxgate_connections_active %d after every client left, want 0", n)
			}
			if f := bodyFiles(t, g.dataDir); len(f) > 0 {
				return fmt.Sprintf("body files left in data_dir: %q", f)
			}
			return ""
		})
	})
}

// TestPostfixPolicy is issue 16's policy Done-when against Debian's
// Postfix: a private instance asking mxgate by check_policy_service
// before anything else. A sender's 4th message in a minute is refused
// at RCPT with mxgate's rate limit text (from a trusted client, which
// greylisting skips); a new triplet gets mxgate's 451 greylisting answer
// and passes, and reaches the sink, once the 1s delay is over.
func TestPostfixPolicy(t *testing.T) {
	t.Parallel()
	requirePrograms(t, "postfix")
	s := startSink(t)
	policy := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	g := startPostfixMxgate(t, "postfix-policy.toml.tmpl", s, "@POLICY@", policy)
	pf := peertest.StartPostfix(t, s.addr(),
		"smtpd_recipient_restrictions = check_policy_service inet:"+policy+", permit_mynetworks, reject_unauth_destination\n"+
			"smtpd_policy_service_default_action = 451 4.3.5 policy service unreachable\n")

	t.Run("rate limit", func(t *testing.T) {
		c := mustDial(t, "127.0.0.2", pf.Addr)
		c.expect(t, "EHLO client.test", 250)
		for i := range 3 {
			msg := fmt.Sprintf("X-Test-Case: rate-%d\nSubject: counted\n\nbody\n", i)
			r, err := c.transaction("bulk@client.test", []string{"u@example.test"}, dataBytes([]byte(msg)))
			if err != nil || r.Code != 250 {
				t.Fatalf("message %d through Postfix -> %v, %v; want 250", i+1, r, err)
			}
		}
		c.expect(t, "MAIL FROM:<bulk@client.test>", 250)
		r, err := c.cmd("RCPT TO:<u@example.test>")
		if err != nil {
			t.Fatal(err)
		}
		// Postfix puts "<rcpt>: Recipient address rejected: " before the
		// text of every restriction's answer.
		if r.Code != 550 || !strings.HasPrefix(r.Text(), "5.7.1 ") || !strings.HasSuffix(r.Text(), ": Rate limit exceeded") {
			t.Errorf("RCPT of the 4th message through Postfix -> %v, want mxgate's 550 5.7.1 Rate limit exceeded", r)
		}
		rej := strings.Join(g.in(t).rejectlog(), "\n")
		if !strings.Contains(rej, "H=(client.test) [127.0.0.2] rejected MAIL <bulk@client.test>: rate limit exceeded: senders sender bulk@client.test") {
			t.Errorf("rejectlog lacks gateway mode's rate limit line:\n%s", rej)
		}
		c.expect(t, "QUIT", 221)
		for i := range 3 {
			waitSinkCase(t, s, pf, fmt.Sprintf("rate-%d", i))
		}
	})

	t.Run("greylisting", func(t *testing.T) {
		r := rcptReply(t, "127.0.0.1", pf.Addr, "grey@client.test", "u@example.test")
		if r.Code != 451 || !strings.HasPrefix(r.Text(), "4.7.1 ") || !strings.HasSuffix(r.Text(), ": Greylisted, please try again in 1 seconds") {
			t.Fatalf("RCPT of a new triplet through Postfix -> %v, want mxgate's 451 4.7.1 Greylisted, ...", r)
		}
		time.Sleep(1500 * time.Millisecond) // greylist.delay "1s"
		c := mustDial(t, "127.0.0.1", pf.Addr)
		c.expect(t, "EHLO client.test", 250)
		r, err := c.transaction("grey@client.test", []string{"u@example.test"},
			dataBytes([]byte("X-Test-Case: greylisted\nSubject: retried\n\nbody\n")))
		if err != nil || r.Code != 250 {
			t.Fatalf("the retry after the delay through Postfix -> %v, %v; want 250", r, err)
		}
		c.expect(t, "QUIT", 221)
		waitSinkCase(t, s, pf, "greylisted")
	})
}
