package spool

import (
	"fmt"
	"io"
	"os"
	"time"

	"mxgate/mainlog"
)

// File names one of a queued message's files, for the raw views an
// administrator asks for (Exim's -Mvl, -Mvh, -Mvb) and for their sizes.
// Only this package knows where they are.
type File int

const (
	MsglogFile  File = iota // msglog/X/ID
	HeaderFile              // input/X/ID-H
	DataFile                // input/X/ID-D, its "ID-D" first line included
	JournalFile             // input/X/ID-J
)

// String is the file's name in Exim's words, for errors.
func (f File) String() string {
	switch f {
	case MsglogFile:
		return "msglog"
	case HeaderFile:
		return "-H file"
	case DataFile:
		return "-D file"
	case JournalFile:
		return "-J file"
	}
	return fmt.Sprintf("File(%d)", int(f))
}

func (s *Spool) filePath(id ID, which File) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	switch which {
	case MsglogFile:
		return s.MsglogPath(id), nil
	case HeaderFile:
		return s.path(id, "-H"), nil
	case DataFile:
		return s.path(id, "-D"), nil
	case JournalFile:
		return s.path(id, "-J"), nil
	}
	return "", fmt.Errorf("spool: unknown file %d", int(which))
}

// OpenFile opens one of a message's files as it is on disk, for a raw
// view. It takes no lock: -H is only ever replaced whole, by rename. A
// missing file is an error wrapping fs.ErrNotExist (a message may lack
// its msglog or journal); an invalid id wraps ErrNotFound.
func (s *Spool) OpenFile(id ID, which File) (io.ReadCloser, error) {
	path, err := s.filePath(id, which)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err // the *fs.PathError names the file
	}
	return f, nil
}

// FileSize is the size in bytes of one of a message's files; a missing
// file is an error wrapping fs.ErrNotExist.
func (s *Spool) FileSize(id ID, which File) (int64, error) {
	path, err := s.filePath(id, which)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err // the *fs.PathError names the file
	}
	return fi.Size(), nil
}

// BodySize is the size of the message body: the -D file without its
// "ID-D" line. A missing -D file is an error wrapping fs.ErrNotExist.
func (s *Spool) BodySize(id ID) (int64, error) {
	n, err := s.FileSize(id, DataFile)
	if err != nil {
		return 0, err
	}
	return max(n-dataStart, 0), nil
}

// Size is the message's size as Exim's -bp counts it: the headers not
// marked deleted, the blank line after them, and the body. env is the
// message's envelope (from Load).
func (s *Spool) Size(env *Envelope) (int64, error) {
	body, err := s.BodySize(env.ID)
	if err != nil {
		return 0, err
	}
	return env.HeaderSize() + 1 + body, nil
}

// Count returns the number of messages in the queue (the -H files of
// input/), counted without reading or sorting them: -bpc on a large
// queue.
func (s *Spool) Count() (int, error) {
	n := 0
	err := s.Walk("", func(ID) bool {
		n++
		return true
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// MsglogRaw appends line to the message's msglog as it is, without a
// timestamp (escaped onto one line), as Exim writes its "*** Frozen" line
// there.
func (s *Spool) MsglogRaw(id ID, line string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return s.appendMsglog(id, append(mainlog.AppendEscaped(nil, line), '\n'))
}

func (s *Spool) appendMsglog(id ID, line []byte) error {
	f, err := os.OpenFile(s.MsglogPath(id), os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: msglog %s: %w", id, err)
	}
	return nil
}

// msglogLine is a timestamped msglog line: "2006-01-02 15:04:05 text".
func msglogLine(t time.Time, text string) []byte {
	line := t.AppendFormat(nil, "2006-01-02 15:04:05 ")
	return append(mainlog.AppendEscaped(line, text), '\n')
}

// TruncatedError is a -D file shorter than its -H file says the body is:
// Have bytes of body where the -H records Want bytes or, in a file
// written before -body_size, Want lines (each at least one byte).
type TruncatedError struct {
	ID         ID
	Have, Want int64
	Lines      bool
}

func (e *TruncatedError) Error() string {
	unit := ""
	if e.Lines {
		unit = " lines"
	}
	return fmt.Sprintf("spool data file truncated: %d bytes, -H says %d%s", e.Have, e.Want, unit)
}

// VerifyData checks that env's -D file holds the whole body its -H
// records, before a delivery attempt sends it: a *TruncatedError when it
// is shorter. It costs one stat: the body is only as long as recorded
// once the size matches, since a commit makes the -D durable before its
// -H exists, and counting lines would read every body at every attempt.
// A file written before -body_size is checked against its line count.
func (s *Spool) VerifyData(env *Envelope) error {
	have, err := s.BodySize(env.ID)
	if err != nil {
		return err
	}
	want, lines := env.BodySize, false
	if want == 0 {
		want, lines = int64(env.BodyLinecount), true
	}
	if have < want {
		return &TruncatedError{ID: env.ID, Have: have, Want: want, Lines: lines}
	}
	return nil
}
