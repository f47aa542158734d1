package e2e

import (
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// queued is one message of the queue administration test.
type queued struct {
	id     string
	sender string
	rcpts  []string
	size   int64 // S= of its <= line
}

// TestQueueAdmin is issue 3's end-to-end test: the real binary on a live
// spool holding delivered, deferred (downstream 451), failed (downstream
// 550, bounced to the sender) and frozen messages, every admin command's
// exact output on it, and eximstats and exigrep on the mainlog it left.
// The steps share one spool and run in order; each is a subtest, so a
// command that is missing fails its own step and the rest still run.
func TestQueueAdmin(t *testing.T) {
	ds := startScripted(t)
	g := startMxgateConfig(t, filepath.Join("testdata", "queueadmin.toml.tmpl"), ds.URL())
	body, err := os.ReadFile(testdata("message.eml"))
	if err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	send := func(sender string, rcpts ...string) *queued {
		t.Helper()
		return &queued{id: c.send(t, sender, rcpts, dataBytes(body)), sender: sender, rcpts: rcpts}
	}
	delivered := send("a@example.test", "ok-a@example.test")
	partial := send("b@example.test", "ok-b@example.test", "defer-b@example.test")
	failed := send("c@example.test", "fail-c@example.test")
	frozen := send("d@example.test", "defer-d@example.test")
	removed := send("f@example.test", "defer-f@example.test")
	forced := send("g@example.test", "defer-g@example.test")
	// Relaying for a domain it does not protect, from an untrusted client.
	c.expect(t, "MAIL FROM:<r@example.test>", 250)
	c.expect(t, "RCPT TO:<x@elsewhere.test>", 550)
	c.expect(t, "QUIT", 221)

	// The first attempt of each: the next is hours away (queueadmin.toml.tmpl).
	g.waitCompleted(delivered.id, failed.id)
	waitFor(t, drainTimeout, func() string {
		for _, w := range []struct{ id, line string }{
			{partial.id, `=> ok-b@example\.test `},
			{partial.id, `== defer-b@example\.test `},
			{frozen.id, `== defer-d@example\.test `},
			{removed.id, `== defer-f@example\.test `},
			{forced.id, `== defer-g@example\.test `},
		} {
			if !g.logHas(logLine(w.id, w.line)) {
				return "mainlog line " + strconv.Quote(w.id+" "+w.line)
			}
		}
		return ""
	})
	for _, m := range []*queued{delivered, partial, failed, frozen, removed, forced} {
		m.size = receivedSize(t, g, m.id)
	}
	g.requireLog(failed.id, regexp.QuoteMeta("** fail-c@example.test ")+`.*`+regexp.QuoteMeta(failReply)+`$`)
	g.requireLog(partial.id, regexp.QuoteMeta("== defer-b@example.test ")+`.*`+regexp.QuoteMeta(deferReply)+`$`)

	var bounceID string
	t.Run("bounce", func(t *testing.T) {
		g := g.in(t)
		// Exim logs a bounce's arrival as "<= <> R=PARENT-ID".
		re := regexp.MustCompile(`^\S+ \S+ (\S+) <= <> R=` + regexp.QuoteMeta(failed.id) + ` `)
		waitFor(t, drainTimeout, func() string {
			for _, l := range g.mainlog() {
				if m := re.FindStringSubmatch(l); m != nil {
					bounceID = m[1]
					return ""
				}
			}
			return "the bounce of " + failed.id + " (a line " + strconv.Quote("<= <> R="+failed.id) + ")"
		})
		g.waitCompleted(bounceID)
		g.requireLog(bounceID, regexp.QuoteMeta("=> c@example.test ")+`.*`)
		var dsn []scriptedMessage
		for _, m := range ds.messages() {
			if slices.Contains(m.rcpts, "c@example.test") {
				dsn = append(dsn, m)
			}
		}
		if len(dsn) != 1 {
			t.Fatalf("downstream got %d messages for c@example.test, want the one bounce of %s", len(dsn), failed.id)
		}
		if dsn[0].from != "" || !slices.Equal(dsn[0].rcpts, []string{"c@example.test"}) {
			t.Errorf("bounce envelope: MAIL FROM:<%s> RCPT TO:%v, want MAIL FROM:<> to c@example.test only", dsn[0].from, dsn[0].rcpts)
		}
		// Header names match in any case: Exim writes "Content-type" in
		// the parts. Values are regular expressions.
		data := strings.ReplaceAll(dsn[0].data, "\r\n", "\n")
		for _, h := range []struct{ name, value string }{
			{"Content-Type", `multipart/report; report-type=delivery-status;.*`},
			{"Content-Type", `message/delivery-status`},
			{"Final-Recipient", `rfc822; fail-c@example\.test`},
			{"Action", `failed`},
			{"Status", `5\.1\.1`},
			{"Diagnostic-Code", `smtp; 550 5\.1\.1 No such user here`},
			{"Content-Type", `(message/rfc822|text/rfc822-headers)`},
			// The original message's headers.
			{"Subject", `e2e message`},
			{"Message-Id", `<e2e-message@sender\.test>`},
		} {
			re := regexp.MustCompile(`(?m)^(?i:` + h.name + `): ` + h.value + `$`)
			if !re.MatchString(data) {
				t.Errorf("bounce of %s has no line matching %q:\n%s", failed.id, re, dsn[0].data)
			}
		}
	})

	// The queue now: partial (ok-b delivered), frozen, removed and forced,
	// each waiting for a defer... recipient.
	t.Run("-bpc", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-bpc")
		if got := g.mustCLI("-bpc"); got != "4\n" {
			t.Errorf("-bpc = %q, want %q", got, "4\n")
		}
	})
	t.Run("-bp", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-bp")
		want := bpListing(nil, partial, frozen, removed, forced)
		checkListing(t, "-bp", g.mustCLI("-bp"), want, true)
		checkListing(t, "-bp ID", g.mustCLI("-bp", partial.id), bpListing(nil, partial), true)
		// Exim's mailq is -bp by the program's name.
		mailq := filepath.Join(t.TempDir(), "mailq")
		if err := os.Symlink(binary, mailq); err != nil {
			t.Fatal(err)
		}
		r := runProgram(t, mailq, "-config", g.cfgPath)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("mailq: status %d, stderr %q", r.code, r.stderr)
		}
		checkListing(t, "mailq", r.stdout, want, true)
	})
	t.Run("-bpr", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-bpr")
		checkListing(t, "-bpr", g.mustCLI("-bpr"), bpListing(nil, partial, frozen, removed, forced), false)
	})
	t.Run("-bpu", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-bpu")
		want := bpListing(&bpOptions{undeliveredOnly: true}, partial, frozen, removed, forced)
		checkListing(t, "-bpu", g.mustCLI("-bpu"), want, true)
	})
	t.Run("-Mv", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-Mvl", "-Mvh", "-Mvb")
		split := partial.id[5:6]
		for _, tc := range []struct {
			flag, file string
		}{
			{"-Mvl", filepath.Join(g.dataDir, "spool", "msglog", split, partial.id)},
			{"-Mvh", filepath.Join(g.dataDir, "spool", "input", split, partial.id+"-H")},
			{"-Mvb", filepath.Join(g.dataDir, "spool", "input", split, partial.id+"-D")},
		} {
			want, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.mustCLI(tc.flag, partial.id); got != string(want) {
				t.Errorf("%s %s printed\n%s\nwant the file %s as it is:\n%s", tc.flag, partial.id, got, tc.file, want)
			}
		}
		// What the files must say, so the comparison above is not of two
		// empty files.
		if got := g.mustCLI("-Mvb", partial.id); !strings.HasPrefix(got, partial.id+"-D\n") || !strings.Contains(got, "\nLast line of the body.\n") {
			t.Errorf("-Mvb %s = %q, want %s-D and the body", partial.id, got, partial.id)
		}
		if got := g.mustCLI("-Mvh", partial.id); !strings.HasPrefix(got, partial.id+"-H\n") || !strings.Contains(got, "\n<b@example.test>\n") {
			t.Errorf("-Mvh %s = %q, want %s-H and the sender", partial.id, got, partial.id)
		}
		msglog := g.mustCLI("-Mvl", partial.id)
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Received from b@example\.test H=localhost \(client\.test\) \[127\.0\.0\.1\]`),
			regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*ok-b@example\.test`),
			regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*defer-b@example\.test.*` + regexp.QuoteMeta(deferReply)),
		} {
			if !want.MatchString(msglog) {
				t.Errorf("-Mvl %s has no line matching %q:\n%s", partial.id, want, msglog)
			}
		}
	})
	t.Run("-Mf", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-Mf")
		expectCLI(g, 0, "Message "+frozen.id+" is now frozen\n", "-Mf", frozen.id)
		expectCLI(g, 1, "Message "+frozen.id+" is already frozen\n", "-Mf", frozen.id)
		g.requireLog(frozen.id, "frozen by "+regexp.QuoteMeta(me.Username)+"$")
		if hasCommand(t, "-bp") {
			want := bpListing(&bpOptions{frozen: frozen.id}, partial, frozen, removed, forced)
			checkListing(t, "-bp", g.mustCLI("-bp"), want, true)
		}
	})
	t.Run("-Mt", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-Mt", "-Mf")
		expectCLI(g, 0, "Message "+frozen.id+" is no longer frozen\n", "-Mt", frozen.id)
		expectCLI(g, 1, "Message "+frozen.id+" is not frozen\n", "-Mt", frozen.id)
		g.requireLog(frozen.id, "unfrozen by "+regexp.QuoteMeta(me.Username)+"$")
		expectCLI(g, 0, "Message "+frozen.id+" is now frozen\n", "-Mf", frozen.id)
	})
	t.Run("-Mrm", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-Mrm")
		expectCLI(g, 0, "Message "+removed.id+" has been removed\n", "-Mrm", removed.id)
		g.requireLog(removed.id, "removed by "+regexp.QuoteMeta(me.Username)+"$", "Completed$")
		if slices.Contains(g.spooled(), removed.id) {
			t.Errorf("%s is still in the spool after -Mrm", removed.id)
		}
		if hasCommand(t, "-bpc") {
			if got := g.mustCLI("-bpc"); got != "3\n" {
				t.Errorf("-bpc after -Mrm = %q, want %q", got, "3\n")
			}
		}
	})
	t.Run("refused IDs", func(t *testing.T) {
		g := g.in(t)
		// Every ID command refuses what is not a message in the spool,
		// and touches nothing: files planted where "../" arguments would
		// lead from the spool's directories stay as they are.
		const planted = "not a spool file\n"
		var plants []string
		for _, dir := range []string{g.dataDir, filepath.Join(g.dataDir, "spool"), filepath.Join(g.dataDir, "spool", "input")} {
			for _, name := range []string{"outside", "outside-H", "outside-D", "outside-J"} {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(planted), 0o644); err != nil {
					t.Fatal(err)
				}
				plants = append(plants, p)
			}
		}
		for _, flag := range []string{"-Mvl", "-Mvh", "-Mvb", "-Mrm", "-Mf", "-Mt", "-M"} {
			if !hasCommand(t, flag) {
				t.Errorf("mxgate has no %s command", flag)
				continue
			}
			for _, arg := range []string{"../outside", "../../outside", "../../../outside", "not-an-id", removed.id} {
				r := g.cli(flag, arg)
				if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "mxgate: ") || !strings.Contains(r.stderr, arg) {
					t.Errorf("mxgate %s %s: status %d, stdout %q, stderr %q; want status 1, no output, an error naming %q",
						flag, arg, r.code, r.stdout, r.stderr, arg)
				}
			}
		}
		for _, p := range plants {
			if b, err := os.ReadFile(p); err != nil || string(b) != planted {
				t.Errorf("%s after the refused commands: %q, %v", p, b, err)
			}
		}
	})

	// The downstream recovers: forced moves by -M, partial by -qf, and the
	// frozen one only by -qff.
	ds.recover()
	t.Run("-M", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-M")
		expectCLI(g, 0, "", "-M", forced.id)
		g.waitCompleted(forced.id)
		g.requireLog(forced.id, regexp.QuoteMeta("=> defer-g@example.test ")+`.*`)
	})
	t.Run("-qf", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-qf")
		expectCLI(g, 0, "", "-qf")
		g.waitCompleted(partial.id)
		g.requireLog(partial.id, regexp.QuoteMeta("=> defer-b@example.test ")+`.*`)
		if g.logHas(logLine(frozen.id, `=> `)) {
			t.Errorf("-qf delivered the frozen message %s", frozen.id)
		}
		if !g.logHas(regexp.MustCompile(`^\S+ \S+ Start queue run: pid=\d+ -qf$`)) {
			t.Errorf("mainlog has no %q line", "Start queue run: pid=N -qf")
		}
		if hasCommand(t, "-bp") {
			want := bpListing(&bpOptions{frozen: frozen.id}, frozen)
			checkListing(t, "-bp", g.mustCLI("-bp"), want, true)
		}
	})
	t.Run("-qff", func(t *testing.T) {
		g := g.in(t)
		requireCommand(t, "-qff")
		expectCLI(g, 0, "", "-qff")
		g.waitCompleted(frozen.id)
		g.requireLog(frozen.id, regexp.QuoteMeta("=> defer-d@example.test ")+`.*`)
		if hasCommand(t, "-bpc") {
			if got := g.mustCLI("-bpc"); got != "0\n" {
				t.Errorf("-bpc on the empty queue = %q, want %q", got, "0\n")
			}
		}
		if hasCommand(t, "-bp") {
			if got := g.mustCLI("-bp"); got != "" {
				t.Errorf("-bp on the empty queue = %q, want nothing", got)
			}
		}
	})

	mainlog := filepath.Join(g.dataDir, "log", "mainlog")
	t.Run("eximstats", func(t *testing.T) {
		g := g.in(t)
		// Every <= is a message received, the bounce too; every => starts
		// one delivery (partial had two); delayed and failed count the
		// received messages with an == or ** line.
		want := grandTotal{Received: 7, Delivered: 6, Rejects: 1, Delayed: 4, Failed: 1}
		if bounceID == "" {
			// The bounce step has failed already: count without it, so
			// this step reports only what is wrong with the rest.
			want.Received, want.Delivered = 6, 5
		}
		got, report := eximstats(t, mainlog)
		if got != want {
			t.Errorf("eximstats grand totals %+v, want %+v; report:\n%s\nmainlog:\n%s", got, want, report, strings.Join(g.mainlog(), "\n"))
		}
	})
	t.Run("exigrep", func(t *testing.T) {
		g := g.in(t)
		for _, tc := range []struct {
			id   string
			with []string // the messages whose lines it prints
		}{
			{partial.id, []string{partial.id}},
			{delivered.id, []string{delivered.id}},
			// A bounce's "<= <> R=ID" names its parent: exigrep prints both.
			{failed.id, []string{failed.id, bounceID}},
		} {
			// exigrep prints each message's lines in log order, the
			// messages in the order they completed. It matches without
			// case unless given -I, and mxgate's IDs, like Exim's, are
			// base62: an ID differing only in case can match too.
			want := byMessage(g.mainlog(), tc.with)
			got := exigrep(t, "-I", tc.id, mainlog)
			if !maps.EqualFunc(byMessage(got, nil), want, slices.Equal) || len(got) != lineCount(want) {
				t.Errorf("exigrep -I %s printed\n%s\nwant the lines of %v:\n%v", tc.id, strings.Join(got, "\n"), tc.with, want)
			}
			got = exigrep(t, tc.id, mainlog)
			groups := byMessage(got, nil)
			for id, lines := range groups {
				text := strings.Join(lines, "\n")
				switch {
				case slices.Contains(tc.with, id):
					if !slices.Equal(lines, want[id]) {
						t.Errorf("exigrep %s printed for %s\n%s\nwant\n%s", tc.id, id, text, strings.Join(want[id], "\n"))
					}
				case strings.Contains(text, tc.id) || !strings.Contains(strings.ToLower(text), strings.ToLower(tc.id)):
					t.Errorf("exigrep %s printed the lines of %s, which do not name %s in another case:\n%s", tc.id, id, tc.id, text)
				}
			}
			for _, id := range tc.with {
				if _, ok := groups[id]; !ok && id != "" {
					t.Errorf("exigrep %s printed no line of %s:\n%s", tc.id, id, strings.Join(got, "\n"))
				}
			}
			if len(got) < lineCount(want) {
				t.Errorf("exigrep %s printed %d lines, fewer than the %d of %v", tc.id, len(got), lineCount(want), tc.with)
			}
		}
	})
}

// byMessage groups mainlog lines by the message ID they carry, in order,
// keeping only the IDs in ids (all when ids is nil).
func byMessage(lines, ids []string) map[string][]string {
	m := map[string][]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || (ids != nil && !slices.Contains(ids, f[2])) {
			continue
		}
		m[f[2]] = append(m[f[2]], l)
	}
	return m
}

func lineCount(m map[string][]string) int {
	n := 0
	for _, ls := range m {
		n += len(ls)
	}
	return n
}

// receivedSize returns S= of the <= line of id.
func receivedSize(t *testing.T, g *mxgate, id string) int64 {
	t.Helper()
	re := logLine(id, `<= .* S=(\d+)( |$)`)
	for _, l := range g.mainlog() {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			return n
		}
	}
	t.Fatalf("mainlog has no <= line with S= for %s", id)
	return 0
}

// bpOptions shapes the listing bpListing expects.
type bpOptions struct {
	undeliveredOnly bool   // -bpu
	frozen          string // the ID marked *** frozen ***
}

// bpListing is Exim's -bp output (exim.md §3.1) for msgs, with the age
// written as "AGE" (the test cannot know on which side of a minute the
// command runs: checkListing normalises it). A recipient is delivered when
// the mainlog has its => line, which the caller has waited for: here,
// exactly the recipients named ok-....
func bpListing(o *bpOptions, msgs ...*queued) string {
	if o == nil {
		o = &bpOptions{}
	}
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "AGE %s %s <%s>", eximSize(m.size), m.id, m.sender)
		if m.id == o.frozen {
			b.WriteString(" *** frozen ***")
		}
		b.WriteString("\n")
		for _, r := range m.rcpts {
			done := strings.HasPrefix(r, "ok-")
			switch {
			case done && o.undeliveredOnly:
			case done:
				fmt.Fprintf(&b, "        D %s\n", r)
			default:
				fmt.Fprintf(&b, "          %s\n", r)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// bpAge is the age column of a message under a minute or a few old.
var bpAge = regexp.MustCompile(`(?m)^ \dm `)

// checkListing compares a -bp style listing with want; unsorted listings
// (-bpr) are compared message by message in any order.
func checkListing(t *testing.T, what, got, want string, sortedByArrival bool) {
	t.Helper()
	norm := bpAge.ReplaceAllString(got, "AGE ")
	if !sortedByArrival {
		norm, want = strings.Join(sorted(strings.SplitAfter(norm, "\n\n")), ""), strings.Join(sorted(strings.SplitAfter(want, "\n\n")), "")
	}
	if norm != want {
		t.Errorf("%s printed\n%s\nwant (AGE being %q with a one-digit minute count)\n%s", what, got, " Nm", want)
	}
}

// eximSize is Exim's string_format_size: the 5-column size of -bp.
func eximSize(n int64) string {
	switch {
	case n == 0:
		return "     "
	case n < 1024:
		return fmt.Sprintf("%5d", n)
	case n < 10*1024:
		return fmt.Sprintf("%4.1fK", float64(n)/1024)
	case n < 1024*1024:
		return fmt.Sprintf("%4dK", (n+512)/1024)
	case n < 10*1024*1024:
		return fmt.Sprintf("%4.1fM", float64(n)/(1024*1024))
	default:
		return fmt.Sprintf("%4dM", (n+512*1024)/(1024*1024))
	}
}

// expectCLI runs an admin command that must exit with status and print
// exactly want on stdout and nothing on stderr: Exim's -Mf on a frozen
// message prints why it did nothing and exits 1.
func expectCLI(g *mxgate, status int, want string, args ...string) {
	g.t.Helper()
	r := g.cli(args...)
	if r.code != status || r.stdout != want || r.stderr != "" {
		g.t.Errorf("mxgate %s: status %d, stdout %q, stderr %q; want status %d, stdout %q, no stderr",
			strings.Join(args, " "), r.code, r.stdout, r.stderr, status, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
