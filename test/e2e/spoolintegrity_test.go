package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSpoolIntegrity is issue 13's spool integrity end to end: three
// messages deferred by the downstream stay queued; with the daemon
// stopped one gets a corrupt -H and one a truncated -D. The restarted
// daemon's first queue run sets the corrupt one aside to spool/corrupt/
// with one paniclog line, and -bpc no longer counts it; a forced queue
// run delivers the intact one and freezes the truncated one with its
// paniclog line, never sending it; neither is reported again by later
// runs, and a thaw (-qff) finds the truncation again.
func TestSpoolIntegrity(t *testing.T) {
	ds := startScripted(t)
	g := startMxgateConfig(t, filepath.Join("testdata", "queueadmin.toml.tmpl"), ds.URL())
	body, err := os.ReadFile(testdata("message.eml"))
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	corrupt := c.send(t, "a@example.test", []string{"defer-a@example.test"}, dataBytes(body))
	truncated := c.send(t, "b@example.test", []string{"defer-b@example.test"}, dataBytes(body))
	intact := c.send(t, "c@example.test", []string{"defer-c@example.test"}, dataBytes(body))
	c.expect(t, "QUIT", 221)
	waitFor(t, drainTimeout, func() string {
		for _, id := range []string{corrupt, truncated, intact} {
			if !g.logHas(logLine(id, `== defer-`)) {
				return "the first deferral of " + id
			}
		}
		return ""
	})
	g.stop()

	input := func(id, suffix string) string {
		return filepath.Join(g.dataDir, "spool", "input", id[5:6], id+suffix)
	}
	// A -H cut short, as a full disk under a careless editor leaves it.
	h, err := os.ReadFile(input(corrupt, "-H"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(input(corrupt, "-H"), h[:strings.Index(string(h), "\nXX\n")+1], 0o640); err != nil {
		t.Fatal(err)
	}
	d, err := os.Stat(input(truncated, "-D"))
	if err != nil {
		t.Fatal(err)
	}
	const kept = 100 // body bytes left
	if err := os.Truncate(input(truncated, "-D"), int64(len(truncated)+3+kept)); err != nil {
		t.Fatal(err)
	}
	bodySize := d.Size() - int64(len(truncated)+3)
	ds.recover()
	g.start()

	corruptDir := filepath.Join(g.dataDir, "spool", "corrupt")
	corruptLine := panicLine(corrupt, regexp.QuoteMeta("spool format error in "+input(corrupt, "-H")+": line ")+
		`\d+: file ends where .* was expected; set aside in `+regexp.QuoteMeta(corruptDir+"/")+`$`)
	truncLine := panicLine(truncated, regexp.QuoteMeta("spool data file truncated: 100 bytes, -H says ")+
		strconv.FormatInt(bodySize, 10)+`$`)
	count := func(re *regexp.Regexp) int {
		n := 0
		for _, l := range g.paniclog() {
			if re.MatchString(l) {
				n++
			}
		}
		return n
	}
	// The startup queue run reads every message: no command needed.
	waitFor(t, drainTimeout, func() string {
		if count(corruptLine) == 0 {
			return "the paniclog line of the corrupt -H"
		}
		return ""
	})
	for _, f := range []string{"-H", "-D"} {
		if _, err := os.Stat(filepath.Join(corruptDir, corrupt+f)); err != nil {
			t.Errorf("corrupt message's %s not set aside: %v", f, err)
		}
		if _, err := os.Stat(input(corrupt, f)); !os.IsNotExist(err) {
			t.Errorf("corrupt message's %s still in input/: %v", f, err)
		}
	}
	if got := strings.TrimSpace(g.mustCLI("-bpc")); got != "2" {
		t.Errorf("-bpc = %q, want 2 (the corrupt message not counted)", got)
	}

	g.mustCLI("-qf")
	g.requireLog(intact, `=> defer-c@example\.test `)
	g.requireLog(truncated, regexp.QuoteMeta("Frozen (spool data file truncated: 100 bytes, -H says "+strconv.FormatInt(bodySize, 10)+")")+"$")
	g.mustCLI("-qf")
	g.mustCLI("-qff")
	g.mustCLI("-qff")
	if n := count(corruptLine); n != 1 {
		t.Errorf("%d paniclog lines for the corrupt -H, want 1:\n%s", n, strings.Join(g.paniclog(), "\n"))
	}
	// Found at the first -qf and at each -qff's thaw; not at the -qf
	// between, which leaves a frozen message alone.
	if n := count(truncLine); n != 3 {
		t.Errorf("%d paniclog lines for the truncated -D, want 3:\n%s", n, strings.Join(g.paniclog(), "\n"))
	}
	for _, m := range ds.messages() {
		if slices.Contains(m.rcpts, "defer-b@example.test") || slices.Contains(m.rcpts, "defer-a@example.test") {
			t.Errorf("downstream got a message for %v", m.rcpts)
		}
	}
	if got := strings.TrimSpace(g.mustCLI("-bpc")); got != "1" {
		t.Errorf("-bpc = %q, want 1 (the frozen truncated message)", got)
	}
	bp := g.cli("-bp")
	if bp.code != 0 || !strings.Contains(bp.stdout, truncated+" <b@example.test> *** frozen ***") || strings.Contains(bp.stdout, corrupt) {
		t.Errorf("-bp: %+v", bp)
	}
	if want := "mxgate: 1 message with a corrupt -H file is set aside in " + corruptDir + " (see paniclog)\n"; bp.stderr != want {
		t.Errorf("-bp stderr %q, want %q", bp.stderr, want)
	}
}

// TestSpoolSpaceReserve: the daemon and local submission ask the real
// filesystem of the spool for the configured reserve (here more than any
// disk has): MAIL is answered 452 4.3.1 at once, sendmail refuses with a
// clear error, both leave a rejectlog line, and nothing is queued.
func TestSpoolSpaceReserve(t *testing.T) {
	ds := startScripted(t)
	g := startMxgateConfig(t, filepath.Join("testdata", "spoolspace.toml.tmpl"), ds.URL())
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	if r := c.expect(t, "MAIL FROM:<a@example.test> SIZE=1000", 452); r.Text() != "4.3.1 Insufficient system storage" {
		t.Errorf("MAIL: %s", r)
	}
	c.expect(t, "QUIT", 221)

	sub := runWith(t, func(cmd *exec.Cmd) { cmd.Stdin = strings.NewReader("Subject: hi\n\nhi\n") },
		binary, "-config", g.cfgPath, "-bm", "u@example.test")
	const reserve = "check_space = 1048576000000K inodes = 0 msg_size = "
	if sub.code != 1 || !strings.HasPrefix(sub.stderr, "mxgate: insufficient disk space (spool directory space = ") ||
		!strings.HasSuffix(sub.stderr, reserve+"0): message not queued\n") {
		t.Errorf("-bm: %+v", sub)
	}
	rej, err := os.ReadFile(filepath.Join(g.dataDir, "log", "rejectlog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\S+ \S+ H=(?:\S+ )?\(client\.test\) \[127\.0\.0\.1\] temporarily rejected MAIL <a@example\.test>: spool directory space = \d+K inodes = \d+ ` + regexp.QuoteMeta(reserve) + `1000$`),
		regexp.MustCompile(`(?m)^\S+ \S+ U=\S+ temporarily rejected local message: insufficient disk space \(spool directory space = \d+K inodes = \d+ ` + regexp.QuoteMeta(reserve) + `0\): message not queued$`),
	} {
		if !re.Match(rej) {
			t.Errorf("rejectlog has no line matching %s:\n%s", re, rej)
		}
	}
	if got := strings.TrimSpace(g.mustCLI("-bpc")); got != "0" {
		t.Errorf("-bpc = %q, want 0", got)
	}
}
