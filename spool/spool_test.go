package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testSyncEnv names the sync policy the package's tests run under; unset,
// they run under SyncFdatasync, and TestOtherSyncPolicy runs them all
// again under SyncFS.
const testSyncEnv = "MXGATE_SPOOL_TEST_SYNC"

func testOptions() Options {
	if p := os.Getenv(testSyncEnv); p != "" {
		return Options{Sync: SyncPolicy(p)}
	}
	return Options{Sync: SyncFdatasync}
}

func openSpool(t testing.TB) (*Spool, string) {
	t.Helper()
	return openSpoolWith(t, testOptions())
}

func openSpoolWith(t testing.TB, o Options) (*Spool, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// TestOtherSyncPolicy runs every test of the package again, in a child
// process, under SyncFS: both policies pass the same tests.
func TestOtherSyncPolicy(t *testing.T) {
	if os.Getenv(testSyncEnv) != "" {
		t.Skip("already the child run")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^Test", "-test.count=1")
	cmd.Env = append(os.Environ(), testSyncEnv+"="+string(SyncFS))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests under %s: %v\n%s", SyncFS, err, out)
	}
}

func TestOpenRefusesUnknownPolicy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	for _, p := range []SyncPolicy{"", "fsync"} {
		if _, err := Open(dir, Options{Sync: p}); err == nil || !strings.Contains(err.Error(), "unknown sync policy") {
			t.Errorf("Open with sync policy %q: %v, want unknown sync policy", p, err)
		}
	}
}

func testEnvelope() *Envelope {
	return &Envelope{
		Sender:           "alice@example.test",
		Recipients:       []string{"bob@example.test", "carol@example.test", "dave@example.test"},
		Received:         time.Unix(1714557607, 78082000),
		HeloName:         "mx.example.net",
		HostAddress:      "192.0.2.1:58241",
		ReceivedProtocol: "esmtp",
		DeliverFirstTime: true,
		Headers: []Header{
			{'P', "Received: from mx.example.net ([192.0.2.1])\n\tby mx.example.test; Wed, 01 May 2024 10:00:07 +0000\n"},
			{' ', "Subject: hello\n"},
			{'*', "X-Old: removed\n"},
			{'F', "From: alice@example.test\n"},
		},
	}
}

const testBody = "line one\n.leading dot stays\n\nlast line\n"

func commit(t testing.TB, s *Spool, env *Envelope, body string) ID {
	t.Helper()
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	// Several writes, as a DATA stream arrives.
	for chunk := range strings.SplitAfterSeq(body, "\n") {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// files lists every file under dir, relative, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func readAll(t testing.TB, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenCreatesSplitDirs(t *testing.T) {
	_, dir := openSpool(t)
	for _, top := range []string{"input", "msglog"} {
		entries, err := os.ReadDir(filepath.Join(dir, top))
		if err != nil {
			t.Fatal(err)
		}
		var names string
		for _, e := range entries {
			if !e.IsDir() {
				t.Errorf("%s/%s is not a directory", top, e.Name())
			}
			names += e.Name()
		}
		if names != base62 {
			t.Errorf("%s has subdirectories %q, want one per base62 digit", top, names)
		}
	}
}

func TestCommitLoadRoundTrip(t *testing.T) {
	s, dir := openSpool(t)
	env := testEnvelope()
	id := commit(t, s, env, testBody)

	if env.ID != id || env.BodyLinecount != 4 {
		t.Errorf("Commit set ID %q and BodyLinecount %d, want %q and 4", env.ID, env.BodyLinecount, id)
	}
	x := string(id[5])
	wantFiles := []string{filepath.Join("input", x, string(id)+"-D"), filepath.Join("input", x, string(id)+"-H")}
	if got := files(t, dir); !slices.Equal(got, wantFiles) {
		t.Errorf("spool files = %q, want %q", got, wantFiles)
	}
	data, err := os.ReadFile(filepath.Join(dir, wantFiles[0]))
	if err != nil {
		t.Fatal(err)
	}
	if want := string(id) + "-D\n" + testBody; string(data) != want {
		t.Errorf("-D file = %q, want %q", data, want)
	}
	hdr, err := os.ReadFile(filepath.Join(dir, wantFiles[1]))
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteHeaderFile(&want, env); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hdr, want.Bytes()) {
		t.Errorf("-H file:\n%s\nwant:\n%s", hdr, want.Bytes())
	}
	if !strings.HasPrefix(string(hdr), string(id)+"-H\nmxgate ") || !strings.Contains(string(hdr), "\n-body_linecount 4\n-body_size 39\n-deliver_firsttime\nXX\n3\n") {
		t.Errorf("-H file lacks Exim's shape:\n%s", hdr)
	}

	got, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, env) {
		t.Errorf("Load:\n got %+v\nwant %+v", got, env)
	}

	wantMsg := "Received: from mx.example.net ([192.0.2.1])\n\tby mx.example.test; Wed, 01 May 2024 10:00:07 +0000\n" +
		"Subject: hello\nFrom: alice@example.test\n\n" + testBody
	for name, open := range map[string]func() (io.ReadCloser, int64, error){
		"OpenMessage":  func() (io.ReadCloser, int64, error) { return s.OpenMessage(id) },
		"OpenEnvelope": func() (io.ReadCloser, int64, error) { return s.OpenEnvelope(got) },
	} {
		rc, size, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if msg := readAll(t, rc); msg != wantMsg {
			t.Errorf("%s = %q, want %q", name, msg, wantMsg)
		}
		if size != int64(len(wantMsg)) {
			t.Errorf("%s size = %d, want %d", name, size, len(wantMsg))
		}
	}
	body, err := s.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, body); b != testBody {
		t.Errorf("OpenBody = %q, want %q", b, testBody)
	}

	// The writer has released its lock.
	unlock, err := s.Lock(id)
	if err != nil {
		t.Fatalf("Lock after Commit: %v", err)
	}
	unlock()
}

func TestCommitFailureLeavesNothing(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		modify func(*Envelope)
		want   string
	}{
		{"cancelled context", cancelled, func(*Envelope) {}, "context canceled"},
		{"newline in recipient", context.Background(), func(e *Envelope) { e.Recipients = append(e.Recipients, "x@y\n-frozen 1") }, "line break"},
		{"bad header", context.Background(), func(e *Envelope) { e.Headers[0].Text = "no newline" }, "newline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := openSpool(t)
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte(testBody)); err != nil {
				t.Fatal(err)
			}
			env := testEnvelope()
			tc.modify(env)
			err = w.Commit(tc.ctx, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Commit error = %v, want one mentioning %q", err, tc.want)
			}
			if got := files(t, dir); len(got) != 0 {
				t.Errorf("files left after failed commit: %q", got)
			}
			if err := w.Abort(); err != nil {
				t.Errorf("Abort after failed Commit: %v", err)
			}
			if _, err := w.Write([]byte("x")); err == nil {
				t.Error("Write after failed Commit succeeded")
			}
		})
	}
}

func TestCommitCancelledDuringDirectorySync(t *testing.T) {
	s, dir := openSpool(t)
	entered, gate := make(chan string, 1), make(chan struct{})
	s.fsync = func(d string) error {
		if d == wholeFS {
			return nil // the data sync passes; the directory sync hangs
		}
		entered <- d
		<-gate
		return nil
	}
	defer close(gate)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- w.Commit(ctx, testEnvelope()) }()
	if d := <-entered; d != filepath.Join(dir, "input", string(w.ID()[5])) {
		t.Errorf("directory synced: %s", d)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit = %v, want context.Canceled", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("a commit that returned an error left %q", got)
	}
}

// TestGroupCommitBatches checks the batching rule itself: each distinct
// directory of a batch is synced once, and every waiter gets its own
// directory's result.
func TestGroupCommitBatches(t *testing.T) {
	s, _ := openSpool(t)
	var (
		mu     sync.Mutex
		synced []string
	)
	s.fsync = func(d string) error {
		mu.Lock()
		synced = append(synced, d)
		mu.Unlock()
		if d == "bad" {
			return errors.New("EIO")
		}
		return nil
	}
	dirs := []string{"a", "b", "a", "bad", "a", "b", "a"}
	batch := make([]syncRequest, len(dirs))
	for i, d := range dirs {
		batch[i] = syncRequest{dir: d, done: make(chan error, 1)}
	}
	s.syncBatch(batch)
	slices.Sort(synced) // synced at once, in any order
	if !slices.Equal(synced, []string{"a", "b", "bad"}) {
		t.Errorf("directory syncs = %q, want a, b and bad once each", synced)
	}
	for i, d := range dirs {
		if err := <-batch[i].done; (d == "bad") != (err != nil) {
			t.Errorf("waiter for %s got error %v", d, err)
		}
	}
}

// TestGroupCommitConcurrent: many concurrent commits to one directory all
// complete, with fewer directory syncs than commits whenever they overlap.
func TestGroupCommitConcurrent(t *testing.T) {
	s, _ := openSpool(t)
	var mu sync.Mutex
	syncs := 0
	s.fsync = func(string) error {
		mu.Lock()
		syncs++
		mu.Unlock()
		time.Sleep(time.Millisecond) // an fsync takes time; others queue up meanwhile
		return nil
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.syncDir(context.Background(), "a")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if syncs < 1 || syncs > n {
		t.Errorf("%d directory syncs for %d commits", syncs, n)
	}
	t.Logf("%d directory syncs for %d concurrent commits", syncs, n)
}

func TestSyncAfterClose(t *testing.T) {
	s, _ := openSpool(t)
	s.Close()
	if err := s.syncDir(context.Background(), "x"); !errors.Is(err, errClosed) {
		t.Errorf("syncDir after Close = %v", err)
	}
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background(), testEnvelope()); err == nil {
		t.Error("Commit after Close succeeded")
	}
}

func TestJournalMergeAndUpdate(t *testing.T) {
	s, dir := openSpool(t)
	id := commit(t, s, testEnvelope(), testBody)
	hpath := filepath.Join(dir, "input", string(id[5]), string(id)+"-H")
	jpath := filepath.Join(dir, "input", string(id[5]), string(id)+"-J")
	before, _ := os.ReadFile(hpath)

	for _, r := range []string{"carol@example.test", "bob@example.test"} {
		if err := s.Journal(id, r); err != nil {
			t.Fatal(err)
		}
	}
	if j, _ := os.ReadFile(jpath); string(j) != "carol@example.test\nbob@example.test\n" {
		t.Errorf("-J = %q", j)
	}
	if err := s.Journal(id, "evil\n@x"); err == nil {
		t.Error("Journal accepted an address with a newline")
	}
	env, err := s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"carol@example.test", "bob@example.test"}; !slices.Equal(env.Done, want) {
		t.Errorf("Load Done = %q, want %q", env.Done, want)
	}
	if p := env.Pending(); !slices.Equal(p, []string{"dave@example.test"}) {
		t.Errorf("Pending = %q", p)
	}
	if after, _ := os.ReadFile(hpath); !bytes.Equal(before, after) {
		t.Error("Journal or Load changed the -H file")
	}

	// Update from a stale envelope still keeps the journal's recipients.
	stale := testEnvelope()
	stale.ID = id
	stale.BodyLinecount = 4
	stale.DeliverFirstTime = false
	stale.Attempts = 1
	stale.FirstFailed = time.Unix(1714557700, 0)
	stale.NextTry = time.Unix(1714558600, 0)
	if err := s.Update(stale); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(jpath); !os.IsNotExist(err) {
		t.Errorf("-J still there after Update: %v", err)
	}
	h, _ := os.ReadFile(hpath)
	if !strings.Contains(string(h), "\n-body_linecount 4\n-retry_first_failed 1714557700\n-retry_next 1714558600\n-retry_attempts 1\nNY bob@example.test\nNN carol@example.test\n3\n") {
		t.Errorf("-H after Update:\n%s", h)
	}
	env, err = s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"bob@example.test", "carol@example.test"}; !slices.Equal(env.Done, want) || env.Attempts != 1 {
		t.Errorf("after Update: Done %q attempts %d", env.Done, env.Attempts)
	}

	// A crash in the middle of a journal write leaves a partial line: that
	// delivery was never confirmed, so it is not done.
	if err := os.WriteFile(jpath, []byte("dave@example.test\nzed@exam"), 0o640); err != nil {
		t.Fatal(err)
	}
	env, err = s.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"bob@example.test", "carol@example.test", "dave@example.test"}; !slices.Equal(env.Done, want) {
		t.Errorf("Done with a torn journal = %q, want %q", env.Done, want)
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	s, dir := openSpool(t)
	env := testEnvelope()
	id := commit(t, s, env, testBody)
	hpath := filepath.Join(dir, "input", string(id[5]), string(id)+"-H")
	old, _ := os.ReadFile(hpath)

	// An earlier Update died after writing part of its temp file.
	tmp := filepath.Join(dir, "input", string(id[5]), "hdr."+string(id))
	if err := os.WriteFile(tmp, []byte("garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(id); err != nil {
		t.Fatalf("Load with a stale temp file: %v", err)
	}

	// A reader that opened the -H before the Update sees the old file
	// whole: Update replaces it by rename, never rewrites it in place.
	reader, err := os.Open(hpath)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	env.Frozen = time.Unix(1714560000, 0)
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	seen, _ := io.ReadAll(reader)
	if !bytes.Equal(seen, old) {
		t.Errorf("open reader saw %q, want the old file", seen)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temp file left after Update: %v", err)
	}
	got, err := s.Load(id)
	if err != nil || !got.Frozen.Equal(env.Frozen) {
		t.Errorf("after Update: %v, frozen %v", err, got)
	}

	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(env); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of a removed message = %v, want ErrNotFound", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("Update of a removed message left %q", got)
	}
}

func TestOpenRemovesOrphans(t *testing.T) {
	s, dir := openSpool(t)
	kept := commit(t, s, testEnvelope(), testBody)
	if err := s.Msglog(kept, "Received from alice@example.test"); err != nil {
		t.Fatal(err)
	}
	// A message being received right now, by another process.
	inFlight, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer inFlight.Abort()

	in := func(id, name string) string { return filepath.Join(dir, "input", id[5:6], name) }
	ml := func(id string) string { return filepath.Join(dir, "msglog", id[5:6], id) }
	const crashed, partial, gone = "1s26kb-000001-00", "1s26kc-000002-00", "1s26kd-000003-00"
	k, f := string(kept), string(inFlight.ID())
	orphans := []string{
		in(crashed, crashed+"-D"), in(crashed, crashed+"-J"), ml(crashed), // died during reception
		in(k, "hdr."+k),               // an Update of a live message died
		in(partial, "hdr."+partial),   // a commit died before its -D...
		in(gone, gone+"-J"), ml(gone), // ...a Remove died half way
		in(f, "hdr."+f[:10]), // not an id: left alone
	}
	for _, p := range orphans {
		if err := os.WriteFile(p, []byte("x\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := Open(dir, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()

	want := []string{
		filepath.Join("input", k[5:6], k+"-D"), filepath.Join("input", k[5:6], k+"-H"),
		filepath.Join("input", f[5:6], "hdr."+f[:10]),
		filepath.Join("input", f[5:6], f+"-D"),
		filepath.Join("msglog", k[5:6], k),
	}
	slices.Sort(want)
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("after Open:\n got %q\nwant %q", got, want)
	}
	if err := inFlight.Commit(context.Background(), testEnvelope()); err != nil {
		t.Errorf("the in-flight message could not commit: %v", err)
	}
}

// TestHelperLockHolder is not a test: TestLockAcrossProcesses runs the
// test binary with it to hold a lock from another process.
func TestHelperLockHolder(t *testing.T) {
	path := os.Getenv("SPOOL_TEST_LOCK_PATH")
	if path == "" {
		t.Skip("helper process only")
	}
	f, err := lockData(path)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
	f.Close()
	os.Exit(0)
}

func TestLock(t *testing.T) {
	s, _ := openSpool(t)
	id := commit(t, s, testEnvelope(), testBody)

	unlock, err := s.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	// Another goroutine of this process: a separate open file description.
	errc := make(chan error)
	go func() {
		_, err := s.Lock(id)
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, ErrLocked) {
		t.Errorf("second Lock = %v, want ErrLocked", err)
	}
	unlock()
	unlock()
	unlock2, err := s.Lock(id)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()

	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(w.ID()); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock of a message being received = %v, want ErrLocked", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(w.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lock of an aborted message = %v, want ErrNotFound", err)
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	s, dir := openSpool(t)
	id := commit(t, s, testEnvelope(), testBody)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperLockHolder$")
	cmd.Env = append(os.Environ(), "SPOOL_TEST_LOCK_PATH="+filepath.Join(dir, "input", string(id[5]), string(id)+"-D"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	if _, err := s.Lock(id); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock held by another process = %v, want ErrLocked", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(id)
	if err != nil {
		t.Fatalf("Lock after the other process exited: %v", err)
	}
	unlock()
}

// headerFiles writes an -H file for each of ids and, beside them, names
// that are not messages, for List and Walk to skip.
func headerFiles(t *testing.T, dir string, ids []ID) {
	t.Helper()
	for _, id := range ids {
		env := &Envelope{ID: id, Recipients: []string{"a@b"}, Received: time.Unix(1, 0)}
		var b bytes.Buffer
		if err := WriteHeaderFile(&b, env); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "input", string(id[5]), string(id)+"-H"), b.Bytes(), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for _, junk := range []string{"a/1s26kb-000000-00-H", "a/1s26ka-000001-00-D", "a/hdr.1s26ka-000002-00", "a/not-an-id-H", "a/1s26ka-000003-0-H"} {
		if err := os.WriteFile(filepath.Join(dir, "input", junk), nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListAcrossSubdirs(t *testing.T) {
	s, dir := openSpool(t)
	// Arrival order differs from subdirectory order and from plain
	// string order (sub-second decides before the pid field).
	headerFiles(t, dir, []ID{"1s26kZ-00000a-00", "1s26ka-000000-01", "1s26ka-00000z-00", "1s26kb-00000z-00", "1s26k0-000000-00"})
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []ID{"1s26k0-000000-00", "1s26kZ-00000a-00", "1s26ka-00000z-00", "1s26ka-000000-01", "1s26kb-00000z-00"}
	if !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
}

// Walk visits the subdirectories in base62 order from the one it is
// given, wrapping around, and stops when told to.
func TestWalk(t *testing.T) {
	s, dir := openSpool(t)
	headerFiles(t, dir, []ID{"1s26kZ-00000a-00", "1s26ka-000000-01", "1s26ka-00000z-00", "1s26kb-00000z-00", "1s26k0-000000-00"})
	tests := []struct {
		from ID
		stop int // stop after this many; 0: never
		want []ID
	}{
		{"", 0, []ID{"1s26k0-000000-00", "1s26kZ-00000a-00", "1s26ka-*", "1s26ka-*", "1s26kb-00000z-00"}},
		{"1s26kb-000000-00", 0, []ID{"1s26kb-00000z-00", "1s26k0-000000-00", "1s26kZ-00000a-00", "1s26ka-*", "1s26ka-*"}},
		{"1s26ka-zzzzzz-zz", 1, []ID{"1s26ka-*"}},
		{"not an id", 2, []ID{"1s26k0-000000-00", "1s26kZ-00000a-00"}},
	}
	for _, tt := range tests {
		var got []ID
		err := s.Walk(tt.from, func(id ID) bool {
			if id[5] == 'a' {
				// Within a subdirectory the order is the directory's.
				id = "1s26ka-*"
			}
			got = append(got, id)
			return len(got) != tt.stop
		})
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Walk(%q) = %q, %v; want %q", tt.from, got, err, tt.want)
		}
	}
}

func TestRemove(t *testing.T) {
	s, dir := openSpool(t)
	other := commit(t, s, testEnvelope(), testBody)
	id := commit(t, s, testEnvelope(), testBody)
	if err := s.Journal(id, "bob@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.Msglog(id, "Completed"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	o := string(other)
	want := []string{filepath.Join("input", o[5:6], o+"-D"), filepath.Join("input", o[5:6], o+"-H")}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("files after Remove = %q, want %q", got, want)
	}
	if _, err := s.Load(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	if ids, err := s.List(); err != nil || !slices.Equal(ids, []ID{other}) {
		t.Errorf("List = %q, %v", ids, err)
	}
}

func TestInvalidIDsTouchNothing(t *testing.T) {
	s, dir := openSpool(t)
	outside := filepath.Join(filepath.Dir(dir), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []ID{"", "../victim", "../../../victim-H", "1tXyZa-000AbC-Q", "1tXyZa-000AbC-Qr/../../../victim", "1tXy/a-000AbC-Qr"} {
		ops := map[string]func() error{
			"Load":    func() error { _, err := s.Load(bad); return err },
			"Remove":  func() error { return s.Remove(bad) },
			"Journal": func() error { return s.Journal(bad, "a@b") },
			"Msglog":  func() error { return s.Msglog(bad, "x") },
			"Lock":    func() error { _, err := s.Lock(bad); return err },
			"Update":  func() error { return s.Update(&Envelope{ID: bad, Received: time.Unix(1, 0)}) },
			"OpenMessage": func() error {
				_, _, err := s.OpenMessage(bad)
				return err
			},
			"OpenBody": func() error { _, err := s.OpenBody(bad); return err },
		}
		for name, op := range ops {
			err := op()
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "invalid message id") {
				t.Errorf("%s(%q) = %v, want an invalid message id error wrapping ErrNotFound", name, bad, err)
			}
		}
		if p := s.MsglogPath(bad); p != "" {
			t.Errorf("MsglogPath(%q) = %q", bad, p)
		}
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Errorf("file outside the spool: %q, %v", b, err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files created: %q", got)
	}
}

func TestMsglog(t *testing.T) {
	s, _ := openSpool(t)
	id := commit(t, s, testEnvelope(), testBody)
	for _, text := range []string{"Received from alice@example.test H=mx [192.0.2.1] P=esmtp S=200", "bob@example.test: deferred\nforged line"} {
		if err := s.Msglog(id, text); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(s.MsglogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Received from alice@example.test H=mx \[192.0.2.1\] P=esmtp S=200\n` +
		`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d bob@example.test: deferred\\nforged line\n$`)
	if !re.Match(b) {
		t.Errorf("msglog = %q", b)
	}
}

func TestAbort(t *testing.T) {
	s, dir := openSpool(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(testBody)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files after Abort: %q", got)
	}
	if err := w.Commit(context.Background(), testEnvelope()); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	// Abort after a successful Commit keeps the message.
	w, err = s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background(), testEnvelope()); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(w.ID()); err != nil {
		t.Errorf("Load after Commit then Abort: %v", err)
	}
}

func TestOpenMessageChecksDataFile(t *testing.T) {
	s, dir := openSpool(t)
	id := commit(t, s, testEnvelope(), testBody)
	dpath := filepath.Join(dir, "input", string(id[5]), string(id)+"-D")
	if err := os.WriteFile(dpath, []byte("000000-000000-00-D\nother body\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OpenMessage(id); err == nil || !strings.Contains(err.Error(), dpath) {
		t.Errorf("OpenMessage of a -D naming another message = %v, want an error naming %s", err, dpath)
	}
}

func FuzzParseJournal(f *testing.F) {
	// The seed corpus lives in testdata/fuzz/FuzzParseJournal.
	f.Fuzz(func(t *testing.T, in []byte) {
		rcpts := parseJournal(in)
		var complete []string
		if i := bytes.LastIndexByte(in, '\n'); i >= 0 {
			for l := range strings.SplitSeq(string(in[:i]), "\n") {
				if l != "" {
					complete = append(complete, l)
				}
			}
		}
		if !slices.Equal(rcpts, complete) {
			t.Fatalf("parseJournal(%q) = %q, want the complete non-empty lines %q", in, rcpts, complete)
		}
	})
}

// TestSyncPolicy: each policy makes the data durable its own way, and
// only its own way (counted at the sync hooks): SyncFS by one syncfs,
// SyncFdatasync by one fdatasync of each of the commit's files. The data
// sync happens while the -H still has its temp name, so a crash before it
// can never leave an ID-H whose data is lost; the directory sync comes
// after the rename.
func TestSyncPolicy(t *testing.T) {
	tests := []struct {
		policy     SyncPolicy
		quarantine bool
		want       []string
	}{
		{SyncFdatasync, false, []string{
			"fdatasync input/X/ID-D, -H present=false",
			"fdatasync input/X/hdr.ID, -H present=false",
			"fsync input/X, -H present=true",
		}},
		{SyncFS, false, []string{
			"syncfs, -H present=false",
			"fsync input/X, -H present=true",
		}},
		{SyncFdatasync, true, []string{
			"fdatasync input/X/ID-D, -H present=false",
			"fdatasync quarantine/X/ID-R, -H present=false",
			"fdatasync quarantine/X/hdr.ID, -H present=false",
			"fsync quarantine/X, -H present=true",
		}},
		{SyncFS, true, []string{
			"syncfs, -H present=false",
			"fsync quarantine/X, -H present=true",
		}},
	}
	for _, tt := range tests {
		name := string(tt.policy)
		if tt.quarantine {
			name += " quarantine"
		}
		t.Run(name, func(t *testing.T) {
			s, dir := openSpoolWith(t, Options{Sync: tt.policy})
			w, err := s.Create()
			if err != nil {
				t.Fatal(err)
			}
			top := "input"
			if tt.quarantine {
				top = "quarantine"
			}
			x := string(w.ID()[5])
			hfile := filepath.Join(dir, top, x, string(w.ID())+"-H")
			// name makes a path read like the layout; the steps of a
			// parallel fdatasync come in any order and are sorted.
			name := func(p string) string {
				rel, _ := filepath.Rel(dir, p)
				return strings.ReplaceAll(strings.Replace(filepath.ToSlash(rel), "/"+x, "/X", 1), string(w.ID()), "ID")
			}
			var mu sync.Mutex
			var data, dirs []string
			step := func(list *[]string, what string) {
				_, err := os.Stat(hfile)
				mu.Lock()
				*list = append(*list, fmt.Sprintf("%s, -H present=%v", what, err == nil))
				mu.Unlock()
			}
			fsync, datasync := s.fsync, s.datasync
			s.fsync = func(d string) error {
				if d == wholeFS {
					step(&data, "syncfs")
				} else {
					step(&dirs, "fsync "+name(d))
				}
				return fsync(d)
			}
			s.datasync = func(f *os.File) error {
				step(&data, "fdatasync "+name(f.Name()))
				return datasync(f)
			}
			if tt.quarantine {
				err = s.Quarantine(context.Background(), w, testEnvelope(), "test")
			} else {
				err = w.Commit(context.Background(), testEnvelope())
			}
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(data)
			if got := append(data, dirs...); !slices.Equal(got, tt.want) {
				t.Errorf("sync steps:\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
