package e2e

import (
	"encoding/base64"
	"fmt"
	"mxgate/internal/peertest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// eicar is the EICAR anti-virus test file: every scanner reports it, and
// it is harmless.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// startScanner starts a real spamd or clamd (peers.sh start NAME DIR
// PORT) and returns its address; it is stopped when the test ends.
func startScanner(t *testing.T, name string) string {
	t.Helper()
	addr, _ := startScannerIn(t, name)
	return addr
}

// startScannerIn is startScanner that also says the peer's directory.
func startScannerIn(t *testing.T, name string) (addr, dir string) {
	t.Helper()
	requirePrograms(t, name)
	dir, port := t.TempDir(), peertest.FreePort(t, false)
	if name == "rspamd" {
		// rspamd also binds the two ports after its own.
		port = peertest.FreePorts(t, 3)
	}
	// The scanners drop root and still write their PID file there; Go
	// makes test directories 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return peertest.Start(t, name, dir, port), dir
}

// startFilterMxgate runs mxgate scanning with spamd and clamd at the given
// addresses and the given spamd.on_error.
func startFilterMxgate(t *testing.T, spamd, clamd, onError, downstream string) *mxgate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "filters.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@SPAMD@", spamd, "@CLAMD@", clamd, "@ON_ERROR@", onError).Replace(string(b))
	tmpl := filepath.Join(t.TempDir(), "filters.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return startMxgateConfig(t, tmpl, downstream)
}

func corpusMessage(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withAttachment is a MIME message carrying data as a base64 attachment.
func withAttachment(data string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(data))
	return "From: a@client.test\nTo: u@example.test\nSubject: the file you asked for\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain\n\nSee the attachment.\n" +
		"--b1\nContent-Type: application/octet-stream; name=\"eicar.com\"\nContent-Transfer-Encoding: base64\n" +
		"Content-Disposition: attachment; filename=\"eicar.com\"\n\n" + enc + "\n--b1--\n"
}

// sendOne runs one transaction from 127.0.0.1 and returns the DATA reply.
func sendOne(t *testing.T, addr, msg string) reply {
	t.Helper()
	c := mustDial(t, "127.0.0.1", addr)
	c.expect(t, "EHLO client.test", 250)
	c.expect(t, "MAIL FROM:<a@client.test>", 250)
	c.expect(t, "RCPT TO:<u@example.test>", 250)
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

// spamHeaders returns the X-Spam-* and X-Virus-* fields of a message.
func spamHeaders(raw string) []string {
	var hs []string
	for _, h := range headers(raw) {
		name, _, _ := strings.Cut(h, ":")
		if n := strings.ToLower(name); strings.HasPrefix(n, "x-spam-") || strings.HasPrefix(n, "x-virus-") {
			hs = append(hs, h)
		}
	}
	return hs
}

// TestFilters sends mail through mxgate to the real spamd and clamd (one
// of each for all cases) and checks what the client is told and what
// arrives downstream: the spam stamped as spam (a forged verdict of the
// sender's gone), ham stamped as ham, EICAR refused plain and as an
// attachment, and, with spamd down, 451 or Unchecked per on_error.
func TestFilters(t *testing.T) {
	t.Parallel()
	spamd, clamd := startScanner(t, "spamd"), startScanner(t, "clamd")
	s := startSink(t)
	dead := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false)) // nothing listens there
	g := startFilterMxgate(t, spamd, clamd, "tempfail", s.URL())
	gAccept := startFilterMxgate(t, dead, clamd, "accept", s.URL())
	gTempfail := startFilterMxgate(t, dead, clamd, "tempfail", s.URL())

	spam := "X-Spam-Status: No, score=-10.0\nX-Spam-Flag: NO\n" + corpusMessage(t, "pharmacy-spam.eml")
	ham := corpusMessage(t, "exim-basics-ham.eml")
	tests := []struct {
		name  string
		g     *mxgate
		msg   string
		reply string   // the DATA reply's start; "250" = accepted
		want  []string // the X-Spam-*/X-Virus-* headers delivered (prefixes)
	}{
		// 12.1 from spamc alone; through mxgate spamd also sees its
		// Received: (ALL_TRUSTED) and the envelope sender in another
		// domain than From: (HEADER_FROM_DIFFERENT_DOMAINS).
		{"pharmacy spam", g, spam, "250 2.0.0 OK id=",
			[]string{"X-Spam-Status: Yes, score=14.1", "X-Spam-Score: 141", "X-Spam-Bar: ++++++++++++++", "X-Spam-Flag: YES"}},
		{"ham", g, ham, "250 2.0.0 OK id=", []string{"X-Spam-Status: No, score="}},
		{"EICAR plain", g, "From: a@client.test\nSubject: test\n\n" + eicar + "\n", "550 5.7.1 Virus found: ", nil},
		{"EICAR attachment", g, withAttachment(eicar), "550 5.7.1 Virus found: ", nil},
		{"clean attachment", g, withAttachment("just a text file\n"), "250 2.0.0 OK id=", []string{"X-Spam-Status: "}},
		{"spamd down, on_error = accept", gAccept, ham, "250 2.0.0 OK id=", []string{"X-Spam-Status: Unchecked"}},
		{"spamd down, on_error = tempfail", gTempfail, ham, "451 4.7.1 Temporary local problem - please try later", nil},
	}
	delivered := map[string][]string{} // ID -> the headers wanted
	accepted := map[*mxgate][]string{} // the IDs each instance accepted
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sendOne(t, tc.g.addr, tc.msg)
			if !strings.HasPrefix(r.String(), tc.reply) {
				t.Fatalf("end of data -> %q, want %q...", r, tc.reply)
			}
			// 127.0.0.1 is "localhost" by /etc/hosts (host_lookup).
			refused := regexp.MustCompile(`^\S+ \S+ \S+ H=localhost \(client\.test\) \[127\.0\.0\.1\] F=<a@client\.test> (temporarily )?rejected after DATA: ` +
				regexp.QuoteMeta(strings.TrimSpace(tc.reply[len("550 5.7.1 "):])))
			if r.Code == 250 {
				delivered[r.ID()] = tc.want
				accepted[tc.g] = append(accepted[tc.g], r.ID())
			} else if !tc.g.logHas(refused) {
				t.Errorf("mainlog lacks the refusal:\n%s", strings.Join(tc.g.mainlog(), "\n"))
			}
		})
	}
	for g, ids := range accepted {
		g.waitCompleted(ids...)
	}
	got := s.messages(t)
	if len(got) != len(delivered) {
		t.Errorf("smtp-sink received %d messages, want %d", len(got), len(delivered))
	}
	for _, m := range got {
		if len(m.ids) != 1 {
			t.Errorf("%s: mxgate IDs %v, want one", m.path, m.ids)
			continue
		}
		want, ok := delivered[m.ids[0]]
		if !ok {
			t.Errorf("%s: message %s was not accepted", m.path, m.ids[0])
			continue
		}
		hs := spamHeaders(m.raw)
		var status []string
		for _, h := range hs {
			if strings.HasPrefix(h, "X-Spam-Status:") || strings.HasPrefix(h, "X-Spam-Flag:") {
				status = append(status, h)
			}
		}
		for _, w := range want {
			if !slices.ContainsFunc(hs, func(h string) bool { return strings.HasPrefix(h, w) }) {
				t.Errorf("message %s: headers %q lack %q", m.ids[0], hs, w)
			}
		}
		// One verdict only: the sender's forged "No" and "NO" are gone.
		if n := len(status); n == 0 || n > 2 || strings.Contains(strings.Join(status, "\n"), "score=-10.0") {
			t.Errorf("message %s: X-Spam-Status/Flag %q, want mxgate's verdict alone", m.ids[0], status)
		}
	}
}
