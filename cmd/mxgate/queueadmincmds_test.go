package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/dsn"
	"mxgate/spool"
)

func TestGiveUp(t *testing.T) {
	q := newQueueTest(t)
	ids := q.fill(
		message{sender: "alice@example.test", rcpts: []string{"bob@example.test", "carol@example.test", "dave@example.test"}, body: "hello\n",
			edit: func(e *spool.Envelope) { e.Done, e.Frozen = []string{"carol@example.test"}, queueNow }},
		message{sender: "", rcpts: []string{"erin@example.test"}, body: "a bounce\n"},
	)
	msg, bounce := ids[0], ids[1]
	q.check("-Mg", q.mxgate("mxgate", "-Mg", msg, bounce), result{"", "", 0})
	q.check("-bpc after -Mg", q.mxgate("mxgate", "-bpc"), result{"0\n", "", 0})
	user := userName()
	q.requireLog(
		msg+" cancelled by "+user,
		msg+" ** bob@example.test: delivery cancelled by administrator",
		msg+" ** dave@example.test: delivery cancelled by administrator",
		msg+" Completed",
		bounce+" cancelled by "+user,
		bounce+" ** erin@example.test: delivery cancelled by administrator",
		bounce+" Completed",
	)
	// The one bounce, to alice, delivered at once, naming both recipients.
	var bounceID string
	for _, l := range q.mainlog() {
		if id, rest, _ := strings.Cut(l, " "); strings.HasPrefix(rest, "<= <> R="+msg+" U="+dsn.User()+" P=local S=") {
			bounceID = id
		}
		if strings.Contains(l, "carol@example.test: delivery cancelled") || strings.HasPrefix(l, bounce+" <= <>") {
			t.Errorf("mainlog line %q: carol was delivered, and a bounce is not bounced", l)
		}
	}
	if bounceID == "" {
		t.Fatalf("no arrival of the bounce of %s in the mainlog:\n%s", msg, strings.Join(q.mainlog(), "\n"))
	}
	q.requireLog(bounceID+" => alice@example.test R=downstream T=maildir", bounceID+" Completed")
	if n := q.maildirFiles("alice"); n != 1 {
		t.Fatalf("alice got %d messages, want the bounce", n)
	}
	dir := filepath.Join(q.dataDir, "maildir", "example.test", "alice", "new")
	entries, _ := os.ReadDir(dir)
	b, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Final-Recipient: rfc822; bob@example.test", "Final-Recipient: rfc822; dave@example.test", "delivery cancelled by administrator", "Subject: test"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the bounce has no %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "carol@example.test") {
		t.Errorf("the bounce names carol, who was delivered:\n%s", b)
	}
	q.check("-Mg of a message gone", q.mxgate("mxgate", "-Mg", msg), result{"", "mxgate: message " + msg + " is not in the spool: no such message\n", 1})
}

func TestEditCommands(t *testing.T) {
	q := newQueueTest(t)
	id := q.fill(message{sender: "alice@example.test", rcpts: []string{"bob@example.test"}, age: 5 * time.Minute, body: "one\n"})[0]
	modified := result{"Message " + id + " has been modified\n", "", 0}
	steps := []struct {
		args []string
		want result
	}{
		{[]string{"-Mar", id, "carol@example.test", "<dave@Example.TEST>"}, modified},
		{[]string{"-Mar", id, "erin@example.test", "nodomain"}, result{"Message " + id + " - error while adding recipient:\n  bad address nodomain: bad address syntax: \"nodomain\" has no domain\n", "", 1}},
		{[]string{"-Mar", id, "bob@example.test"}, result{"Message " + id + " - error while adding recipient:\n  bob@example.test is already a recipient: message not updated\n", "", 1}},
		{[]string{"-Mar", id, "<>"}, result{"Message " + id + " - error while adding recipient:\n  bad address <>: a recipient cannot be <>\n", "", 1}},
		{[]string{"-Mes", id, "frank@example.test"}, modified},
		{[]string{"-Mes", id, "a", "b"}, result{"Message " + id + " - only one sender address can be specified\n", "", 1}},
		{[]string{"-Mes", id, "@"}, result{"Message " + id + " - error while editing sender:\n  bad address @: bad address syntax: \"@\": empty local part\n", "", 1}},
		{[]string{"-bp", id}, result{" 5m    19 " + id + " <frank@example.test>\n          bob@example.test\n          carol@example.test\n          dave@example.test\n\n", "", 0}},
		{[]string{"-Mes", id, "<>"}, modified},
		{[]string{"-bpa", id}, result{" 5m    19 " + id + " <>\n          bob@example.test\n          carol@example.test\n          dave@example.test\n\n", "", 0}},
	}
	for _, s := range steps {
		got := q.mxgate("mxgate", s.args...)
		q.check(strings.Join(s.args, " "), got, s.want)
	}
	user := userName()
	q.requireLog(
		id+" recipient <carol@example.test> added by "+user,
		id+" recipient <dave@example.test> added by "+user,
		id+" sender address changed to <frank@example.test> by "+user,
		id+" sender address changed to <> by "+user,
	)
	for _, args := range [][]string{{"-Mar", id}, {"-Mes", id}, {"-Mar"}} {
		got := q.mxgate("mxgate", args...)
		if got.code != 2 || !strings.HasPrefix(got.stderr, "mxgate: give a message ID and") {
			t.Errorf("%q: %+v, want a usage error", args, got)
		}
	}
}

func TestDeliverMatching(t *testing.T) {
	q := newQueueTest(t)
	later := time.Now().Add(time.Hour)
	wait := func(e *spool.Envelope) { e.NextTry = later }
	ids := q.fill(
		message{sender: "a@example.test", rcpts: []string{"one@example.test"}, body: "1\n", edit: wait},
		message{sender: "a@example.test", rcpts: []string{"two@example.test"}, body: "2\n", edit: wait},
		message{sender: "a@example.test", rcpts: []string{"lone@example.test"}, body: "3\n",
			edit: func(e *spool.Envelope) { e.NextTry, e.Frozen = later, queueNow }},
	)
	for _, name := range []string{"-R", "-qR"} {
		got := q.mxgate("mxgate", name)
		if got.code != 2 {
			t.Errorf("%s without a string: %+v", name, got)
		}
	}
	// A substring in any case; the frozen message is left alone.
	q.check("-R ONE@", q.mxgate("mxgate", "-R", "ONE@"), result{"", "", 0})
	q.check("-bpi", q.mxgate("mxgate", "-bpi"), result{ids[1] + "\n" + ids[2] + "\n", "", 0})
	q.requireLog(ids[0] + " => one@example.test R=downstream T=maildir")
	q.check("-qR two@", q.mxgate("mxgate", "-qR", "two@"), result{"", "", 0})
	q.check("mailq", q.mxgate("mxgate", "mailq"), result{" 0m    17 " + ids[2] + " <a@example.test> *** frozen ***\n          lone@example.test\n\n", "", 0})
	q.check("-R nothing", q.mxgate("mxgate", "-R", "nowhere"), result{"", "", 0})
	q.check("runq", q.mxgate("mxgate", "runq"), result{"", "", 0})
	q.check("-bpc", q.mxgate("mxgate", "-bpc"), result{"1\n", "", 0})
}

func TestExinext(t *testing.T) {
	q := newQueueTest(t)
	first := time.Date(2024, 5, 1, 10, 0, 0, 0, time.Local)
	next := time.Date(2024, 5, 1, 12, 30, 0, 0, time.Local)
	ids := q.fill(
		message{sender: "a@example.test", rcpts: []string{"bob@example.test", "carol@other.test", "dan@example.test"}, body: "1\n",
			edit: func(e *spool.Envelope) { e.FirstFailed, e.NextTry, e.Done = first, next, []string{"dan@example.test"} }},
		message{sender: "a@example.test", rcpts: []string{"bob@example.test"}, body: "2\n",
			edit: func(e *spool.Envelope) { e.FirstFailed, e.Frozen = first, queueNow }},
		message{sender: "a@example.test", rcpts: []string{"never@example.test"}, body: "3\n"},
	)
	sp := q.openSpool()
	for _, l := range []string{
		"2024-05-01 10:00:00 == bob@example.test R=downstream T=lmtp defer (111): Connection refused",
		"2024-05-01 10:00:00 == carol@other.test R=dnslookup T=smtp defer (-44) H=mx.other.test [192.0.2.1]: 451 4.3.0 try later",
		"2024-05-01 11:00:00 == bob@example.test R=downstream T=lmtp defer (-46): 452 4.2.2 mailbox full",
	} {
		if err := sp.MsglogRaw(spool.ID(ids[0]), l); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	bob := ids[0] + ` <bob@example.test>: R=downstream T=lmtp defer (-46): 452 4.2.2 mailbox full
  first failed: 01-May-2024 10:00:00
  last tried:   01-May-2024 11:00:00
  next try at:  01-May-2024 12:30:00
`
	bobFrozen := ids[1] + ` <bob@example.test>
  first failed: 01-May-2024 10:00:00
  frozen since: 01-May-2024 12:00:00 (not tried until thawed)
`
	carol := ids[0] + ` <carol@other.test>: R=dnslookup T=smtp defer (-44) H=mx.other.test [192.0.2.1]: 451 4.3.0 try later
  first failed: 01-May-2024 10:00:00
  last tried:   01-May-2024 10:00:00
  next try at:  01-May-2024 12:30:00
`
	for _, c := range []struct {
		arg  string
		want result
	}{
		{"bob@EXAMPLE.test", result{bob + bobFrozen, "", 0}},
		{"example.test", result{bob + bobFrozen, "", 0}},
		{"other.test", result{carol, "", 0}},
		{ids[0], result{bob + carol, "", 0}},
		{"dan@example.test", result{"No retry information for dan@example.test\n", "", 1}},
		{ids[2], result{"No retry information for " + ids[2] + "\n", "", 1}},
	} {
		q.check("exinext "+c.arg, q.mxgate("mxgate", "exinext", c.arg), c.want)
	}
}
