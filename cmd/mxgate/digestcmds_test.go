package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mxgate/digest"
)

// withDigest turns [digest] on in the test's config.
func (q *queueTest) withDigest() {
	q.t.Helper()
	f, err := os.OpenFile(q.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		q.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n[admin]\nlisten = \"127.0.0.1:8025\"\n\n[digest]\nurl = \"https://mx.example.test:8025\"\n"); err != nil {
		q.t.Fatal(err)
	}
}

func TestDigestCommands(t *testing.T) {
	q := newQueueTest(t)
	ids := q.quarantine(quarantined{"spammer@example.net", time.Hour, "Buy now.\n", "spam score 12 >= quarantine 5"})
	off := "mxgate: [digest] url is not set in " + q.cfg + ": digests and their links are off\n"
	q.check("send without [digest]", q.mxgate("mxgate", "digest", "send"), result{"", off, 1})
	q.check("link without [digest]", q.mxgate("mxgate", "digest", "link", ids[0], "bob@example.test"), result{"", off, 1})
	q.withDigest()

	got := q.mxgate("mxgate", "digest", "send")
	m := regexp.MustCompile(`^Digest (\S+) sent to bob@example.test: 1 message\n$`).FindStringSubmatch(got.stdout)
	if m == nil || got.stderr != "" || got.code != 0 {
		t.Fatalf("digest send = %+v", got)
	}
	digestID := m[1]
	q.requireLog(
		digestID+" <= <> U=mxgate P=local S="+logSize(t, q, digestID)+" id=D"+digestID+"@mx.example.test",
		digestID+" => bob@example.test R=downstream T=maildir",
		digestID+" Completed",
	)
	delivered, err := filepath.Glob(filepath.Join(q.dataDir, "maildir", "example.test", "bob", "new", "*"))
	if err != nil || len(delivered) != 1 {
		t.Fatalf("digest: maildir files %q, %v; want one", delivered, err)
	}
	if b, _ := os.ReadFile(delivered[0]); !strings.Contains(string(b), "Subject: Quarantine report: 1 message held for you\n") {
		t.Errorf("delivered digest:\n%s", b)
	}
	q.check("send again", q.mxgate("mxgate", "digest", "send"), result{"No quarantined messages to report\n", "", 0})
	q.check("send to another", q.mxgate("mxgate", "digest", "send", "--to", "carol@example.test"), result{"No quarantined messages to report\n", "", 0})

	// The key the daemon would make at its first start, made here.
	key, err := digest.LoadKey(filepath.Join(q.dataDir, "digest.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(q.dataDir, "digest.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("digest.key mode %v, want 0600", fi.Mode().Perm())
	}
	for _, c := range []struct {
		name    string
		args    []string
		action  digest.Action
		expires time.Time
	}{
		{"default", []string{ids[0], "bob@example.test"}, digest.Release, queueNow.Add(7 * 24 * time.Hour)},
		{"delete", []string{ids[0], "BOB@example.test", "--action", "delete", "--lifetime=1h"}, digest.Delete, queueNow.Add(time.Hour)},
		{"flags first, expired", []string{"--lifetime", "-1h", ids[0], "bob@example.test"}, digest.Release, queueNow.Add(-time.Hour)},
	} {
		got := q.mxgate("mxgate", append([]string{"digest", "link"}, c.args...)...)
		token, ok := strings.CutPrefix(strings.TrimSuffix(got.stdout, "\n"), "https://mx.example.test:8025/q/")
		if !ok || got.code != 0 {
			t.Errorf("%s: %+v", c.name, got)
			continue
		}
		tok, err := digest.Verify(key, token, queueNow.Add(-2*time.Hour))
		if err != nil || tok.Action != c.action || string(tok.ID) != ids[0] || tok.Recipient != "bob@example.test" || !tok.Expires.Equal(c.expires) {
			t.Errorf("%s: token %+v, %v", c.name, tok, err)
		}
	}
	for _, c := range []struct {
		name string
		args []string
		want result
	}{
		{"link for another", []string{"digest", "link", ids[0], "carol@example.test"}, result{"", "mxgate: message " + ids[0] + " is not in quarantine for carol@example.test\n", 1}},
		{"link absent", []string{"digest", "link", "1tXyZa-000AbC-Qr", "bob@example.test"}, result{"", "mxgate: message 1tXyZa-000AbC-Qr is not in quarantine\n", 1}},
		{"link bad action", []string{"digest", "link", ids[0], "bob@example.test", "--action", "forward"}, result{"", "mxgate: --action \"forward\": want release or delete\n", 2}},
		{"link one argument", []string{"digest", "link", ids[0]}, result{"", "mxgate: give a message ID and a recipient\n", 2}},
		{"send unknown flag", []string{"digest", "send", "--all"}, result{"", "mxgate: unknown flag \"--all\"\n", 2}},
	} {
		got := q.mxgate("mxgate", c.args...)
		if c.want.code == 2 {
			got.stderr, _, _ = strings.Cut(got.stderr, "usage:")
			got.stderr = strings.TrimSuffix(got.stderr, "\n") + "\n"
		}
		q.check(c.name, got, c.want)
	}
}

// logSize is S= of a delivered message's "<=" line: what the mainlog
// says, checked against nothing but its form.
func logSize(t *testing.T, q *queueTest, id string) string {
	t.Helper()
	for _, l := range q.mainlog() {
		if rest, ok := strings.CutPrefix(l, id+" <= <> U=mxgate P=local S="); ok {
			size, _, _ := strings.Cut(rest, " ")
			return size
		}
	}
	t.Fatalf("mainlog has no <= line for %s", id)
	return ""
}
