package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// A message whose -H file does not parse can never be delivered, and left
// in input/ every queue run would read it and report it again. The first
// reader to find it (a queue run, the startup queue run, -bp, an admin
// command: every one reads through readHeader) moves its files to
// corrupt/: ID-H, ID-D, ID-J as they were, the msglog as ID-msglog, and
// writes one paniclog line. From then on the message is not in the queue.
// An admin repairs the -H there and moves the files back (see
// doc/contracts.md).

// ErrCorrupt marks an -H file that does not parse. The error Load returns
// for one wraps it, and ErrNotFound too once the message is set aside.
var ErrCorrupt = errors.New("spool format error")

// CorruptError is a message whose -H file does not parse.
type CorruptError struct {
	ID    ID
	Path  string // the -H file where it was found
	Err   error  // the parse error, a *ParseError naming the line
	Aside string // the directory its files were moved to; "" while in input/
}

func (e *CorruptError) Error() string {
	msg := fmt.Sprintf("spool format error in %s: %v", e.Path, e.Err)
	if e.Aside != "" {
		msg += "; set aside in " + e.Aside + "/"
	}
	return msg
}

func (e *CorruptError) Unwrap() []error {
	if e.Aside != "" {
		return []error{ErrCorrupt, ErrNotFound, e.Err}
	}
	return []error{ErrCorrupt, e.Err}
}

// CorruptDir is where the files of messages with a corrupt -H file go.
func (s *Spool) CorruptDir() string { return filepath.Join(s.dir, "corrupt") }

// setAside moves the files of id, whose -H failed to parse with perr, to
// corrupt/ and reports it in the paniclog, unless another process is
// handling the message (it is left for later) or has just done the same
// (then nothing is reported twice). The rename of the -H decides which
// reader reports: the message exists only while input/X/ID-H does.
func (s *Spool) setAside(id ID, perr error) error {
	hpath := s.path(id, "-H")
	cerr := &CorruptError{ID: id, Path: hpath, Err: perr}
	if !s.holds(id) {
		f, err := lockData(s.path(id, "-D"))
		switch {
		case errors.Is(err, ErrNotFound):
			// An -H without its -D: nothing holds a lock to wait for.
		case err != nil:
			return cerr // locked: its holder, or a later reader, sets it aside
		default:
			// Held until every file has moved: the -D without its -H
			// is then no orphan for another process's Open to remove.
			defer f.Close()
		}
	}
	dir := s.CorruptDir()
	if err := os.Rename(hpath, filepath.Join(dir, string(id)+"-H")); errors.Is(err, fs.ErrNotExist) {
		return notFound(id)
	} else if err != nil {
		s.panic(fmt.Sprintf("%s %v; cannot set it aside: %v", id, cerr, err))
		return cerr
	}
	cerr.Aside = dir
	var errs []error
	for _, m := range [][2]string{
		{s.path(id, "-D"), "-D"},
		{s.path(id, "-J"), "-J"},
		{s.MsglogPath(id), "-msglog"},
	} {
		if err := os.Rename(m[0], filepath.Join(dir, string(id)+m[1])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, removeAll(s.tempPath(id)), s.syncDir(context.Background(), s.inputDir(id)), fsyncDir(dir))
	msg := fmt.Sprintf("%s %v", id, cerr)
	if err := errors.Join(errs...); err != nil {
		msg += fmt.Sprintf(" (moving its other files: %v)", err)
	}
	s.panic(msg)
	return cerr
}

func (s *Spool) panic(text string) {
	if s.log != nil {
		s.log.Panic(text)
	}
}

// Corrupt returns the messages set aside in corrupt/, in arrival order.
func (s *Spool) Corrupt() ([]ID, error) {
	var ids []ID
	if _, err := eachHeader(s.CorruptDir(), func(id ID) bool {
		ids = append(ids, id)
		return true
	}); err != nil {
		return nil, err
	}
	slices.SortFunc(ids, ID.Compare)
	return ids, nil
}
