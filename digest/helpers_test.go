package digest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/admin"
	"mxgate/mainlog"
	"mxgate/spool"
)

// testQueue is a spool with its mainlog in a temporary directory, as
// the daemon's.
type testQueue struct {
	*admin.Queue
	dir string
}

func newTestQueue(t *testing.T) *testQueue {
	t.Helper()
	dir := t.TempDir()
	log, err := mainlog.Open(filepath.Join(dir, "log"), false)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Sync: spool.SyncFdatasync, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); log.Close() })
	return &testQueue{Queue: &admin.Queue{Spool: sp, Log: log, User: "digest link", Now: time.Now}, dir: dir}
}

// quarantine puts a message from sender to rcpts with subject and a
// spamd stamp of score in quarantine.
func (q *testQueue) quarantine(t *testing.T, sender, subject, score string, rcpts ...string) spool.ID {
	t.Helper()
	w, err := q.Spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Buy now.\n"))
	env := &spool.Envelope{
		Sender: sender, Recipients: rcpts, Received: testNow.Add(-time.Hour),
		HeloName: "mail.example.net", HostAddress: "192.0.2.7:40123", ReceivedProtocol: "esmtp",
		Headers: []spool.Header{
			{Type: 'P', Text: "Received: from mail.example.net ([192.0.2.7])\n\tby mx.example.test; Mon, 07 Dec 2026 06:00:00 +0000\n"},
			{Type: ' ', Text: "Subject: " + subject + "\n"},
			{Type: ' ', Text: "X-Spam-Status: Yes, score=" + score + "\n"},
		},
	}
	if err := q.Spool.Quarantine(context.Background(), w, env, "spam score "+score+" >= quarantine 5"); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// mainlog is the mainlog's lines without their time stamps.
func (q *testQueue) mainlog(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(q.dir, "log", "mainlog"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSuffix(l, "\n"), " ", 3)
		lines = append(lines, f[2])
	}
	return lines
}
