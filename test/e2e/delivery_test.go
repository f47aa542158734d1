package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readTestdata returns the bytes of a testdata/e2e file.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testdata(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// body is the part of a message after its header, LF line endings.
func body(msg string) string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	_, b, ok := strings.Cut(msg, "\n\n")
	if !ok {
		return ""
	}
	return b
}

// TestRelayToSmtpSink relays messages to a real smtp-sink: every 250 names
// an ID, each message arrives exactly once carrying that ID in mxgate's
// Received: header, and mainlog tells the story of each.
func TestRelayToSmtpSink(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	g := startMxgate(t, s.URL())
	msg := dataBytes(readTestdata(t, "message.eml"))

	const n = 5
	ids := make([]string, n)
	rcptOf := map[string]string{}
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	for i := range ids {
		rcpt := fmt.Sprintf("user%d@example.test", i)
		ids[i] = c.send(t, "alice@sender.test", []string{rcpt}, msg)
		if _, dup := rcptOf[ids[i]]; dup {
			t.Fatalf("message %d got the ID %s of an earlier message", i, ids[i])
		}
		rcptOf[ids[i]] = rcpt
	}
	c.expect(t, "QUIT", 221)
	g.waitCompleted(ids...)

	got := s.messages(t)
	if len(got) != n {
		t.Errorf("smtp-sink received %d messages, want %d", len(got), n)
	}
	seen := map[string]int{}
	for _, m := range got {
		if len(m.ids) != 1 {
			t.Errorf("%s: mxgate IDs in Received: headers %v, want exactly one", m.path, m.ids)
			continue
		}
		id := m.ids[0]
		seen[id]++
		if want, ok := rcptOf[id]; !ok {
			t.Errorf("%s: Received: names ID %s, which mxgate never gave", m.path, id)
		} else if !slices.Equal(m.rcpts, []string{want}) {
			t.Errorf("%s (ID %s): envelope recipients %v, want [%s]", m.path, id, m.rcpts, want)
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("ID %s reached smtp-sink %d times, want once", id, seen[id])
		}
		g.requireLog(id,
			`<= alice@sender\.test .*\bP=esmtp\b`,
			`=> `+regexp.QuoteMeta(rcptOf[id])+` .*\bT=smtp\b`,
			`Completed$`)
	}
	g.stop()
}

// TestDovecotLMTP delivers one message for two recipients through a real
// Dovecot LMTP: each Maildir gets it with the body byte for byte, and
// mainlog has the first delivery as => and the second as ->.
func TestDovecotLMTP(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	g := startMxgate(t, d.URL())
	msg := readTestdata(t, "message.eml")

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"user@example.test", "other@example.test"}, dataBytes(msg))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)

	for _, local := range []string{"user", "other"} {
		files := d.newMail(t, "example.test", local)
		if len(files) != 1 {
			t.Errorf("%s@example.test: %d files in Maildir/new, want 1: %v", local, len(files), files)
			continue
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if got, want := body(string(b)), body(string(msg)); got != want {
			t.Errorf("%s: body\n%q\nwant\n%q", files[0], got, want)
		}
		if !strings.Contains(string(b), "id "+id) {
			t.Errorf("%s: no Received: header naming id %s:\n%s", files[0], id, b)
		}
	}
	g.requireLog(id,
		`=> user@example\.test .*\bT=lmtp\b`,
		`-> other@example\.test .*\bT=lmtp\b`,
		`Completed$`)
	g.stop()
}

// TestMaildir delivers into a Maildir downstream: the message lands in
// DIR/example.test/user/new with its body intact.
func TestMaildir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := startMxgate(t, "maildir://"+dir)
	msg := readTestdata(t, "message.eml")

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"user@example.test"}, dataBytes(msg))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)

	files := maildirNew(t, filepath.Join(dir, "example.test", "user"))
	if len(files) != 1 {
		t.Fatalf("%s/example.test/user/new holds %d files, want 1: %v", dir, len(files), files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := body(string(b)), body(string(msg)); got != want {
		t.Errorf("%s: body\n%q\nwant\n%q", files[0], got, want)
	}
	if !strings.Contains(string(b), "id "+id) {
		t.Errorf("%s: no Received: header naming id %s:\n%s", files[0], id, b)
	}
	g.requireLog(id, `=> user@example\.test .*\bT=maildir\b`, `Completed$`)
	g.stop()
}
