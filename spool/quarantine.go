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
	"time"
)

// The quarantine area holds messages a content filter kept out of the
// queue: quarantine/X/ID-H and ID-D, the same files as in input/, plus
// ID-R, the reason as one line. A message is in quarantine exactly when
// its quarantine/X/ID-H exists; it is locked, as in input/, by an flock on
// its -D file. Moves between input/ and quarantine/ are hard links of the
// same files, so the lock (which belongs to the inode) covers both names
// and nothing is ever copied.

// QuarantineEntry is a quarantined message.
type QuarantineEntry struct {
	Envelope *Envelope
	Reason   string
	// Quarantined is when the message entered the quarantine.
	Quarantined time.Time
	// Size counts as -bp does: headers sent, the blank line, the body.
	Size int64
}

func (s *Spool) quarantineDir(id ID) string {
	return filepath.Join(s.dir, "quarantine", string(id[5]))
}

func (s *Spool) quarantinePath(id ID, suffix string) string {
	return filepath.Join(s.quarantineDir(id), string(id)+suffix)
}

func (s *Spool) quarantineTemp(id ID) string {
	return filepath.Join(s.quarantineDir(id), "hdr."+string(id))
}

// openQuarantine creates quarantine/X for every base62 digit X and clears
// up after crashes: the files of a quarantine commit that never got its
// -H, and the quarantine copy of a release that had already put the
// message in input/.
func (s *Spool) openQuarantine() error {
	for i := range len(base62) {
		dir := filepath.Join(s.dir, "quarantine", base62[i:i+1])
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := s.quarantineOrphans(dir, base62[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spool) quarantineOrphans(dir string, x byte) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	has := make(map[string]bool, len(entries))
	var ids []ID
	for _, e := range entries {
		name := e.Name()
		has[name] = true
		id, ok := strings.CutPrefix(name, "hdr.")
		if !ok && len(name) == idLen+2 {
			id, ok = name[:idLen], true
		}
		if ok && ValidID(id) && id[5] == x {
			ids = append(ids, ID(id))
		}
	}
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		if has[string(id)+"-H"] && !s.releasedCopy(id) {
			continue
		}
		f, err := lockData(s.quarantinePath(id, "-D"))
		if errors.Is(err, ErrLocked) {
			continue // a commit or release in progress owns it
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		err = removeAll(s.quarantinePath(id, "-H"), s.quarantinePath(id, "-D"), s.quarantinePath(id, "-R"), s.quarantineTemp(id))
		if f != nil {
			f.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// releasedCopy reports whether input/ holds the very -H of this
// quarantined message: a release linked it there and then stopped.
func (s *Spool) releasedCopy(id ID) bool {
	qi, err1 := os.Stat(s.quarantinePath(id, "-H"))
	ii, err2 := os.Stat(s.path(id, "-H"))
	return err1 == nil && err2 == nil && os.SameFile(qi, ii)
}

// oneLine makes a reason fit its one-line file.
func oneLine(reason string) string {
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	if reason = strings.TrimSpace(reason); reason == "" {
		return "no reason given"
	}
	return reason
}

// Quarantine commits w's message into the quarantine area instead of the
// queue, with the same durability as Commit: when it returns nil the
// message is on disk, in quarantine, and may be acknowledged with 250. It
// fills env as Commit does; reason (made one line) is kept with it. On any
// error, including ctx ending, the message does not exist.
func (s *Spool) Quarantine(ctx context.Context, w *Writer, env *Envelope, reason string) error {
	if w.s != s {
		return fmt.Errorf("spool: message %s: quarantine into another spool than it was created in", w.id)
	}
	if err := w.fill(env, "quarantine"); err != nil {
		return err
	}
	if err := s.quarantine(ctx, w, env, oneLine(reason)); err != nil {
		id := w.id
		// The -H first: from then on the message is not in quarantine.
		rerr := removeAll(s.quarantinePath(id, "-H"), s.quarantinePath(id, "-D"), s.quarantinePath(id, "-R"), s.quarantineTemp(id))
		return errors.Join(err, rerr, w.Abort())
	}
	w.state = committed
	// The quarantine link keeps the data; the input/ name is dropped now.
	// Should that fail, Open's orphan cleanup drops it later.
	os.Remove(w.f.Name())
	w.f.Close()
	return nil
}

func (s *Spool) quarantine(ctx context.Context, w *Writer, env *Envelope, reason string) error {
	id := w.id
	hdr, err := w.flush(ctx, env)
	if err != nil {
		return err
	}
	dir := s.quarantineDir(id)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// The -D is linked first: the lock w holds on it then shields the
	// other files of this commit from another process's orphan cleanup.
	if err := os.Link(w.f.Name(), s.quarantinePath(id, "-D")); err != nil {
		return fmt.Errorf("spool: message %s: %w", id, err)
	}
	r, err := createFile(s.quarantinePath(id, "-R"), []byte(reason+"\n"))
	if err != nil {
		return err
	}
	defer r.Close()
	h, err := createFile(s.quarantineTemp(id), hdr)
	if err != nil {
		return err
	}
	defer h.Close()
	// As in Commit: the data of the three files is made durable with the
	// batch, then the -H takes its name and one directory fsync makes that
	// so.
	if err := s.syncData(ctx, w.f, r, h); err != nil {
		return fmt.Errorf("spool: message %s: %w", id, err)
	}
	if err := os.Rename(s.quarantineTemp(id), s.quarantinePath(id, "-H")); err != nil {
		return fmt.Errorf("spool: message %s: %w", id, err)
	}
	if err := s.syncDir(ctx, dir); err != nil {
		return fmt.Errorf("spool: message %s: %w", id, err)
	}
	return nil
}

// QuarantineList returns every quarantined message, in arrival order. A
// message that goes away while it is read is left out; one whose files
// cannot be read is an error naming it.
func (s *Spool) QuarantineList() ([]QuarantineEntry, error) {
	var ids []ID
	for i := range len(base62) {
		entries, err := os.ReadDir(filepath.Join(s.dir, "quarantine", base62[i:i+1]))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		for _, e := range entries {
			id, ok := strings.CutSuffix(e.Name(), "-H")
			if ok && ValidID(id) && id[5] == base62[i] {
				ids = append(ids, ID(id))
			}
		}
	}
	slices.SortFunc(ids, ID.Compare)
	list := make([]QuarantineEntry, 0, len(ids))
	for _, id := range ids {
		e, err := s.QuarantineLoad(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		list = append(list, *e)
	}
	return list, nil
}

// QuarantineLoad reads one quarantined message's envelope, reason and size.
func (s *Spool) QuarantineLoad(id ID) (*QuarantineEntry, error) {
	env, err := s.quarantineEnvelope(id)
	if err != nil {
		return nil, err
	}
	e := &QuarantineEntry{Envelope: env, Size: env.HeaderSize() + 1}
	rpath := s.quarantinePath(id, "-R")
	r, err := os.ReadFile(rpath)
	fi, serr := os.Stat(rpath)
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("spool: quarantined message %s: %w", id, err)
	}
	e.Reason, e.Quarantined = strings.TrimSuffix(string(r), "\n"), fi.ModTime()
	di, err := os.Stat(s.quarantinePath(id, "-D"))
	if err != nil {
		return nil, fmt.Errorf("spool: quarantined message %s: %w", id, err)
	}
	e.Size += di.Size() - dataStart
	return e, nil
}

// QuarantineHeaderFile returns the quarantined message's -H file as it is
// on disk.
func (s *Spool) QuarantineHeaderFile(id ID) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.quarantinePath(id, "-H"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, quarantineNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return b, nil
}

// QuarantineOpenBody returns the quarantined message's body: its -D file
// after the "ID-D" line.
func (s *Spool) QuarantineOpenBody(id ID) (io.ReadCloser, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	path := s.quarantinePath(id, "-D")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, quarantineNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var first [dataStart]byte
	if _, err := io.ReadFull(f, first[:]); err != nil || string(first[:]) != string(id)+"-D\n" {
		f.Close()
		return nil, fmt.Errorf("spool: %s: line 1 is not %q (%v)", path, string(id)+"-D", err)
	}
	return f, nil
}

func quarantineNotFound(id ID) error {
	return fmt.Errorf("spool: message %s is not in quarantine: %w", id, ErrNotFound)
}

// lockQuarantined takes the lock of a quarantined message and checks that
// it is still in quarantine (its -H exists).
func (s *Spool) lockQuarantined(id ID) (*os.File, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	f, err := lockData(s.quarantinePath(id, "-D"))
	if errors.Is(err, ErrNotFound) {
		return nil, quarantineNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.quarantinePath(id, "-H")); err != nil {
		f.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, quarantineNotFound(id)
		}
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

// QuarantineRelease moves a quarantined message into the queue, where it
// is delivered as if it had been accepted (its received time unchanged,
// due at once), and returns its envelope as read under the lock: the
// recipients already released or deleted one by one are in its Done
// list, so the queue delivers only the others. It fails with ErrLocked
// while another process handles the message. The queue sees it complete
// or not at all: the -D gets its input/ name first, the -H last, both
// under the message's lock.
func (s *Spool) QuarantineRelease(id ID) (*Envelope, error) {
	f, err := s.lockQuarantined(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env, err := s.quarantineEnvelope(id)
	if err != nil {
		return nil, err
	}
	return env, s.release(id)
}

// release moves a quarantined message whose lock the caller holds into
// the queue.
func (s *Spool) release(id ID) error {
	ctx := context.Background()
	for _, suffix := range []string{"-D", "-H"} {
		if err := os.Link(s.quarantinePath(id, suffix), s.path(id, suffix)); err != nil {
			if errors.Is(err, fs.ErrExist) {
				err = fmt.Errorf("message %s is already in the queue", id)
			}
			if suffix == "-H" {
				removeAll(s.path(id, "-D"))
			}
			return fmt.Errorf("spool: release %s: %w", id, err)
		}
		// -H must not become durable before -D does.
		if err := s.syncDir(ctx, s.inputDir(id)); err != nil {
			return fmt.Errorf("spool: release %s: %w", id, err)
		}
	}
	return s.removeQuarantined(id)
}

// quarantineEnvelope reads a quarantined message's -H.
func (s *Spool) quarantineEnvelope(id ID) (*Envelope, error) {
	b, err := s.QuarantineHeaderFile(id)
	if err != nil {
		return nil, err
	}
	env, err := ParseHeaderFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", s.quarantinePath(id, "-H"), err)
	}
	if env.ID != id {
		return nil, fmt.Errorf("spool: %s: line 1: file is for message %s", s.quarantinePath(id, "-H"), env.ID)
	}
	return env, nil
}

// pendingFor is the recipient of env's pending ones that rcpt names (any
// case), or ErrNotFound: the message is not in quarantine for rcpt.
func pendingFor(env *Envelope, rcpt string) (string, error) {
	for _, r := range env.Pending() {
		if strings.EqualFold(r, rcpt) {
			return r, nil
		}
	}
	return "", fmt.Errorf("spool: message %s is not in quarantine for %s: %w", env.ID, rcpt, ErrNotFound)
}

// QuarantineReleaseFor queues a quarantined message for one of its
// pending recipients alone and returns the envelope of what was queued;
// the quarantine keeps it for the others. While others are pending the
// queued message is a new copy (a new ID, the same headers, body, sender
// and received time) and rcpt is marked done in the quarantined -H; for
// the last one the message itself moves into the queue, as
// QuarantineRelease does. The copy is committed before the -H is
// rewritten: a crash between the two leaves rcpt listed in quarantine
// with its copy queued, so at worst it is released twice, never lost.
// Same lock and errors as QuarantineRelease; ErrNotFound also when rcpt
// is not pending.
func (s *Spool) QuarantineReleaseFor(ctx context.Context, id ID, rcpt string) (*Envelope, error) {
	f, err := s.lockQuarantined(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env, err := s.quarantineEnvelope(id)
	if err != nil {
		return nil, err
	}
	r, err := pendingFor(env, rcpt)
	if err != nil {
		return nil, err
	}
	if len(env.Pending()) == 1 {
		return env, s.release(id)
	}
	c, err := s.copyQuarantined(ctx, env, r)
	if err != nil {
		return nil, err
	}
	env.Done = append(env.Done, r)
	return c, s.rewriteQuarantined(env)
}

// copyQuarantined commits a copy of a quarantined message to the queue
// for rcpt alone.
func (s *Spool) copyQuarantined(ctx context.Context, env *Envelope, rcpt string) (*Envelope, error) {
	body, err := s.QuarantineOpenBody(env.ID)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	w, err := s.Create()
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, body); err != nil {
		return nil, errors.Join(fmt.Errorf("spool: copying quarantined message %s: %w", env.ID, err), w.Abort())
	}
	c := &Envelope{
		Sender:           env.Sender,
		Recipients:       []string{rcpt},
		Received:         env.Received,
		HeloName:         env.HeloName,
		HostAddress:      env.HostAddress,
		ReceivedProtocol: env.ReceivedProtocol,
		DeliverFirstTime: true,
		Headers:          slices.Clone(env.Headers),
	}
	if err := w.Commit(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// QuarantineDeleteFor removes one pending recipient of a quarantined
// message and returns how many are left; at none the message is gone
// from the quarantine. Same lock and errors as QuarantineDelete;
// ErrNotFound also when rcpt is not pending.
func (s *Spool) QuarantineDeleteFor(id ID, rcpt string) (int, error) {
	f, err := s.lockQuarantined(id)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	env, err := s.quarantineEnvelope(id)
	if err != nil {
		return 0, err
	}
	r, err := pendingFor(env, rcpt)
	if err != nil {
		return 0, err
	}
	env.Done = append(env.Done, r)
	left := len(env.Pending())
	if left == 0 {
		return 0, s.removeQuarantined(id)
	}
	return left, s.rewriteQuarantined(env)
}

// rewriteQuarantined replaces the -H of a quarantined message whose lock
// the caller holds, durably, by a rename: the message is never without
// its -H.
func (s *Spool) rewriteQuarantined(env *Envelope) error {
	b, err := appendHeaderFile(nil, env)
	if err != nil {
		return err
	}
	if err := writeFileDurably(s.quarantineTemp(env.ID), s.quarantinePath(env.ID, "-H"), b); err != nil {
		return err
	}
	return s.syncDir(context.Background(), s.quarantineDir(env.ID))
}

// QuarantineDelete removes a quarantined message for good. It fails with
// ErrLocked while another process handles the message.
func (s *Spool) QuarantineDelete(id ID) error {
	f, err := s.lockQuarantined(id)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.removeQuarantined(id)
}

// removeQuarantined drops the quarantine names of a message whose lock the
// caller holds: the -H first, so it leaves quarantine at once.
func (s *Spool) removeQuarantined(id ID) error {
	if err := removeAll(s.quarantinePath(id, "-H"), s.quarantinePath(id, "-D"), s.quarantinePath(id, "-R")); err != nil {
		return err
	}
	return s.syncDir(context.Background(), s.quarantineDir(id))
}
