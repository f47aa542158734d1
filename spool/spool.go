// Package spool owns the durable queue on disk: Exim-style message IDs, the
// split spool (input/X/ID-H, input/X/ID-D, input/X/ID-J, msglog/X/ID), the
// crash-safe commit with group-committed directory syncs, per-recipient
// delivery status that survives crashes, and the spool's integrity: its
// free space reserve, corrupt -H files set aside, truncated -D files found.
package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"mxgate/event"
)

var (
	// ErrLocked means another process or goroutine holds the message's
	// -D lock (Exim: "spool file is locked").
	ErrLocked = errors.New("spool file is locked")
	// ErrNotFound means there is no such message in the spool; invalid
	// ids wrap it too.
	ErrNotFound = errors.New("no such message")

	errClosed = errors.New("spool: closed")
)

const (
	dirMode = 0o750
	// fileMode keeps messages to the spool's owner: the daemon's user
	// and root (local users submit through the daemon's socket).
	fileMode = 0o600
	// dataStart is the length of the -D file's first line, "ID-D\n".
	dataStart = idLen + 3
)

// SyncPolicy is how a commit makes its files' data durable before their
// names: the values are config's spool.sync, so that one converts to the
// other.
type SyncPolicy string

const (
	// SyncFdatasync fdatasyncs each file of a commit batch, in parallel,
	// and nothing else: another writer's dirty pages on the same
	// filesystem are not the spool's to flush.
	SyncFdatasync SyncPolicy = "fdatasync"
	// SyncFS makes a whole batch's data durable with one syncfs(2) of the
	// spool's filesystem, flushing whatever else is dirty there too.
	SyncFS SyncPolicy = "syncfs"
)

// Options configure a spool; config fills them.
type Options struct {
	Sync SyncPolicy
	// MinFreeSpace and MinFreeInodes are the reserve CheckSpace keeps on
	// the spool's filesystem (config's spool.min_free_space and
	// min_free_inodes); 0 checks nothing.
	MinFreeSpace  int64
	MinFreeInodes int64
	// StatFS asks what the filesystem has free; nil is StatFS. Tests
	// inject a filesystem that is full.
	StatFS func(dir string) (Space, error)
	// Log gets the paniclog line of a corrupt -H file set aside; nil logs
	// nothing.
	Log Logger
	// Bus gets a SpoolCommit event per group commit that made messages'
	// data durable; nil emits nothing.
	Bus *event.Bus
}

// Spool is a spool directory. Its methods are safe for concurrent use.
type Spool struct {
	dir    string
	gen    *IDGenerator
	policy SyncPolicy
	// fsync syncs a directory, or with wholeFS the spool's whole
	// filesystem; datasync fdatasyncs one file. Tests count their calls.
	fsync    func(dir string) error
	datasync func(f *os.File) error

	minBytes, minInodes int64
	statfs              func(dir string) (Space, error)
	space               spaceCache
	log                 Logger
	bus                 *event.Bus

	// held is the messages whose lock this process holds through Lock:
	// setting a corrupt one aside must not wait for a lock it has.
	heldMu sync.Mutex
	held   map[ID]int

	syncReq   chan syncRequest
	quit      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// syncRequest asks the group committer for either a directory sync (dir,
// or wholeFS) or, under SyncFdatasync, the data of a commit's own files.
type syncRequest struct {
	dir   string
	files []*os.File
	done  chan error
}

// Open opens the spool under dir, creating input/X, msglog/X and
// quarantine/X for every base62 digit X and corrupt/, and removes what a crash left
// behind: -D files without -H whose lock nobody holds (with their -J and
// msglog), hdr.* temp files of commits or updates that never finished, and
// the same in quarantine/. Commits make their data durable as o.Sync says.
func Open(dir string, o Options) (*Spool, error) {
	if o.Sync != SyncFdatasync && o.Sync != SyncFS {
		return nil, fmt.Errorf("spool: unknown sync policy %q", o.Sync)
	}
	for _, top := range []string{"input", "msglog"} {
		for i := range len(base62) {
			if err := os.MkdirAll(filepath.Join(dir, top, base62[i:i+1]), dirMode); err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
		}
	}
	s := &Spool{
		dir:     dir,
		gen:     NewIDGenerator(),
		policy:  o.Sync,
		syncReq: make(chan syncRequest),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	s.minBytes, s.minInodes, s.statfs, s.log, s.bus = o.MinFreeSpace, o.MinFreeInodes, o.StatFS, o.Log, o.Bus
	s.held = make(map[ID]int)
	s.fsync, s.datasync = s.syncPath, fdatasync
	if s.statfs == nil {
		s.statfs = StatFS
	}
	if err := os.MkdirAll(s.CorruptDir(), dirMode); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for i := range len(base62) {
		if err := s.removeOrphans(base62[i]); err != nil {
			return nil, err
		}
	}
	if err := s.openQuarantine(); err != nil {
		return nil, err
	}
	go s.committer()
	return s, nil
}

// Close stops the group committer; commits still waiting for it fail.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.stopped
	})
	return nil
}

func (s *Spool) inputDir(id ID) string { return filepath.Join(s.dir, "input", string(id[5])) }

func (s *Spool) path(id ID, suffix string) string {
	return filepath.Join(s.inputDir(id), string(id)+suffix)
}

func (s *Spool) tempPath(id ID) string {
	return filepath.Join(s.inputDir(id), "hdr."+string(id))
}

// MsglogPath returns the path of the message's msglog, or "" for an
// invalid id.
func (s *Spool) MsglogPath(id ID) string {
	if !ValidID(string(id)) {
		return ""
	}
	return filepath.Join(s.dir, "msglog", string(id[5]), string(id))
}

func checkID(id ID) error {
	if !ValidID(string(id)) {
		return fmt.Errorf("spool: invalid message id %q: %w", id, ErrNotFound)
	}
	return nil
}

func notFound(id ID) error { return fmt.Errorf("spool: message %s: %w", id, ErrNotFound) }

func (s *Spool) removeOrphans(x byte) error {
	dir := filepath.Join(s.dir, "input", string(x))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	has := make(map[string]bool, len(entries))
	for _, e := range entries {
		has[e.Name()] = true
	}
	var candidates []ID
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutPrefix(name, "hdr.")
		if !ok && len(name) == idLen+2 && (strings.HasSuffix(name, "-D") || strings.HasSuffix(name, "-J")) {
			id, ok = name[:idLen], !has[name[:idLen]+"-H"]
		}
		if ok && ValidID(id) && id[5] == x {
			candidates = append(candidates, ID(id))
		}
	}
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	for _, id := range candidates {
		f, err := lockData(s.path(id, "-D"))
		if errors.Is(err, ErrLocked) {
			continue // a live writer or delivery owns it
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		err = removeAll(s.tempPath(id))
		if _, serr := os.Stat(s.path(id, "-H")); errors.Is(serr, fs.ErrNotExist) {
			err = errors.Join(err, removeAll(s.path(id, "-D"), s.path(id, "-J"), s.MsglogPath(id)))
		}
		if f != nil {
			f.Close()
		}
		if err != nil {
			return err
		}
	}

	mdir := filepath.Join(s.dir, "msglog", string(x))
	logs, err := os.ReadDir(mdir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range logs {
		id := e.Name()
		if ValidID(id) && !has[id+"-H"] && !has[id+"-D"] {
			if err := removeAll(filepath.Join(mdir, id)); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeAll unlinks paths, ignoring those already gone.
func removeAll(paths ...string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("spool: %w", err))
		}
	}
	return errors.Join(errs...)
}

// committer serves syncs in batches: every request that arrives while a
// batch is syncing waits for the next one. Each distinct directory of a
// batch is synced once, so concurrent commits in the same subdirectory
// share one fsync; the files of a batch are fdatasynced in parallel, so
// that the filesystem can commit them in one journal transaction.
func (s *Spool) committer() {
	defer close(s.stopped)
	for {
		var batch []syncRequest
		select {
		case r := <-s.syncReq:
			batch = append(batch, r)
		case <-s.quit:
			return
		}
	drain:
		for {
			select {
			case r := <-s.syncReq:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.syncBatch(batch)
	}
}

func (s *Spool) syncBatch(batch []syncRequest) {
	// The batch's files are fdatasynced in parallel, which measured
	// ahead of one after the other (with or without sync_file_range
	// starting all their writeback first) at 20 and 200 committers, idle
	// and beside another writer. Each commit fdatasyncing its own files
	// outside the batch was behind idle at 20 committers and level or
	// ahead beside the writer: within the noise of a shared machine.
	start := time.Now()
	fileErrs := make([][]error, len(batch))
	var wg sync.WaitGroup
	for i, r := range batch {
		fileErrs[i] = make([]error, len(r.files))
		for j, f := range r.files {
			wg.Go(func() { fileErrs[i][j] = s.datasync(f) })
		}
	}
	// The directories too, at once: with the split spool a batch names
	// many of them, and one after the other they were a queue of their
	// own behind the first one's journal commit.
	dirErrs := make(map[string]*error, 1)
	for _, r := range batch {
		if r.files != nil {
			continue
		}
		if _, seen := dirErrs[r.dir]; !seen {
			err := new(error)
			dirErrs[r.dir] = err
			wg.Go(func() { *err = s.fsync(r.dir) })
		}
	}
	wg.Wait()
	if s.bus.Enabled() {
		// Batch counts the messages whose data this sync made durable;
		// a batch of directory syncs alone (the renames) is not one.
		n := 0
		for _, r := range batch {
			if r.files != nil || r.dir == wholeFS {
				n++
			}
		}
		if n > 0 {
			s.bus.Emit(event.Event{Kind: event.SpoolCommit, Batch: n, Duration: time.Since(start)})
		}
	}
	for i, r := range batch {
		if r.files != nil {
			r.done <- errors.Join(fileErrs[i]...)
		} else {
			r.done <- *dirErrs[r.dir]
		}
	}
}

// syncDir makes dir's entries durable through the group committer.
func (s *Spool) syncDir(ctx context.Context, dir string) error {
	return s.sync(ctx, syncRequest{dir: dir})
}

// syncData makes the data of a commit's files durable as the spool's
// policy says, through the group committer: under SyncFS with one syncfs
// for the batch, under SyncFdatasync by fdatasyncing exactly these files.
func (s *Spool) syncData(ctx context.Context, files ...*os.File) error {
	if s.policy == SyncFS {
		return s.sync(ctx, syncRequest{dir: wholeFS})
	}
	return s.sync(ctx, syncRequest{files: files})
}

func (s *Spool) sync(ctx context.Context, r syncRequest) error {
	r.done = make(chan error, 1)
	select {
	case s.syncReq <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return errClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wholeFS as a sync target asks for syncfs(2) on the spool's filesystem
// (SyncFS): one call makes the data of every commit in a batch durable.
const wholeFS = ""

func (s *Spool) syncPath(dir string) error {
	if dir != wholeFS {
		return fsyncDir(dir)
	}
	f, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("spool: syncfs: %w", err)
	}
	defer f.Close()
	if err := withFd(f, unix.Syncfs); err != nil {
		return fmt.Errorf("spool: syncfs %s: %w", s.dir, err)
	}
	return nil
}

func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: sync directory: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: sync directory %s: %w", dir, err)
	}
	return nil
}

func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = fn(int(fd)); ferr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

func fdatasync(f *os.File) error {
	if err := withFd(f, unix.Fdatasync); err != nil {
		return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
	}
	return nil
}

// stillLinked reports whether f is still the file at its path: a lock
// taken on a file another process has just unlinked protects nothing.
func stillLinked(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Stat(f.Name())
	return err == nil && os.SameFile(fi, pi)
}

// lockData opens path and takes a non-blocking exclusive flock on it. Each
// open creates its own open file description, so two goroutines of one
// process exclude each other just as two processes do.
func lockData(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spool: %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	err = withFd(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) })
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		f.Close()
		return nil, fmt.Errorf("spool: %s: %w", path, ErrLocked)
	case err != nil:
		f.Close()
		return nil, fmt.Errorf("spool: lock %s: %w", path, err)
	case !stillLinked(f):
		f.Close()
		return nil, fmt.Errorf("spool: %s: %w", path, ErrNotFound)
	}
	return f, nil
}

// Lock takes the message's lock (an flock on its -D file) for a delivery
// or an admin command. It fails with ErrLocked while anyone else holds it.
// unlock releases it and may be called more than once.
func (s *Spool) Lock(id ID) (unlock func(), err error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	f, err := lockData(s.path(id, "-D"))
	if err != nil {
		return nil, err
	}
	s.heldMu.Lock()
	s.held[id]++
	s.heldMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.heldMu.Lock()
			if s.held[id]--; s.held[id] <= 0 {
				delete(s.held, id)
			}
			s.heldMu.Unlock()
			f.Close()
		})
	}, nil
}

// holds reports whether this process holds id's lock through Lock.
func (s *Spool) holds(id ID) bool {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	return s.held[id] > 0
}

// List returns every message that has an -H file, in arrival order.
func (s *Spool) List() ([]ID, error) {
	var ids []ID
	if err := s.Walk("", func(id ID) bool {
		ids = append(ids, id)
		return true
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(ids, ID.Compare)
	return ids, nil
}

// walkChunk is how many directory entries Walk reads at a time.
const walkChunk = 512

// Walk calls fn with every message that has an -H file, one input
// subdirectory after the other, beginning with from's (the first one when
// from is ""), wrapping around, each in directory order, until fn returns
// false. Unlike List it holds no more than walkChunk names at a time,
// whatever the spool's size, so a caller can resume a stopped walk at the
// subdirectory of the last ID it was given. A message committed or removed
// meanwhile may or may not be seen.
func (s *Spool) Walk(from ID, fn func(ID) bool) error {
	start := 0
	if ValidID(string(from)) {
		start = digit62(from[5])
	}
	for i := range len(base62) {
		x := base62[(start+i)%len(base62)]
		more, err := eachHeader(filepath.Join(s.dir, "input", string(x)), func(id ID) bool {
			return id[5] != x || fn(id)
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// eachHeader calls fn with the ID of every -H file in dir, reading
// walkChunk names at a time, until fn returns false; false when fn
// stopped it.
func eachHeader(dir string, fn func(ID) bool) (bool, error) {
	d, err := os.Open(dir)
	if err != nil {
		return false, fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(walkChunk)
		for _, name := range names {
			id, ok := strings.CutSuffix(name, "-H")
			if ok && ValidID(id) && !fn(ID(id)) {
				return false, nil
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("spool: %w", err)
		}
	}
}

func (s *Spool) readHeader(id ID) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	path := s.path(id, "-H")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	env, err := ParseHeaderFile(bytes.NewReader(b))
	if err == nil && env.ID != id {
		err = &ParseError{Line: 1, Msg: fmt.Sprintf("file is for message %s", env.ID)}
	}
	if err != nil {
		return nil, s.setAside(id, err)
	}
	return env, nil
}

// Load reads the message's -H file and adds the recipients its -J journal
// records to Done, so a delivery interrupted by a crash is not repeated.
func (s *Spool) Load(id ID) (*Envelope, error) {
	env, err := s.readHeader(id)
	if err != nil {
		return nil, err
	}
	done, err := s.readJournal(id)
	if err != nil {
		return nil, err
	}
	env.Done = mergeDone(env.Done, done)
	return env, nil
}

func (s *Spool) readJournal(id ID) ([]string, error) {
	b, err := os.ReadFile(s.path(id, "-J"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return parseJournal(b), nil
}

// parseJournal returns the complete lines of a -J file. A last line
// without its newline is a write the crash cut short, never fsynced and so
// never reported as done: that recipient is tried again.
func parseJournal(b []byte) []string {
	var rcpts []string
	for {
		line, rest, ok := bytes.Cut(b, []byte{'\n'})
		if !ok {
			return rcpts
		}
		if len(line) > 0 {
			rcpts = append(rcpts, string(line))
		}
		b = rest
	}
}

func mergeDone(done, more []string) []string {
	for _, r := range more {
		if !slices.Contains(done, r) {
			done = append(done, r)
		}
	}
	return done
}

type messageReader struct {
	io.Reader
	io.Closer
}

// openData opens the -D file positioned at the body, checking that its
// first line names the message.
func (s *Spool) openData(id ID) (*os.File, int64, error) {
	path := s.path(id, "-D")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, notFound(id)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	var first [dataStart]byte
	fi, err := f.Stat()
	if err == nil {
		_, err = io.ReadFull(f, first[:])
	}
	if err != nil || string(first[:]) != string(id)+"-D\n" {
		f.Close()
		return nil, 0, fmt.Errorf("spool: %s: line 1 is not %q (%v)", path, string(id)+"-D", err)
	}
	return f, fi.Size() - dataStart, nil
}

// OpenMessage returns the whole message as delivered: the headers not
// marked deleted, a blank line, then the body, all with LF line endings;
// and its size in bytes.
func (s *Spool) OpenMessage(id ID) (io.ReadCloser, int64, error) {
	env, err := s.readHeader(id)
	if err != nil {
		return nil, 0, err
	}
	return s.OpenEnvelope(env)
}

// OpenEnvelope is OpenMessage for a message whose envelope is in hand
// (from Load, under its lock): a delivery attempt opens the message once
// a group without reading and parsing its -H file each time.
func (s *Spool) OpenEnvelope(env *Envelope) (io.ReadCloser, int64, error) {
	if err := checkID(env.ID); err != nil {
		return nil, 0, err
	}
	f, size, err := s.openData(env.ID)
	if err != nil {
		return nil, 0, err
	}
	var hdr strings.Builder
	for _, h := range env.Headers {
		if h.Type != '*' {
			hdr.WriteString(h.Text)
		}
	}
	hdr.WriteByte('\n')
	return messageReader{io.MultiReader(strings.NewReader(hdr.String()), f), f}, int64(hdr.Len()) + size, nil
}

// OpenBody returns the message body: the -D file after its "ID-D" line.
func (s *Spool) OpenBody(id ID) (io.ReadCloser, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	f, _, err := s.openData(id)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Journal records that rcpt is done (delivered or failed for good) in the
// message's -J file, durably, before the delivery is logged.
func (s *Spool) Journal(id ID, rcpt string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := checkValue(rcpt, false); err != nil {
		return fmt.Errorf("spool: message %s: journal: %w", id, err)
	}
	path := s.path(id, "-J")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		_, err = f.Write([]byte(rcpt + "\n"))
	}
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: journal %s: %w", path, err)
	}
	if fi.Size() == 0 {
		// A new -J is only durable once its directory entry is.
		return s.syncDir(context.Background(), s.inputDir(id))
	}
	return nil
}

// createFile writes b to a new file at path and returns it open, for its
// data to be synced; on an error nothing is left at path.
func createFile(path string, b []byte) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("spool: write %s: %w", path, err)
	}
	return f, nil
}

// writeFileDurably writes b to tmp, fdatasyncs it and renames it to path.
// The caller syncs the directory.
func writeFileDurably(tmp, path string, b []byte) error {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: write %s: %w", path, err)
	}
	return nil
}

// Update rewrites the -H file atomically with env, after adding the -J
// journal's recipients to env.Done, and then drops the journal. The caller
// holds the message's Lock.
func (s *Spool) Update(env *Envelope) error {
	id := env.ID
	if err := checkID(id); err != nil {
		return err
	}
	if _, err := os.Stat(s.path(id, "-D")); errors.Is(err, fs.ErrNotExist) {
		return notFound(id)
	}
	done, err := s.readJournal(id)
	if err != nil {
		return err
	}
	env.Done = mergeDone(env.Done, done)
	b, err := appendHeaderFile(nil, env)
	if err != nil {
		return err
	}
	if err := writeFileDurably(s.tempPath(id), s.path(id, "-H"), b); err != nil {
		return err
	}
	if err := s.syncDir(context.Background(), s.inputDir(id)); err != nil {
		return err
	}
	// The -H now holds every journal line; a -J that survives a crash
	// here is merged again harmlessly.
	return removeAll(s.path(id, "-J"))
}

// Remove deletes the message: the -H first, so that from then on the
// message no longer exists, then -D, -J and the msglog.
func (s *Spool) Remove(id ID) error {
	if err := checkID(id); err != nil {
		return err
	}
	err := os.Remove(s.path(id, "-H"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, derr := os.Stat(s.path(id, "-D")); errors.Is(derr, fs.ErrNotExist) {
			return notFound(id)
		}
	} else if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := removeAll(s.path(id, "-D"), s.path(id, "-J"), s.tempPath(id), s.MsglogPath(id)); err != nil {
		return err
	}
	return s.syncDir(context.Background(), s.inputDir(id))
}

// Msglog appends "2006-01-02 15:04:05 text" (local time, text escaped onto
// one line) to the message's msglog.
func (s *Spool) Msglog(id ID, text string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return s.appendMsglog(id, msglogLine(time.Now(), text))
}
