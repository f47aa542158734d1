package admin

import (
	"errors"
	"time"

	"mxgate/spool"
)

// Entry is one queued message as a program wants it: what -bp prints,
// as data (the web console's queue browser).
type Entry struct {
	ID         spool.ID
	Received   time.Time
	Size       int64 // as -bp counts it
	Sender     string
	Recipients []string
	Done       []string // recipients delivered or failed for good
	Frozen     bool
	// Err is why the message could not be read (-bp's "*** spool
	// read error ***"); the other fields but ID are then zero.
	Err error
}

// Pending returns the recipients not yet done, as the spool counts them.
func (e *Entry) Pending() []string {
	return (&spool.Envelope{Recipients: e.Recipients, Done: e.Done}).Pending()
}

// Entries returns the queue in arrival order, as List shows it: a message
// that goes away meanwhile is left out, one whose -H does not parse is
// set aside by reading it (spool.ErrCorrupt) and left out too.
func (q *Queue) Entries() ([]Entry, error) {
	ids, err := q.Spool.List()
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, len(ids))
	for _, id := range ids {
		env, size, err := q.load(id)
		switch {
		case errors.Is(err, spool.ErrNotFound):
			continue
		case err != nil:
			entries = append(entries, Entry{ID: id, Err: err})
			continue
		}
		entries = append(entries, Entry{
			ID: id, Received: env.Received, Size: size, Sender: env.Sender,
			Recipients: env.Recipients, Done: env.Done, Frozen: !env.Frozen.IsZero(),
		})
	}
	return entries, nil
}
