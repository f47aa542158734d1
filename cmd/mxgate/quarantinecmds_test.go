package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/spool"
)

// quarantined is one message a filter put in quarantine.
type quarantined struct {
	sender string
	age    time.Duration
	body   string
	reason string
}

// quarantine receives msgs and quarantines them, returning their IDs.
func (q *queueTest) quarantine(msgs ...quarantined) []string {
	q.t.Helper()
	sp := q.openSpool()
	defer sp.Close()
	var ids []string
	for _, m := range msgs {
		w, err := sp.Create()
		if err != nil {
			q.t.Fatal(err)
		}
		if _, err := w.Write([]byte(m.body)); err != nil {
			q.t.Fatal(err)
		}
		env := &spool.Envelope{
			Sender: m.sender, Recipients: []string{"bob@example.test"}, Received: queueNow.Add(-m.age),
			Headers: []spool.Header{{Type: ' ', Text: "Subject: test\n"}}, // 14 bytes
		}
		if err := sp.Quarantine(context.Background(), w, env, m.reason); err != nil {
			q.t.Fatal(err)
		}
		ids = append(ids, string(w.ID()))
	}
	return ids
}

func TestQuarantineCommands(t *testing.T) {
	q := newQueueTest(t)
	ids := q.quarantine(
		quarantined{"alice@example.test", 25 * time.Minute, strings.Repeat("x", 1984) + "\n", "virus Test.EICAR.NDB.UNOFFICIAL"},
		quarantined{"", 100 * time.Minute, "bounce\n", "spam score 9.0"},
	)
	r := strings.NewReplacer("ID1", ids[0], "ID2", ids[1])
	user := userName()
	absent := "1tXyZa-000AbC-Qr"

	q.check("quarantine list", q.mxgate("mxgate", "quarantine", "list"), result{r.Replace(
		"25m  2.0K ID1 <alice@example.test> virus Test.EICAR.NDB.UNOFFICIAL\n" +
			" 2h    22 ID2 <> spam score 9.0\n"), "", 0})

	received := queueNow.Add(-100 * time.Minute)
	q.check("quarantine show", q.mxgate("mxgate", "quarantine", "show", ids[1]), result{r.Replace(fmt.Sprintf(
		"ID2-H\nmxgate %d %d\n<>\n%d 0\n-received_time_usec .000000\n-body_linecount 1\n-body_size 7\nXX\n1\nbob@example.test\n\n014  Subject: test\n"+
			"ID2-D\nbounce\n", os.Getuid(), os.Getgid(), received.Unix())), "", 0})

	for _, c := range []struct {
		name string
		args []string
		want result
	}{
		{"show without ID", []string{"quarantine", "show"}, result{"", "mxgate: give exactly one message ID\n", 2}},
		{"show absent", []string{"quarantine", "show", absent}, result{"", "mxgate: message " + absent + " is not in quarantine\n", 1}},
		{"show path", []string{"quarantine", "show", "../../etc/passwd"}, result{"", "mxgate: \"../../etc/passwd\": not a message ID (want TTTTTT-PPPPPP-SS)\n", 1}},
		{"list with argument", []string{"quarantine", "list", ids[0]}, result{"", fmt.Sprintf("mxgate: unexpected argument %q\n", ids[0]), 2}},
		{"release without ID", []string{"quarantine", "release"}, result{"", "mxgate: give one or more message IDs\n", 2}},
		{"release bad", []string{"quarantine", "release", "x/../1", absent}, result{"",
			"mxgate: \"x/../1\": not a message ID (want TTTTTT-PPPPPP-SS)\nmxgate: message " + absent + " is not in quarantine\n", 1}},
		{"delete absent", []string{"quarantine", "delete", absent}, result{"", "mxgate: message " + absent + " is not in quarantine\n", 1}},
	} {
		got := q.mxgate("mxgate", c.args...)
		// Usage errors go on to print the usage text.
		if c.want.code == 2 {
			got.stderr, _, _ = strings.Cut(got.stderr, "usage:")
			got.stderr = strings.TrimSuffix(got.stderr, "\n") + "\n"
		}
		q.check(c.name, got, c.want)
	}

	// A message another process handles is refused, as -Mrm refuses.
	x := ids[0][5:6]
	f, err := os.Open(filepath.Join(q.dataDir, "spool", "quarantine", x, ids[0]+"-D"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	q.check("release locked", q.mxgate("mxgate", "quarantine", "release", ids[0]), result{r.Replace("Message ID1 is locked\n"), "", 1})
	q.check("delete locked", q.mxgate("mxgate", "quarantine", "delete", ids[0]), result{r.Replace("Message ID1 is locked\n"), "", 1})
	f.Close()

	q.check("quarantine release", q.mxgate("mxgate", "quarantine", "release", ids[0]),
		result{r.Replace("Message ID1 has been released from quarantine\n"), "", 0})
	q.requireLog(
		r.Replace("ID1 released from quarantine by "+user),
		r.Replace("ID1 => bob@example.test R=downstream T=maildir"),
		r.Replace("ID1 Completed"),
	)
	delivered, err := filepath.Glob(filepath.Join(q.dataDir, "maildir", "example.test", "bob", "new", "*"))
	if err != nil || len(delivered) != 1 {
		t.Fatalf("released message: maildir files %q, %v; want one", delivered, err)
	}
	if b, err := os.ReadFile(delivered[0]); err != nil || !strings.HasSuffix(string(b), "Subject: test\n\n"+strings.Repeat("x", 1984)+"\n") {
		t.Errorf("delivered message %q, %v", b, err)
	}

	q.check("quarantine delete", q.mxgate("mxgate", "quarantine", "delete", ids[1]),
		result{r.Replace("Message ID2 has been deleted from quarantine\n"), "", 0})
	q.requireLog(r.Replace("ID2 deleted from quarantine by " + user))

	q.check("empty list", q.mxgate("mxgate", "quarantine", "list"), result{"", "", 0})
	q.check("release again", q.mxgate("mxgate", "quarantine", "release", ids[0]), result{"", r.Replace("mxgate: message ID1 is not in quarantine\n"), 1})
	q.check("queue after all", q.mxgate("mxgate", "-bpc"), result{"0\n", "", 0})
}
