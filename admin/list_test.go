package admin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/mainlog"
	"mxgate/spool"
)

// now is the pinned clock of every test queue.
var now = time.Date(2024, 5, 1, 12, 0, 0, 0, time.Local)

// headers are 40 bytes as sent; the deleted one does not count.
var headers = []spool.Header{
	{Type: ' ', Text: "Subject: hello\n"},
	{Type: '*', Text: "X-Old: removed\n"},
	{Type: 'F', Text: "From: alice@example.test\n"},
}

// newQueue makes a Queue on a fresh spool, logging to dir/log/mainlog.
func newQueue(t testing.TB) (*Queue, string) {
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
	q := &Queue{Spool: sp, Log: log, User: "admin", Now: func() time.Time { return now }}
	spoolDirs.Store(q, filepath.Join(dir, "spool"))
	return q, dir
}

// spoolDirs is where each test Queue's spool lives: the tests break its
// files by hand, which the package itself never does.
var spoolDirs sync.Map

// path is the spool file of a valid id: suffix "-H", "-D" or "-J".
func (q *Queue) path(id spool.ID, suffix string) string {
	dir, _ := spoolDirs.Load(q)
	return filepath.Join(dir.(string), "input", string(id[5]), string(id)+suffix)
}

// add commits a message received age before now.
func add(t testing.TB, q *Queue, sender string, age time.Duration, body string, rcpts ...string) spool.ID {
	t.Helper()
	w, err := q.Spool.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	env := &spool.Envelope{Sender: sender, Recipients: rcpts, Received: now.Add(-age), Headers: headers, DeliverFirstTime: true}
	if err := w.Commit(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// change rewrites a message's -H under its lock, as a delivery does.
func change(t testing.TB, q *Queue, id spool.ID, f func(*spool.Envelope)) {
	t.Helper()
	unlock, err := q.Spool.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	env, err := q.Spool.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	f(env)
	if err := q.Spool.Update(env); err != nil {
		t.Fatal(err)
	}
}

// mixedQueue holds messages in every state the listing shows, in arrival
// order: a deferred one with a recipient done (journal only), a frozen
// bounce, an old one with recipients done in its -H, one whose -H is
// garbage and one whose -H cannot be read.
func mixedQueue(t testing.TB) (*Queue, []spool.ID) {
	q, _ := newQueue(t)
	// 40 header bytes + blank line + 2928 = 2969 bytes: " 2.9K".
	body1 := strings.Repeat(strings.Repeat("x", 99)+"\n", 29) + strings.Repeat("y", 27) + "\n"
	id1 := add(t, q, "alice@example.test", 25*time.Minute+40*time.Second, body1, "bob@example.test", "carol@example.test")
	if err := q.Spool.Journal(id1, "carol@example.test"); err != nil {
		t.Fatal(err)
	}
	id2 := add(t, q, "", 3*time.Hour+10*time.Minute, "bounce\n", "alice@example.test")
	change(t, q, id2, func(e *spool.Envelope) { e.Frozen = now.Add(-time.Hour) })
	id3 := add(t, q, "bob@example.test", 5*24*time.Hour, strings.Repeat("z", 20000), "x1@example.test", "x2@example.test", "x3@example.test")
	change(t, q, id3, func(e *spool.Envelope) { e.Done = []string{"x3@example.test", "x1@example.test"} })
	id4 := add(t, q, "carol@example.test", time.Minute, "body\n", "dave@example.test")
	if err := os.WriteFile(q.path(id4, "-H"), []byte("garbage\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	id5 := add(t, q, "carol@example.test", time.Minute, "body\n", "erin@example.test")
	if err := os.Remove(q.path(id5, "-H")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(q.path(id5, "-H"), 0o750); err != nil {
		t.Fatal(err)
	}
	return q, []spool.ID{id1, id2, id3, id4, id5}
}

func TestList(t *testing.T) {
	q, ids := mixedQueue(t)
	r := strings.NewReplacer("ID1", string(ids[0]), "ID2", string(ids[1]), "ID3", string(ids[2]), "ID4", string(ids[3]), "ID5", string(ids[4]))
	for _, c := range []struct {
		name        string
		undelivered bool
		want        string
	}{
		{"-bp", false, `25m  2.9K ID1 <alice@example.test>
          bob@example.test
        D carol@example.test

 3h    48 ID2 <> *** frozen ***
          alice@example.test

 5d   20K ID3 <bob@example.test>
        D x1@example.test
          x2@example.test
        D x3@example.test

      ID5
    *** spool read error: Is a directory ***

`},
		{"-bpu", true, `25m  2.9K ID1 <alice@example.test>
          bob@example.test

 3h    48 ID2 <> *** frozen ***
          alice@example.test

 5d   20K ID3 <bob@example.test>
          x2@example.test

      ID5
    *** spool read error: Is a directory ***

`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := q.List(&out, c.undelivered); err != nil {
				t.Fatal(err)
			}
			if want := r.Replace(c.want); out.String() != want {
				t.Errorf("listing:\n%s\nwant:\n%s", out.String(), want)
			}
		})
	}
	// ID4, set aside by the first listing, is not counted.
	n, err := q.Count()
	if err != nil || n != 4 {
		t.Errorf("Count = %d, %v; want 4", n, err)
	}
}

func TestListEmpty(t *testing.T) {
	q, _ := newQueue(t)
	var out bytes.Buffer
	if err := q.List(&out, false); err != nil || out.Len() != 0 {
		t.Errorf("empty queue: List wrote %q, %v; want nothing", out.String(), err)
	}
	if n, err := q.Count(); n != 0 || err != nil {
		t.Errorf("Count = %d, %v; want 0", n, err)
	}
}

func TestListMessage(t *testing.T) {
	q, ids := mixedQueue(t)
	absent := spool.ID("1tXyZa-000AbC-Qr")
	for _, c := range []struct {
		arg     string
		want    string
		wantErr error
	}{
		{string(ids[1]), " 3h    48 " + string(ids[1]) + " <> *** frozen ***\n          alice@example.test\n\n", nil},
		{string(ids[3]), "", spool.ErrCorrupt},
		{string(ids[3]), "", spool.ErrNotFound}, // set aside the first time
		{string(absent), "", spool.ErrNotFound},
		{"../etc/passwd", "", ErrInvalidID},
		{"abc", "", ErrInvalidID},
	} {
		var out bytes.Buffer
		err := q.ListMessage(&out, c.arg, false)
		if !errors.Is(err, c.wantErr) || out.String() != c.want {
			t.Errorf("ListMessage(%q) wrote %q, %v; want %q, %v", c.arg, out.String(), err, c.want, c.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), c.arg) {
			t.Errorf("error %q does not name %q", err, c.arg)
		}
	}
}

// A listing longer than the workers' chunks comes out whole and in
// arrival order; a failing writer stops it with the writer's error.
func TestListManyMessages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	const n = 5*listChunk + 7
	buildSpool(t, dir, n)
	sp, err := spool.Open(dir, spool.Options{Sync: spool.SyncFdatasync})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	q := &Queue{Spool: sp, Log: mainlog.Discard(), Now: func() time.Time { return now }}
	ids, err := sp.List()
	if err != nil || len(ids) != n {
		t.Fatalf("spool.List: %d ids, %v", len(ids), err)
	}
	var out bytes.Buffer
	if err := q.List(&out, false); err != nil {
		t.Fatal(err)
	}
	entries := strings.Split(strings.TrimSuffix(out.String(), "\n\n"), "\n\n")
	if len(entries) != n {
		t.Fatalf("%d entries, want %d", len(entries), n)
	}
	for i, e := range entries {
		if f := strings.Fields(e); len(f) < 3 || f[2] != string(ids[i]) {
			t.Fatalf("entry %d is %q, want message %s", i, e, ids[i])
		}
	}

	w := &failingWriter{ok: 2}
	if err := q.List(w, false); !errors.Is(err, errWrite) {
		t.Errorf("List to a failing writer: %v, want %v", err, errWrite)
	}
	if w.calls != 3 {
		t.Errorf("List wrote %d times to a writer failing on the 3rd, want 3", w.calls)
	}
}

var errWrite = errors.New("disk full")

type failingWriter struct{ ok, calls int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls > w.ok {
		return 0, errWrite
	}
	return len(p), nil
}
