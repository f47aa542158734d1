package admin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A message whose -H does not parse is set aside by the first listing,
// reported once in the paniclog, and then neither listed nor counted; the
// note says where it went.
func TestListSetsAsideCorrupt(t *testing.T) {
	q, dir := newQueue(t)
	good := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	bad := add(t, q, "carol@example.test", time.Minute, "body\n", "dave@example.test")
	if err := os.WriteFile(q.path(bad, "-H"), []byte(string(bad)+"-H\nmxgate 0 0\n<carol@example.test>\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if n, err := q.Count(); err != nil || n != 2 {
		t.Fatalf("Count before any listing = %d, %v; want 2", n, err)
	}
	if note, err := q.CorruptNote(); note != "" || err != nil {
		t.Errorf("CorruptNote before = %q, %v; want none", note, err)
	}
	for range 2 {
		var out bytes.Buffer
		if err := q.List(&out, false); err != nil {
			t.Fatal(err)
		}
		if want := " 1m    46 " + string(good) + " <alice@example.test>\n          bob@example.test\n\n"; out.String() != want {
			t.Errorf("listing:\n%s\nwant:\n%s", out.String(), want)
		}
	}
	if n, err := q.Count(); err != nil || n != 1 {
		t.Errorf("Count = %d, %v; want 1", n, err)
	}
	corrupt := filepath.Join(dir, "spool", "corrupt")
	wantNote := "1 message with a corrupt -H file is set aside in " + corrupt + " (see paniclog)"
	if note, err := q.CorruptNote(); note != wantNote || err != nil {
		t.Errorf("CorruptNote = %q, %v; want %q", note, err, wantNote)
	}
	panics, err := os.ReadFile(filepath.Join(dir, "log", "paniclog"))
	if err != nil {
		t.Fatal(err)
	}
	want := string(bad) + " spool format error in " + q.path(bad, "-H") + ": line 4: file ends where the received time line was expected; set aside in " + corrupt + "/\n"
	if lines := strings.Split(strings.TrimSuffix(string(panics), "\n"), "\n"); len(lines) != 1 || lines[0][20:]+"\n" != want {
		t.Errorf("paniclog:\n%s\nwant once:\n%s", panics, want)
	}
	for _, f := range []string{"-H", "-D"} {
		if _, err := os.Stat(filepath.Join(corrupt, string(bad)+f)); err != nil {
			t.Errorf("%s not set aside: %v", f, err)
		}
	}
	// An operation on one nobody has read yet sets it aside and says why.
	bad2 := add(t, q, "carol@example.test", time.Minute, "body\n", "erin@example.test")
	if err := os.WriteFile(q.path(bad2, "-H"), []byte("junk\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = q.Freeze(string(bad2))
	if want := "message " + string(bad2) + " is not in the spool: spool format error in " + q.path(bad2, "-H") +
		`: line 1: "junk" is not a message id followed by -H; set aside in ` + corrupt + "/"; err == nil || err.Error() != want {
		t.Errorf("Freeze: %v\nwant %s", err, want)
	}
	if note, _ := q.CorruptNote(); !strings.HasPrefix(note, "2 messages with a corrupt -H file are set aside in ") {
		t.Errorf("CorruptNote = %q", note)
	}
}
