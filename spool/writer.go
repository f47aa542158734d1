package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Writer receives one message's body into its -D file. It holds the
// message's lock from Create until Commit or Abort, so neither a queue
// runner nor another process's orphan cleanup touches it meanwhile.
type Writer struct {
	s     *Spool
	id    ID
	f     *os.File
	buf   *bufio.Writer
	lines int
	size  int64
	err   error // first write error; the body is lost after it
	state writerState
	// flushMu serialises OpenBody's flush: scanners read the body in
	// parallel, and bufio.Writer is not safe for that.
	flushMu sync.Mutex
}

type writerState int

const (
	writing writerState = iota
	committed
	aborted
)

// createAttempts bounds retries when another process's Open removes a
// just-created -D before this one could lock it.
const createAttempts = 3

// Create starts a new message: a fresh id and its input/X/ID-D file with
// the "ID-D" line written.
func (s *Spool) Create() (*Writer, error) {
	for range createAttempts {
		id := s.gen.Next()
		path := s.path(id, "-D")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
		if err != nil {
			return nil, fmt.Errorf("spool: create %w", err)
		}
		// Blocking: the only other holder of a lock on a file nobody has
		// committed yet is an orphan cleanup, which is quick.
		if err := withFd(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX) }); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("spool: lock %s: %w", path, err)
		}
		if !stillLinked(f) {
			f.Close()
			continue
		}
		w := &Writer{s: s, id: id, f: f, buf: bufio.NewWriterSize(f, 64<<10)}
		if _, err := w.buf.WriteString(string(id) + "-D\n"); err != nil {
			w.Abort()
			return nil, fmt.Errorf("spool: write %s: %w", path, err)
		}
		return w, nil
	}
	return nil, fmt.Errorf("spool: create: new data file removed %d times by another process's cleanup", createAttempts)
}

// ID returns the message id.
func (w *Writer) ID() ID { return w.id }

// Write appends body bytes: LF line endings, already un-dot-stuffed.
func (w *Writer) Write(p []byte) (int, error) {
	if w.state != writing {
		return 0, fmt.Errorf("spool: message %s: write after commit or abort", w.id)
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.buf.Write(p)
	w.lines += bytes.Count(p[:n], []byte{'\n'})
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("spool: write %s: %w", w.f.Name(), err)
		return n, w.err
	}
	return n, nil
}

// Commit makes the message durable; when it returns nil the message is on
// disk and may be acknowledged with 250. It sets env.ID (which must be
// empty or the writer's id) and env.BodyLinecount and BodySize from the body written,
// and env.Received to now when zero. The order is: write the -H to hdr.ID;
// make the data of both files durable (the spool's SyncPolicy); rename
// hdr.ID to ID-H; sync the directory. Both syncs go through the group
// committer. On any error, including ctx ending, everything is removed
// and the message does not exist.
func (w *Writer) Commit(ctx context.Context, env *Envelope) error {
	if err := w.fill(env, "commit"); err != nil {
		return err
	}
	if err := w.commit(ctx, env); err != nil {
		// The -H may already be in place: remove it first, as Remove does.
		return errors.Join(err, removeAll(w.s.path(w.id, "-H")), w.Abort())
	}
	w.state = committed
	// Everything is synced; closing only releases the lock.
	w.f.Close()
	return nil
}

// fill checks that w can end with verb (commit, quarantine) and env is
// its envelope, and sets env's ID, BodyLinecount and Received as Commit
// says: the start Commit and Quarantine share.
func (w *Writer) fill(env *Envelope, verb string) error {
	if w.state != writing {
		return fmt.Errorf("spool: message %s: %s after commit or abort", w.id, verb)
	}
	if env.ID == "" {
		env.ID = w.id
	}
	if env.ID != w.id {
		return fmt.Errorf("spool: %s of message %s with an envelope for %s", verb, w.id, env.ID)
	}
	env.BodyLinecount, env.BodySize = w.lines, w.size
	if env.Received.IsZero() {
		env.Received = time.Now()
	}
	return nil
}

// flush formats env's -H file and writes out the body, unless ctx has
// ended or a write failed: what commit and quarantine do before their
// files.
func (w *Writer) flush(ctx context.Context, env *Envelope) ([]byte, error) {
	hdr, err := appendHeaderFile(nil, env)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spool: message %s: %w", w.id, err)
	}
	if w.err != nil {
		return nil, w.err
	}
	if err := w.buf.Flush(); err != nil {
		return nil, fmt.Errorf("spool: write %s: %w", w.f.Name(), err)
	}
	return hdr, nil
}

func (w *Writer) commit(ctx context.Context, env *Envelope) error {
	hdr, err := w.flush(ctx, env)
	if err != nil {
		return err
	}
	// Group commit in two batched steps, so concurrent sessions share
	// syncs: the -D and the -H (under its temp name) are made durable
	// first, with the batch (Spool.syncData); only then does the -H take
	// its real name, and one directory fsync per batch makes that
	// durable. The message exists once ID-H does, and by then its data is
	// on disk.
	tmp := w.s.tempPath(w.id)
	h, err := createFile(tmp, hdr)
	if err != nil {
		return err
	}
	err = w.s.syncData(ctx, w.f, h)
	h.Close()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: message %s: %w", w.id, err)
	}
	if err := os.Rename(tmp, w.s.path(w.id, "-H")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: message %s: %w", w.id, err)
	}
	if err := w.s.syncDir(ctx, w.s.inputDir(w.id)); err != nil {
		return fmt.Errorf("spool: message %s: %w", w.id, err)
	}
	return nil
}

// OpenBody returns the body written so far (LF line ends, without the -D
// file's "ID-D" line), so content scanners read the message from disk before
// it is committed. Buffered writes are flushed first. Several readers may
// open it at once; nothing may be written, committed or aborted meanwhile.
func (w *Writer) OpenBody() (io.ReadCloser, error) {
	if w.state != writing {
		return nil, fmt.Errorf("spool: message %s: reading the body after commit or abort", w.id)
	}
	w.flushMu.Lock()
	err := w.err
	if err == nil {
		if ferr := w.buf.Flush(); ferr != nil {
			w.err = fmt.Errorf("spool: write %s: %w", w.f.Name(), ferr)
			err = w.err
		}
	}
	w.flushMu.Unlock()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(w.f.Name())
	if err != nil {
		return nil, fmt.Errorf("spool: message %s: %w", w.id, err)
	}
	if _, err := f.Seek(int64(len(w.id)+len("-D\n")), io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: message %s: %w", w.id, err)
	}
	return f, nil
}

// Abort removes the -D file and releases the lock. After a successful
// Commit it does nothing, so it can be deferred right after Create.
func (w *Writer) Abort() error {
	if w.state != writing {
		return nil
	}
	w.state = aborted
	path := w.f.Name()
	// Unlink before closing: the lock keeps cleanups off the file until
	// it is gone.
	err := removeAll(path, w.s.tempPath(w.id))
	w.f.Close()
	return err
}

// ReplaceBody discards the body written so far and writes r (LF line ends)
// in its place: a milter's replacement body, applied before Commit. It
// returns the new body's size.
func (w *Writer) ReplaceBody(r io.Reader) (int64, error) {
	if w.state != writing {
		return 0, fmt.Errorf("spool: message %s: replacing the body after commit or abort", w.id)
	}
	if w.err != nil {
		return 0, w.err
	}
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	// Flushing first keeps the "ID-D" line, which may still be buffered.
	if err := w.buf.Flush(); err != nil {
		w.err = fmt.Errorf("spool: write %s: %w", w.f.Name(), err)
		return 0, w.err
	}
	start := int64(len(w.id) + len("-D\n"))
	if err := w.f.Truncate(start); err != nil {
		w.err = fmt.Errorf("spool: truncate %s: %w", w.f.Name(), err)
		return 0, w.err
	}
	if _, err := w.f.Seek(start, io.SeekStart); err != nil {
		w.err = fmt.Errorf("spool: seek %s: %w", w.f.Name(), err)
		return 0, w.err
	}
	w.lines, w.size = 0, 0
	n, err := io.Copy(w, r)
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("spool: message %s: reading the replacement body: %w", w.id, err)
		}
		return n, w.err
	}
	return n, nil
}
