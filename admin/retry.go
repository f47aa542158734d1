package admin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"mxgate/spool"
)

// Retry is what exinext shows of one deferred recipient: the retry state
// of its message (-H) and its last deferral (the msglog's "==" line).
type Retry struct {
	ID          spool.ID
	Rcpt        string
	LastError   string    // the "==" line after the address: "R=... T=... defer (111): ..."; "" when the msglog has none
	FirstFailed time.Time // the message's first deferral
	LastTried   time.Time // the time of that line; zero when the msglog has none
	NextTry     time.Time // zero: due now
	Frozen      time.Time // zero: not frozen
}

// Retries returns the retry state of the deferred recipients that what
// names: a message ID (its pending recipients), an address (the pending
// recipients equal to it, in any case) or a domain (those in it). Only
// messages that have been deferred at least once are looked at.
func (q *Queue) Retries(what string) ([]Retry, error) {
	var ids []spool.ID
	match := func(string) bool { return true }
	switch {
	case spool.ValidID(what):
		ids = []spool.ID{spool.ID(what)}
	case strings.Contains(what, "@"):
		match = func(r string) bool { return strings.EqualFold(r, what) }
	default:
		domain := strings.TrimPrefix(what, "@")
		match = func(r string) bool { return strings.EqualFold(r[strings.LastIndexByte(r, '@')+1:], domain) }
	}
	if ids == nil {
		var err error
		if ids, err = q.Spool.List(); err != nil {
			return nil, err
		}
	}
	var out []Retry
	for _, id := range ids {
		env, err := q.Spool.Load(id)
		if errors.Is(err, spool.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("message %s: %w", id, err)
		}
		if env.FirstFailed.IsZero() {
			continue
		}
		var rcpts []string
		for _, r := range env.Pending() {
			if match(r) {
				rcpts = append(rcpts, r)
			}
		}
		if len(rcpts) == 0 {
			continue
		}
		last, err := q.lastDeferrals(id)
		if err != nil {
			return out, err
		}
		for _, r := range rcpts {
			d := last[r]
			out = append(out, Retry{ID: id, Rcpt: r, LastError: d.text, LastTried: d.at,
				FirstFailed: env.FirstFailed, NextTry: env.NextTry, Frozen: env.Frozen})
		}
	}
	return out, nil
}

type deferral struct {
	at   time.Time
	text string
}

// lastDeferrals reads a message's msglog for the last "== ADDR ..." line
// of each recipient. A message without a msglog has none.
func (q *Queue) lastDeferrals(id spool.ID) (map[string]deferral, error) {
	last := map[string]deferral{}
	f, err := q.Spool.OpenFile(id, spool.MsglogFile)
	if errors.Is(err, fs.ErrNotExist) {
		return last, nil
	}
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", id, err)
	}
	defer f.Close()
	return last, scanDeferrals(f, last)
}

// scanDeferrals reads msglog lines, "2006-01-02 15:04:05 == ADDR REST",
// into last.
func scanDeferrals(r io.Reader, last map[string]deferral) error {
	const stamp = "2006-01-02 15:04:05 "
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < len(stamp) || !strings.HasPrefix(line[len(stamp):], "== ") {
			continue
		}
		at, err := time.ParseInLocation(stamp[:len(stamp)-1], line[:len(stamp)-1], time.Local)
		if err != nil {
			continue
		}
		rcpt, rest, ok := strings.Cut(line[len(stamp)+3:], " ")
		if ok {
			last[rcpt] = deferral{at: at, text: rest}
		}
	}
	return sc.Err()
}

// FormatRetryTime is how exinext writes a time: "01-May-2024 12:00:00".
func FormatRetryTime(t time.Time) string { return t.Format("02-Jan-2006 15:04:05") }
