package console

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"mxgate/admin"
	"mxgate/spool"
)

// maxRows bounds a listing's rows; a search narrows it.
const maxRows = 1000

// maxView bounds what a message page shows of each of its files.
const maxView = 256 << 10

// capped keeps the first max bytes written to it and counts the rest, so
// a huge message costs the page no more than max.
type capped struct {
	b    []byte
	max  int
	more int64
}

func (c *capped) Write(p []byte) (int, error) {
	n := min(len(p), c.max-len(c.b))
	c.b = append(c.b, p[:n]...)
	c.more += int64(len(p) - n)
	return len(p), nil
}

// View is one of a message's files as a page shows it.
type View struct {
	Text      string
	Truncated int64 // bytes left out
}

func (c *capped) view() View { return View{Text: string(c.b), Truncated: c.more} }

type queueRow struct {
	admin.Entry
	Age     time.Duration
	Pending []string
}

type queueData struct {
	Search  string
	Rows    []queueRow
	Total   int // in the queue
	Matched int // by the search; Rows holds at most maxRows of them
}

func (c *Console) queueList(w http.ResponseWriter, r *http.Request) {
	entries, err := c.o.Queue.Entries()
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "Reading the queue: "+err.Error())
		return
	}
	d := queueData{Search: strings.TrimSpace(r.FormValue("q")), Total: len(entries)}
	needle := strings.ToLower(d.Search)
	now := c.o.Now()
	for _, e := range entries {
		if needle != "" && !entryMatches(&e, needle) {
			continue
		}
		d.Matched++
		if len(d.Rows) < maxRows {
			d.Rows = append(d.Rows, queueRow{Entry: e, Age: now.Sub(e.Received), Pending: e.Pending()})
		}
	}
	c.render(w, r, http.StatusOK, "queue", "Queue", d)
}

// entryMatches: the search is a substring of the ID, the sender or a
// recipient, in any case.
func entryMatches(e *admin.Entry, needle string) bool {
	if strings.Contains(strings.ToLower(string(e.ID)), needle) || strings.Contains(strings.ToLower(e.Sender), needle) {
		return true
	}
	for _, rc := range e.Recipients {
		if strings.Contains(strings.ToLower(rc), needle) {
			return true
		}
	}
	return false
}

type queueMessageData struct {
	ID       spool.ID
	Envelope *spool.Envelope
	Age      time.Duration
	Frozen   bool
	Header   View // the -H file, as -Mvh shows it
	Body     View // the -D file, as -Mvb shows it
}

func (c *Console) queueMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !spool.ValidID(id) {
		c.fail(w, r, http.StatusNotFound, "Not a message ID.")
		return
	}
	env, err := c.o.Queue.Spool.Load(spool.ID(id))
	if errors.Is(err, spool.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "Message "+id+" is not in the queue.")
		return
	} else if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "Message "+id+": "+err.Error())
		return
	}
	d := queueMessageData{ID: env.ID, Envelope: env, Age: c.o.Now().Sub(env.Received), Frozen: !env.Frozen.IsZero()}
	h, b := &capped{max: maxView}, &capped{max: maxView}
	if err := c.o.Queue.View(h, id, spool.HeaderFile); err != nil {
		h.Write([]byte("(" + err.Error() + ")"))
	}
	if err := c.o.Queue.View(b, id, spool.DataFile); err != nil {
		b.Write([]byte("(" + err.Error() + ")"))
	}
	d.Header, d.Body = h.view(), b.view()
	c.render(w, r, http.StatusOK, "queue_message", "Message "+id, d)
}

// queueOp is one of the CLI's operations on a queued message, by the
// admin logged in: the same locks, the same mainlog lines with their name.
func (c *Console) queueOp(w http.ResponseWriter, r *http.Request) {
	ss := current(r)
	id, op := r.PathValue("id"), r.PathValue("op")
	q := c.queue(ss.user)
	var line string
	var err error
	back := "/queue/" + id
	switch op {
	case "freeze":
		line, err = q.Freeze(id)
	case "thaw":
		line, err = q.Thaw(id)
	case "deliver":
		var sid spool.ID
		if sid, err = q.MakeDue(id); err == nil {
			q.Log.Main(string(sid), "delivery forced by "+ss.user)
			c.o.Deliver(sid)
			line = "Message " + id + " is being delivered now"
		}
	case "remove":
		line, err = q.Remove(id)
		back = "/queue"
	default:
		c.fail(w, r, http.StatusNotFound, "No such operation.")
		return
	}
	c.done(w, r, back, line, err)
}

// done ends an action: its line (or error) for the next page, and a
// redirect there, so a reload does not repeat the action.
func (c *Console) done(w http.ResponseWriter, r *http.Request, to, line string, err error) {
	if err != nil {
		c.sessions.setFlash(current(r), err.Error(), true)
	} else {
		c.sessions.setFlash(current(r), line, false)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
