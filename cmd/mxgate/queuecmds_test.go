package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/spool"
)

// queueNow is the pinned clock of the listing tests.
var queueNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.Local)

// queueTest is a config whose spool the test fills, delivering into a
// Maildir under its data_dir.
type queueTest struct {
	t       *testing.T
	cfg     string
	dataDir string
}

func newQueueTest(t *testing.T) *queueTest {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "var")
	cfg := filepath.Join(dir, "mxgate.toml")
	// The daemon's: admin commands never create it.
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := `hostname = "mx.example.test"
listen   = ["127.0.0.1:0"]
data_dir = "` + dataDir + `"

[relay]
domains = ["example.test"]

[outbound]
mode = "none"

[downstream]
url = "maildir://` + filepath.Join(dataDir, "maildir") + `"
`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	saved := clock
	clock = func() time.Time { return queueNow }
	t.Cleanup(func() { clock = saved })
	return &queueTest{t: t, cfg: cfg, dataDir: dataDir}
}

// message is one message put in the spool, then changed by edit (under
// its lock, as a delivery would) when edit is not nil.
type message struct {
	sender string
	rcpts  []string
	age    time.Duration
	body   string
	edit   func(*spool.Envelope)
}

// openSpool opens the test's spool beside the commands, as the daemon
// would; the caller closes it.
func (q *queueTest) openSpool() *spool.Spool {
	q.t.Helper()
	sp, err := spool.Open(filepath.Join(q.dataDir, "spool"), spool.Options{Sync: spool.SyncFdatasync})
	if err != nil {
		q.t.Fatal(err)
	}
	return sp
}

// hold takes message id's lock until the test ends, as a delivery in
// progress in another process would.
func (q *queueTest) hold(id string) {
	q.t.Helper()
	sp := q.openSpool()
	q.t.Cleanup(func() { sp.Close() })
	unlock, err := sp.Lock(spool.ID(id))
	if err != nil {
		q.t.Fatal(err)
	}
	q.t.Cleanup(unlock)
}

// fill commits msgs in order and returns their IDs.
func (q *queueTest) fill(msgs ...message) []string {
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
			Sender: m.sender, Recipients: m.rcpts, Received: queueNow.Add(-m.age),
			Headers: []spool.Header{{Type: ' ', Text: "Subject: test\n"}}, // 14 bytes
		}
		if err := w.Commit(context.Background(), env); err != nil {
			q.t.Fatal(err)
		}
		if m.edit != nil {
			unlock, err := sp.Lock(w.ID())
			if err != nil {
				q.t.Fatal(err)
			}
			env, err := sp.Load(w.ID())
			if err == nil {
				m.edit(env)
				err = sp.Update(env)
			}
			unlock()
			if err != nil {
				q.t.Fatal(err)
			}
		}
		ids = append(ids, string(w.ID()))
	}
	return ids
}

type result struct {
	stdout, stderr string
	code           int
}

// mxgate runs one command line on the test's config.
func (q *queueTest) mxgate(argv0 string, args ...string) result {
	q.t.Helper()
	var out, errs bytes.Buffer
	code := run(append([]string{argv0, "-config", q.cfg}, args...), strings.NewReader(""), &out, &errs)
	return result{out.String(), errs.String(), code}
}

func (q *queueTest) check(what string, got, want result) {
	q.t.Helper()
	if got != want {
		q.t.Errorf("%s:\nstatus %d, stdout:\n%s\nstderr:\n%s\nwant status %d, stdout:\n%s\nstderr:\n%s",
			what, got.code, got.stdout, got.stderr, want.code, want.stdout, want.stderr)
	}
}

// mainlog returns the mainlog's lines without their timestamps.
func (q *queueTest) mainlog() []string {
	q.t.Helper()
	b, err := os.ReadFile(filepath.Join(q.dataDir, "log", "mainlog"))
	if err != nil && !os.IsNotExist(err) {
		q.t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		lines = append(lines, strings.TrimSuffix(l[len("2006-01-02 15:04:05 "):], "\n"))
	}
	return lines
}

func (q *queueTest) requireLog(lines ...string) {
	q.t.Helper()
	log := q.mainlog()
	for _, want := range lines {
		found := false
		for _, l := range log {
			found = found || l == want
		}
		if !found {
			q.t.Errorf("mainlog has no line %q:\n%s", want, strings.Join(log, "\n"))
		}
	}
}

func TestListCommands(t *testing.T) {
	q := newQueueTest(t)
	ids := q.fill(
		// 14 header bytes + blank line + 1985 = 2000 bytes: " 2.0K".
		message{sender: "alice@example.test", rcpts: []string{"bob@example.test", "carol@example.test"}, age: 25 * time.Minute, body: strings.Repeat("x", 1984) + "\n",
			edit: func(e *spool.Envelope) { e.Done = []string{"carol@example.test"} }},
		message{sender: "", rcpts: []string{"alice@example.test"}, age: 100 * time.Minute, body: "bounce\n",
			edit: func(e *spool.Envelope) { e.Frozen = queueNow }},
		message{sender: "dave@example.test", rcpts: []string{"erin@example.test"}, age: 4 * 24 * time.Hour, body: "hi\n"},
	)
	r := strings.NewReplacer("ID1", ids[0], "ID2", ids[1], "ID3", ids[2])
	all := r.Replace(`25m  2.0K ID1 <alice@example.test>
          bob@example.test
        D carol@example.test

 2h    22 ID2 <> *** frozen ***
          alice@example.test

 4d    18 ID3 <dave@example.test>
          erin@example.test

`)
	undelivered := r.Replace(`25m  2.0K ID1 <alice@example.test>
          bob@example.test

 2h    22 ID2 <> *** frozen ***
          alice@example.test

 4d    18 ID3 <dave@example.test>
          erin@example.test

`)
	absent := "1tXyZa-000AbC-Qr"
	for _, c := range []struct {
		argv0 string
		args  []string
		want  result
	}{
		{"mxgate", []string{"-bp"}, result{all, "", 0}},
		{"/usr/bin/mailq", nil, result{all, "", 0}},
		{"mxgate", []string{"-bpr"}, result{all, "", 0}},
		{"mxgate", []string{"-bpu"}, result{undelivered, "", 0}},
		{"mxgate", []string{"-bpc"}, result{"3\n", "", 0}},
		{"mxgate", []string{"-bp", ids[2], ids[1]}, result{r.Replace(" 4d    18 ID3 <dave@example.test>\n          erin@example.test\n\n 2h    22 ID2 <> *** frozen ***\n          alice@example.test\n\n"), "", 0}},
		{"mxgate", []string{"-bp", "../etc/passwd", absent, ids[2]}, result{
			r.Replace(" 4d    18 ID3 <dave@example.test>\n          erin@example.test\n\n"),
			"mxgate: \"../etc/passwd\": not a message ID (want TTTTTT-PPPPPP-SS)\nmxgate: message " + absent + " is not in the spool: no such message\n",
			1}},
		{"mxgate", []string{"-bpc", ids[0]}, result{"", "", 2}},
	} {
		got := q.mxgate(c.argv0, c.args...)
		if c.want.code == 2 {
			// Usage goes to stderr; only its first line is checked.
			got.stderr, _, _ = strings.Cut(got.stderr, "\n")
			c.want.stderr = "mxgate: unexpected argument \"" + ids[0] + "\""
		}
		q.check(c.argv0+" "+strings.Join(c.args, " "), got, c.want)
	}
}

func TestListEmptyQueue(t *testing.T) {
	q := newQueueTest(t)
	q.check("-bp", q.mxgate("mxgate", "-bp"), result{"", "", 0})
	q.check("-bpc", q.mxgate("mxgate", "-bpc"), result{"0\n", "", 0})
}

func TestMessageCommands(t *testing.T) {
	q := newQueueTest(t)
	ids := q.fill(
		message{sender: "alice@example.test", rcpts: []string{"bob@example.test"}, body: "one\n"},
		message{sender: "alice@example.test", rcpts: []string{"carol@example.test"}, body: "two\n"},
	)
	a, b := ids[0], ids[1]
	absent := "1tXyZa-000AbC-Qr"
	user := userName()
	steps := []struct {
		args []string
		want result
	}{
		{[]string{"-Mf", a}, result{"Message " + a + " is now frozen\n", "", 0}},
		{[]string{"-Mf", a, b}, result{"Message " + a + " is already frozen\nMessage " + b + " is now frozen\n", "", 1}},
		{[]string{"-Mt", a}, result{"Message " + a + " is no longer frozen\n", "", 0}},
		{[]string{"-Mt", a}, result{"Message " + a + " is not frozen\n", "", 1}},
		{[]string{"-Mt", "abc", b, absent}, result{
			"Message " + b + " is no longer frozen\n",
			"mxgate: \"abc\": not a message ID (want TTTTTT-PPPPPP-SS)\nmxgate: message " + absent + " is not in the spool: no such message\n",
			1}},
		{[]string{"-Mrm", a}, result{"Message " + a + " has been removed\n", "", 0}},
		{[]string{"-Mrm", a}, result{"", "mxgate: message " + a + " is not in the spool: no such message\n", 1}},
		{[]string{"-bpc"}, result{"1\n", "", 0}},
	}
	for _, s := range steps {
		q.check(strings.Join(s.args, " "), q.mxgate("mxgate", s.args...), s.want)
	}
	q.requireLog(
		a+" frozen by "+user, b+" frozen by "+user,
		a+" unfrozen by "+user, b+" unfrozen by "+user,
		a+" removed by "+user, a+" Completed",
	)
	for _, flag := range []string{"-Mrm", "-Mf", "-Mt", "-M"} {
		got := q.mxgate("mxgate", flag)
		got.stderr, _, _ = strings.Cut(got.stderr, "\n")
		q.check(flag+" without an ID", got, result{"", "mxgate: give one or more message IDs", 2})
	}
}

// A message another process is handling is reported, not waited for,
// and left as it was: still queued, and not bounced (-Mg).
func TestMessageCommandsLocked(t *testing.T) {
	q := newQueueTest(t)
	id := q.fill(message{sender: "alice@example.test", rcpts: []string{"bob@example.test"}, body: "one\n"})[0]
	q.hold(id)
	for _, args := range [][]string{
		{"-Mrm", id}, {"-Mf", id}, {"-M", id},
		{"-Mg", id}, {"-Mar", id, "x@example.test"}, {"-Mes", id, "x@example.test"},
	} {
		q.check(strings.Join(args, " "), q.mxgate("mxgate", args...), result{"Message " + id + " is locked\n", "", 1})
	}
	q.check("-bpc", q.mxgate("mxgate", "-bpc"), result{"1\n", "", 0})
	if n := q.maildirFiles("alice"); n != 0 {
		t.Errorf("alice got %d messages", n)
	}
}

func TestViewCommands(t *testing.T) {
	q := newQueueTest(t)
	id := q.fill(message{sender: "alice@example.test", rcpts: []string{"bob@example.test"}, body: "line one\n.dot\n"})[0]
	sub := filepath.Join(q.dataDir, "spool", "input", id[5:6])
	hfile, err := os.ReadFile(filepath.Join(sub, id+"-H"))
	if err != nil {
		t.Fatal(err)
	}
	q.check("-Mvh", q.mxgate("mxgate", "-Mvh", id), result{string(hfile), "", 0})
	q.check("-Mvb", q.mxgate("mxgate", "-Mvb", id), result{id + "-D\nline one\n.dot\n", "", 0})
	q.check("-Mvl without a msglog", q.mxgate("mxgate", "-Mvl", id), result{"", "mxgate: message " + id + ": open " +
		filepath.Join(q.dataDir, "spool", "msglog", id[5:6], id) + ": no such file or directory\n", 1})
	q.check("-Mvh ../", q.mxgate("mxgate", "-Mvh", "../"+id), result{"", "mxgate: \"../" + id + "\": not a message ID (want TTTTTT-PPPPPP-SS)\n", 1})
	got := q.mxgate("mxgate", "-Mvb", id, id)
	got.stderr, _, _ = strings.Cut(got.stderr, "\n")
	q.check("-Mvb with two IDs", got, result{"", "mxgate: give exactly one message ID", 2})
}

// maildirFiles counts the messages delivered to local@example.test.
func (q *queueTest) maildirFiles(local string) int {
	q.t.Helper()
	entries, err := os.ReadDir(filepath.Join(q.dataDir, "maildir", "example.test", local, "new"))
	if err != nil && !os.IsNotExist(err) {
		q.t.Fatal(err)
	}
	return len(entries)
}

func TestDeliveryCommands(t *testing.T) {
	q := newQueueTest(t)
	later := time.Now().Add(time.Hour)
	ids := q.fill(
		message{sender: "a@example.test", rcpts: []string{"due@example.test"}, body: "due\n"},
		message{sender: "a@example.test", rcpts: []string{"waiting@example.test"}, body: "waiting\n",
			edit: func(e *spool.Envelope) { e.NextTry = later }},
		message{sender: "a@example.test", rcpts: []string{"frozen@example.test"}, body: "frozen\n",
			edit: func(e *spool.Envelope) { e.Frozen, e.NextTry = time.Now(), later }},
		message{sender: "a@example.test", rcpts: []string{"forced@example.test"}, body: "forced\n",
			edit: func(e *spool.Envelope) { e.Frozen, e.NextTry = time.Now(), later }},
	)
	due, waiting, frozen, forced := ids[0], ids[1], ids[2], ids[3]
	steps := []struct {
		args      []string
		delivered map[string]int // Maildir messages per local part after the step
		left      string         // -bpc after the step
	}{
		{[]string{"-q"}, map[string]int{"due": 1, "waiting": 0, "frozen": 0, "forced": 0}, "3\n"},
		{[]string{"-M", forced}, map[string]int{"due": 1, "waiting": 0, "frozen": 0, "forced": 1}, "2\n"},
		{[]string{"-qf"}, map[string]int{"due": 1, "waiting": 1, "frozen": 0, "forced": 1}, "1\n"},
		{[]string{"-qff"}, map[string]int{"due": 1, "waiting": 1, "frozen": 1, "forced": 1}, "0\n"},
	}
	for _, s := range steps {
		q.check(strings.Join(s.args, " "), q.mxgate("mxgate", s.args...), result{"", "", 0})
		for local, n := range s.delivered {
			if got := q.maildirFiles(local); got != n {
				t.Errorf("after %v: %d messages for %s@example.test, want %d", s.args, got, local, n)
			}
		}
		q.check("-bpc after "+strings.Join(s.args, " "), q.mxgate("mxgate", "-bpc"), result{s.left, "", 0})
	}
	q.requireLog(
		due+" => due@example.test R=downstream T=maildir", due+" Completed",
		forced+" Unfrozen by forced delivery", forced+" => forced@example.test R=downstream T=maildir",
		waiting+" => waiting@example.test R=downstream T=maildir",
		frozen+" Unfrozen by forced delivery", frozen+" => frozen@example.test R=downstream T=maildir",
	)
	q.check("-M of a delivered message", q.mxgate("mxgate", "-M", due), result{"", "mxgate: message " + due + " is not in the spool: no such message\n", 1})
}
