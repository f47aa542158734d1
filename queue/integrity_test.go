package queue

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mxgate/spool"
)

// paniclog returns the paniclog's lines without their timestamps.
func (e *env) paniclog() []string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "log", "paniclog"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for l := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l != "" {
			out = append(out, l[20:])
		}
	}
	return out
}

// A -D file shorter than its -H records is frozen before any transport
// sees it, with a paniclog line, and stays so through a thaw.
func TestTruncatedDataFrozen(t *testing.T) {
	tr := &fakeTransport{}
	e := newEnv(t, tr, Options{})
	e.submit([]string{"bob@down.test"}, nil) // body "Hello.\n": 7 bytes
	short := e.submit([]string{"carol@down.test"}, nil)
	x := string(short[5])
	if err := os.Truncate(filepath.Join(e.dir, "spool", "input", x, string(short)+"-D"), int64(len(short)+3+3)); err != nil {
		t.Fatal(err)
	}
	e.newLines()

	for _, thaw := range []bool{false, true} {
		e.restart()
		e.r.RunOnce(context.Background(), true, thaw)
		lines := e.newLines()
		for _, l := range lines {
			if strings.Contains(l, "carol@down.test") {
				t.Errorf("truncated message delivered: %q", l)
			}
		}
		if frozen := string(short) + " Frozen (spool data file truncated: 3 bytes, -H says 7)"; !slices.Contains(lines, frozen) {
			t.Errorf("mainlog %q lacks %q", lines, frozen)
		}
		if ev := e.load(short); ev.Frozen.IsZero() {
			t.Errorf("truncated message not frozen (thaw %v)", thaw)
		}
	}
	if got := tr.Calls(); !slices.Equal(got[0], []string{"bob@down.test"}) || len(got) != 1 {
		t.Errorf("transport calls %q, want only bob's message", got)
	}
	// Found twice: at the first run, and again after -qff thawed it.
	want := string(short) + " spool data file truncated: 3 bytes, -H says 7"
	if got := e.paniclog(); len(got) != 2 || got[0] != want || got[1] != want {
		t.Errorf("paniclog %q, want twice %q", got, want)
	}
	if b, err := os.ReadFile(e.sp.MsglogPath(short)); err != nil || !strings.HasSuffix(string(b), "\n*** Frozen (spool data file truncated: 3 bytes, -H says 7)\n") {
		t.Errorf("msglog %q, %v", b, err)
	}
}

// A corrupt -H is set aside by the first queue run that reads it and
// reported once, whatever the number of runs.
func TestCorruptHeaderSetAsideOnce(t *testing.T) {
	tr := &fakeTransport{}
	e := newEnv(t, tr, Options{})
	bad := e.submit([]string{"bob@down.test"}, nil)
	x := string(bad[5])
	hpath := filepath.Join(e.dir, "spool", "input", x, string(bad)+"-H")
	if err := os.WriteFile(hpath, []byte(string(bad)+"-H\nmxgate 0 0\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.restart()
		e.r.RunOnce(context.Background(), true, true)
	}
	want := string(bad) + " spool format error in " + hpath + ": line 3: file ends where the sender line was expected; set aside in " +
		filepath.Join(e.dir, "spool", "corrupt") + "/"
	if got := e.paniclog(); len(got) != 1 || got[0] != want {
		t.Errorf("paniclog %q,\nwant %q", got, want)
	}
	if got := e.spoolFiles(bad); len(got) != 0 {
		t.Errorf("still in the queue: %q", got)
	}
	if ids, err := e.sp.Corrupt(); err != nil || !slices.Equal(ids, []spool.ID{bad}) {
		t.Errorf("Corrupt = %v, %v", ids, err)
	}
	if len(tr.Calls()) != 0 {
		t.Errorf("transport called %q", tr.Calls())
	}
}
