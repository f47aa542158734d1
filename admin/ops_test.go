package admin

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxgate/spool"
)

// mainlogLines returns the mainlog's lines without their timestamps.
func mainlogLines(t testing.TB, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log", "mainlog"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		lines = append(lines, strings.TrimSuffix(l[len("2006-01-02 15:04:05 "):], "\n"))
	}
	return lines
}

func TestFreezeThaw(t *testing.T) {
	q, dir := newQueue(t)
	id := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	steps := []struct {
		op      func(string) (string, error)
		want    string
		refusal string
		frozen  bool
	}{
		{q.Thaw, "", "Message " + string(id) + " is not frozen", false},
		{q.Freeze, "Message " + string(id) + " is now frozen", "", true},
		{q.Freeze, "", "Message " + string(id) + " is already frozen", true},
		{q.Thaw, "Message " + string(id) + " is no longer frozen", "", false},
	}
	for i, s := range steps {
		got, err := s.op(string(id))
		var ref *Refusal
		switch {
		case s.refusal != "":
			if !errors.As(err, &ref) || ref.Error() != s.refusal {
				t.Errorf("step %d: got %q, %v; want refusal %q", i, got, err, s.refusal)
			}
		case err != nil || got != s.want:
			t.Errorf("step %d: got %q, %v; want %q", i, got, err, s.want)
		}
		env, err := q.Spool.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		if frozen := !env.Frozen.IsZero(); frozen != s.frozen {
			t.Errorf("step %d: frozen on disk = %v, want %v", i, frozen, s.frozen)
		}
	}
	env, _ := q.Spool.Load(id)
	if !env.ManualThaw || !env.Frozen.IsZero() {
		t.Errorf("after thaw: ManualThaw %v, Frozen %v; want true, zero", env.ManualThaw, env.Frozen)
	}
	want := []string{string(id) + " frozen by admin", string(id) + " unfrozen by admin"}
	if got := mainlogLines(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mainlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFreezeRecordsTime(t *testing.T) {
	q, _ := newQueue(t)
	id := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	if _, err := q.Freeze(string(id)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := q.View(&out, string(id), spool.HeaderFile); err != nil {
		t.Fatal(err)
	}
	if want := "\n-frozen " + strconv.FormatInt(now.Unix(), 10) + "\n"; !strings.Contains(out.String(), want) {
		t.Errorf("-H after freeze lacks %q:\n%s", want, out.String())
	}
}

func TestRemove(t *testing.T) {
	q, dir := newQueue(t)
	id := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	keep := add(t, q, "alice@example.test", time.Minute, "body\n", "carol@example.test")
	got, err := q.Remove(string(id))
	if want := "Message " + string(id) + " has been removed"; err != nil || got != want {
		t.Fatalf("Remove = %q, %v; want %q", got, err, want)
	}
	for _, p := range []string{q.path(id, "-H"), q.path(id, "-D"), q.Spool.MsglogPath(id)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after -Mrm (%v)", p, err)
		}
	}
	if _, err := q.Spool.Load(keep); err != nil {
		t.Errorf("the other message: %v", err)
	}
	if _, err := q.Remove(string(id)); !errors.Is(err, spool.ErrNotFound) || !strings.Contains(err.Error(), string(id)) {
		t.Errorf("second Remove: %v; want a not-found error naming %s", err, id)
	}
	want := []string{string(id) + " removed by admin", string(id) + " Completed"}
	if got := mainlogLines(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mainlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRemoveHeaderWithoutData(t *testing.T) {
	q, _ := newQueue(t)
	id := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	if err := os.Remove(q.path(id, "-D")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Freeze(string(id)); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("Freeze of a message without -D: %v; want not found", err)
	}
	if got, err := q.Remove(string(id)); err != nil || !strings.HasSuffix(got, "has been removed") {
		t.Fatalf("Remove = %q, %v", got, err)
	}
	if _, err := os.Stat(q.path(id, "-H")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-H still there: %v", err)
	}
}

// A message another process is handling is refused at once, and left as
// it was.
func TestLockedMessage(t *testing.T) {
	q, dir := newQueue(t)
	id := add(t, q, "alice@example.test", time.Minute, "body\n", "bob@example.test")
	unlock, err := q.Spool.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	before, _ := os.ReadFile(q.path(id, "-H"))
	for name, op := range map[string]func(string) (string, error){"Remove": q.Remove, "Freeze": q.Freeze, "Thaw": q.Thaw} {
		got, err := op(string(id))
		var ref *Refusal
		if !errors.As(err, &ref) || ref.Error() != "Message "+string(id)+" is locked" {
			t.Errorf("%s of a locked message = %q, %v; want refusal \"Message %s is locked\"", name, got, err, id)
		}
	}
	if _, err := q.MakeDue(string(id)); !errors.As(err, new(*Refusal)) {
		t.Errorf("MakeDue of a locked message: %v; want a refusal", err)
	}
	after, _ := os.ReadFile(q.path(id, "-H"))
	if !bytes.Equal(before, after) {
		t.Error("-H changed while locked")
	}
	if lines := mainlogLines(t, dir); len(lines) != 0 {
		t.Errorf("mainlog lines for refused operations: %q", lines)
	}
}

func TestMakeDue(t *testing.T) {
	q, dir := newQueue(t)
	frozen := add(t, q, "alice@example.test", time.Hour, "body\n", "bob@example.test")
	waiting := add(t, q, "alice@example.test", time.Hour, "body\n", "carol@example.test")
	later := now.Add(time.Hour)
	change(t, q, frozen, func(e *spool.Envelope) { e.Frozen, e.NextTry = now, later })
	change(t, q, waiting, func(e *spool.Envelope) { e.NextTry = later })
	for _, id := range []spool.ID{frozen, waiting} {
		got, err := q.MakeDue(string(id))
		if err != nil || got != id {
			t.Fatalf("MakeDue(%s) = %q, %v", id, got, err)
		}
		env, err := q.Spool.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		if !env.Frozen.IsZero() || !env.NextTry.IsZero() {
			t.Errorf("%s after MakeDue: frozen %v, next try %v; want both zero", id, env.Frozen, env.NextTry)
		}
	}
	want := []string{string(frozen) + " Unfrozen by forced delivery"}
	if got := mainlogLines(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mainlog: %q, want %q", got, want)
	}
	msglog, _ := os.ReadFile(q.Spool.MsglogPath(frozen))
	if !strings.HasSuffix(string(msglog), " Unfrozen by forced delivery\n") {
		t.Errorf("msglog does not end with the thaw: %q", msglog)
	}
}

func TestView(t *testing.T) {
	q, _ := newQueue(t)
	id := add(t, q, "alice@example.test", time.Minute, "line one\n.dot stays\n", "bob@example.test")
	if err := q.Spool.Msglog(id, "Received from alice@example.test"); err != nil {
		t.Fatal(err)
	}
	hfile, _ := os.ReadFile(q.path(id, "-H"))
	msglog, _ := os.ReadFile(q.Spool.MsglogPath(id))
	for _, c := range []struct {
		which spool.File
		want  string
	}{
		{spool.HeaderFile, string(hfile)},
		{spool.DataFile, string(id) + "-D\nline one\n.dot stays\n"},
		{spool.MsglogFile, string(msglog)},
	} {
		var out bytes.Buffer
		if err := q.View(&out, string(id), c.which); err != nil || out.String() != c.want {
			t.Errorf("View(%d) = %q, %v; want %q", c.which, out.String(), err, c.want)
		}
	}
	if !strings.HasPrefix(string(hfile), string(id)+"-H\n") || !strings.HasSuffix(string(msglog), " Received from alice@example.test\n") {
		t.Errorf("unexpected spool files: -H %q, msglog %q", hfile, msglog)
	}

	absent := "1tXyZa-000AbC-Qr"
	for _, which := range []spool.File{spool.HeaderFile, spool.DataFile, spool.MsglogFile} {
		var out bytes.Buffer
		err := q.View(&out, absent, which)
		if !errors.Is(err, spool.ErrNotFound) || !strings.Contains(err.Error(), absent) || out.Len() != 0 {
			t.Errorf("View(%d) of an absent message: %q, %v", which, out.String(), err)
		}
	}
	// A message without its msglog: the error names the missing file.
	if err := os.Remove(q.Spool.MsglogPath(id)); err != nil {
		t.Fatal(err)
	}
	if err := q.View(new(bytes.Buffer), string(id), spool.MsglogFile); err == nil || !strings.Contains(err.Error(), q.Spool.MsglogPath(id)) {
		t.Errorf("View of a missing msglog: %v; want an error naming the file", err)
	}
}

// Arguments that are not IDs never reach the filesystem: a file outside
// the spool that a path-like argument names is neither read nor touched.
func TestPathLikeArguments(t *testing.T) {
	q, dir := newQueue(t)
	secret := filepath.Join(dir, "secret-H")
	content := "1tXyZa-000AbC-Qr-H\nnot for you\n"
	for _, p := range []string{secret, filepath.Join(dir, "secret-D"), filepath.Join(dir, "secret")} {
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{
		"../../secret",       // input/X/../../secret-H is dir/spool/secret-H: still outside input
		"../../../secret",    // reaches dir/secret-H from input/X
		"../../../../secret", // from input/X/../../..: the temp dir's parent
		secret,               // an absolute path
		strings.TrimSuffix(secret, "-H"),
		"1tXyZa/../../../secret"[:16], // 16 characters, the length of an ID
		"1tXyZa-000AbC-Q/",
		"1tXyZa-000AbC-Qr\n",
		"",
	}
	ops := map[string]func(string) error{
		"List":   func(a string) error { return q.ListMessage(new(bytes.Buffer), a, false) },
		"View-H": func(a string) error { return q.View(new(bytes.Buffer), a, spool.HeaderFile) },
		"View-D": func(a string) error { return q.View(new(bytes.Buffer), a, spool.DataFile) },
		"Msglog": func(a string) error { return q.View(new(bytes.Buffer), a, spool.MsglogFile) },
		"Remove": func(a string) error { _, err := q.Remove(a); return err },
		"Freeze": func(a string) error { _, err := q.Freeze(a); return err },
		"Thaw":   func(a string) error { _, err := q.Thaw(a); return err },
		"Due":    func(a string) error { _, err := q.MakeDue(a); return err },
	}
	for name, op := range ops {
		for _, a := range args {
			if err := op(a); !errors.Is(err, ErrInvalidID) {
				t.Errorf("%s(%q) = %v; want ErrInvalidID", name, a, err)
			}
		}
	}
	for _, p := range []string{secret, filepath.Join(dir, "secret-D"), filepath.Join(dir, "secret")} {
		if b, err := os.ReadFile(p); err != nil || string(b) != content {
			t.Errorf("%s changed: %q, %v", p, b, err)
		}
	}
}
