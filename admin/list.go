// Package admin owns what an administrator does to the queue from the
// command line, in Exim's words: the -bp listing and count, the raw views
// of a message's files (-Mvl, -Mvh, -Mvb), the operations on single
// messages (-Mrm, -Mf, -Mt, -Mg, -Mar, -Mes, and readying a message for
// -M), the selection of -R and the retry times exinext shows. It works on a
// live spool beside a running daemon: it reads -H files, which are only
// ever replaced by rename, and changes a message only under its lock.
package admin

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"time"

	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/spool"
)

// Queue is the administrator's handle on one spool.
type Queue struct {
	Spool *spool.Spool
	Log   *mainlog.Logger
	User  string // who acts, as the mainlog names them ("frozen by root")
	// Hostname names this MTA in the bounce -Mg sends (Mailer-Daemon@Hostname).
	Hostname string
	Now      func() time.Time // nil: time.Now; tests pin the ages -bp prints
	// Bus gets an Admin event per action (with User and Reason), and the
	// Completed, Delivery and Bounce events of a removal or -Mg; nil
	// emits nothing.
	Bus *event.Bus
	// Reason is why the administrator acts, when they gave one (the
	// console asks for it): the Reason of the Admin events.
	Reason string
}

// emit is the Admin event of action on id; what adds to q.Reason (the
// hold a release or drop was of).
func (q *Queue) emit(id spool.ID, action, what string) {
	if !q.Bus.Enabled() {
		return
	}
	reason := q.Reason
	if what != "" {
		reason = strings.TrimPrefix(reason+"; "+what, "; ")
	}
	q.Bus.Emit(event.Event{Kind: event.Admin, ID: string(id), Action: action, User: q.User, Reason: reason})
}

// completed is the Completed event of a message an action removed.
func (q *Queue) completed(id spool.ID) {
	q.Bus.Emit(event.Event{Kind: event.Completed, ID: string(id)})
}

// ErrInvalidID is returned for an argument that is not a message ID; it
// never reaches the filesystem.
var ErrInvalidID = errors.New("not a message ID")

func (q *Queue) now() time.Time {
	if q.Now != nil {
		return q.Now()
	}
	return time.Now()
}

// parseID checks an ID given on the command line.
func parseID(arg string) (spool.ID, error) {
	if !spool.ValidID(arg) {
		return "", fmt.Errorf("%q: %w (want TTTTTT-PPPPPP-SS)", arg, ErrInvalidID)
	}
	return spool.ID(arg), nil
}

// notInSpool is the error for a well-formed id the spool does not hold.
func notInSpool(id spool.ID) error {
	return fmt.Errorf("message %s is not in the spool: %w", id, spool.ErrNotFound)
}

// missing is notInSpool for a message Load did not find, saying why when
// the reason is that Load has just set it aside for its corrupt -H file.
func missing(id spool.ID, err error) error {
	var ce *spool.CorruptError
	if errors.As(err, &ce) {
		return fmt.Errorf("message %s is not in the spool: %w", id, err)
	}
	return notInSpool(id)
}

// List writes the whole queue in Exim's -bp format, in arrival order.
// undelivered (-bpu) leaves out the recipients already done. A message
// that goes away while the listing runs is left out, and so is one whose
// -H file does not parse: reading it sets it aside (spool.ErrCorrupt,
// CorruptNote says how many there are). One whose -H cannot be read, or
// that another process holds while it is unparsable, is listed with
// Exim's spool error line.
func (q *Queue) List(w io.Writer, undelivered bool) error {
	ids, err := q.Spool.List()
	if err != nil {
		return err
	}
	// Reading a message is a few system calls and a parse: the entries
	// are made in chunks by one worker per CPU and written in order, so
	// the system calls of several messages overlap, with at most two
	// chunks per worker in memory.
	workers := runtime.GOMAXPROCS(0)
	chunks := make(chan chan []byte, 2*workers)
	sem := make(chan struct{}, workers)
	stop := make(chan struct{}) // closed when w fails: read no more
	now := q.now()
	go func() {
		defer close(chunks)
		for start := 0; start < len(ids); start += listChunk {
			part := ids[start:min(start+listChunk, len(ids))]
			out := make(chan []byte, 1)
			select {
			case chunks <- out:
			case <-stop:
				return
			}
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				var b []byte
				for _, id := range part {
					env, size, err := q.load(id)
					if !errors.Is(err, spool.ErrNotFound) {
						b = q.appendEntry(b, id, env, size, err, undelivered, now)
					}
				}
				out <- b
			}()
		}
	}()
	for out := range chunks {
		if _, err := w.Write(<-out); err != nil {
			close(stop)
			for out := range chunks {
				<-out // the chunks in flight end before List returns
			}
			return err
		}
	}
	return nil
}

// listChunk is how many messages one worker of List reads at a time.
const listChunk = 256

// ListMessage writes one message's -bp entry; an invalid or absent id is
// an error.
func (q *Queue) ListMessage(w io.Writer, arg string, undelivered bool) error {
	id, err := parseID(arg)
	if err != nil {
		return err
	}
	env, size, err := q.load(id)
	if errors.Is(err, spool.ErrNotFound) {
		return missing(id, err)
	}
	_, werr := w.Write(q.appendEntry(nil, id, env, size, err, undelivered, q.now()))
	return werr
}

// Count returns the number of messages in the queue (-bpc), counted
// without reading or sorting them. Those set aside for a corrupt -H file
// are not in it.
func (q *Queue) Count() (int, error) {
	return q.Spool.Count()
}

// CorruptNote is the line an admin needs after a listing when messages
// have been set aside for a corrupt -H file: how many and where; "" when
// none have. It goes to stderr: -bp's output is Exim's, which scripts
// parse.
func (q *Queue) CorruptNote() (string, error) {
	ids, err := q.Spool.Corrupt()
	if err != nil || len(ids) == 0 {
		return "", err
	}
	what := "messages with a corrupt -H file are"
	if len(ids) == 1 {
		what = "message with a corrupt -H file is"
	}
	return fmt.Sprintf("%d %s set aside in %s (see paniclog)", len(ids), what, q.Spool.CorruptDir()), nil
}

// load reads what the listing shows of a message: its envelope with the
// journal merged, and its size as Exim counts it: the headers that are
// sent, the blank line after them and the body.
func (q *Queue) load(id spool.ID) (*spool.Envelope, int64, error) {
	env, err := q.Spool.Load(id)
	if err != nil {
		return nil, 0, err
	}
	size, err := q.Spool.Size(env)
	if err != nil {
		// Listed all the same, as Exim does: the -D may have gone
		// since the -H was read.
		size = env.HeaderSize()
	}
	return env, size, nil
}

// appendEntry appends one message's entry in the layout of Exim 4.96's
// queue_list (queue.c), which exiqgrep and other scripts parse.
func (q *Queue) appendEntry(b []byte, id spool.ID, env *spool.Envelope, size int64, loadErr error, undelivered bool, now time.Time) []byte {
	if loadErr != nil {
		// Exim prints neither age nor sender when the envelope is unreadable.
		b = append(b, FormatSize(0)...)
		b = append(b, ' ')
		b = append(b, id...)
		b = append(b, "\n    "...)
		var pe *fs.PathError
		switch {
		case errors.As(loadErr, &pe):
			b = append(b, "*** spool read error: "...)
			b = append(b, strerror(pe.Err)...)
			b = append(b, " ***"...)
		default:
			b = append(b, "*** spool format error"...)
			if n, err := q.Spool.FileSize(id, spool.HeaderFile); err == nil {
				b = append(b, ": size="...)
				b = strconv.AppendInt(b, n, 10)
			}
			b = append(b, " ***"...)
		}
		return append(b, "\n\n"...)
	}
	b = append(b, FormatAge(now.Sub(env.Received))...)
	b = append(b, ' ')
	b = append(b, FormatSize(size)...)
	b = append(b, ' ')
	b = append(b, id...)
	b = append(b, " <"...)
	b = append(b, env.Sender...)
	b = append(b, '>')
	if !env.Frozen.IsZero() {
		b = append(b, " *** frozen ***"...)
	}
	b = append(b, '\n')
	done := make(map[string]bool, len(env.Done))
	for _, d := range env.Done {
		done[d] = true
	}
	for _, r := range env.Recipients {
		switch {
		case !done[r]:
			b = append(b, "          "...)
		case undelivered:
			continue
		default:
			b = append(b, "        D "...)
		}
		b = append(b, r...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// strerror renders an errno the way C's strerror does ("Permission
// denied"): Go spells the same text in lower case.
func strerror(err error) string {
	s := err.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

// FormatAge is a message's time on the queue as -bp shows it: whole
// minutes up to 90, then hours (rounded) up to 72, then days (rounded).
func FormatAge(d time.Duration) string {
	m := int64(d / time.Minute) // truncated, as C's integer division
	switch {
	case m <= 90:
		return fmt.Sprintf("%2dm", m)
	case (m+30)/60 <= 72:
		return fmt.Sprintf("%2dh", (m+30)/60)
	default:
		return fmt.Sprintf("%2dd", ((m+30)/60+12)/24)
	}
}

// FormatSize is Exim's string_format_size: five columns, blank for 0.
func FormatSize(n int64) string {
	const k, m = 1024, 1024 * 1024
	switch {
	case n == 0:
		return "     "
	case n < k:
		return fmt.Sprintf("%5d", n)
	case n < 10*k:
		return fmt.Sprintf("%4.1fK", float64(n)/k)
	case n < m:
		return fmt.Sprintf("%4dK", (n+512)/k)
	case n < 10*m:
		return fmt.Sprintf("%4.1fM", float64(n)/m)
	default:
		return fmt.Sprintf("%4dM", (n+512*k)/m)
	}
}
