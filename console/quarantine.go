package console

import (
	"net/http"
	"strings"
	"time"

	"mxgate/spool"
)

type quarantineRow struct {
	ID          spool.ID
	Quarantined time.Time
	Sender      string
	Recipients  []string
	Subject     string
	Reason      string
	Size        int64
	Score       float64
	Scored      bool
}

type quarantineData struct {
	Rows  []quarantineRow
	Total int
}

// subject is a message's Subject field, unfolded; "" without one.
func subject(env *spool.Envelope) string {
	for _, h := range env.Headers {
		if h.Type != '*' && strings.EqualFold(h.Name(), "Subject") {
			return h.UnfoldedValue()
		}
	}
	return ""
}

// quarantineList shows the quarantine, newest first; the spam score is
// the tracking database's, when it has the message.
func (c *Console) quarantineList(w http.ResponseWriter, r *http.Request) {
	list, err := c.o.Queue.Spool.QuarantineList()
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "Reading the quarantine: "+err.Error())
		return
	}
	d := quarantineData{Total: len(list)}
	for i := len(list) - 1; i >= 0 && len(d.Rows) < maxRows; i-- {
		m := list[i]
		row := quarantineRow{
			ID: m.Envelope.ID, Quarantined: m.Quarantined, Sender: m.Envelope.Sender, Recipients: m.Envelope.Recipients,
			Subject: subject(m.Envelope), Reason: m.Reason, Size: m.Size,
		}
		if c.o.Tracking != nil {
			if msg, _, err := c.o.Tracking.Get(r.Context(), string(row.ID)); err == nil {
				row.Score, row.Scored = msg.Score, msg.Scored
			}
		}
		d.Rows = append(d.Rows, row)
	}
	c.render(w, r, http.StatusOK, "quarantine", "Quarantine", d)
}

type quarantineMessageData struct {
	quarantineRow
	Text View // the -H file, then the -D file
}

func (c *Console) quarantineMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !spool.ValidID(id) {
		c.fail(w, r, http.StatusNotFound, "Not a message ID.")
		return
	}
	m, err := c.o.Queue.Spool.QuarantineLoad(spool.ID(id))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, "Message "+id+" is not in quarantine.")
		return
	}
	d := quarantineMessageData{quarantineRow: quarantineRow{
		ID: m.Envelope.ID, Quarantined: m.Quarantined, Sender: m.Envelope.Sender, Recipients: m.Envelope.Recipients,
		Subject: subject(m.Envelope), Reason: m.Reason, Size: m.Size,
	}}
	text := &capped{max: 2 * maxView}
	if err := c.o.Queue.QuarantineShow(text, id); err != nil {
		text.Write([]byte("(" + err.Error() + ")"))
	}
	d.Text = text.view()
	c.render(w, r, http.StatusOK, "quarantine_message", "Quarantined "+id, d)
}

// quarantineOp releases or deletes a quarantined message; the admin must
// say why, and the mainlog has who and why.
func (c *Console) quarantineOp(w http.ResponseWriter, r *http.Request) {
	ss := current(r)
	id, op := r.PathValue("id"), r.PathValue("op")
	reason := oneLine(r.PostFormValue("reason"))
	if op != "release" && op != "delete" {
		c.fail(w, r, http.StatusNotFound, "No such operation.")
		return
	}
	if reason == "" {
		c.done(w, r, "/quarantine/"+id, "", errNoReason)
		return
	}
	q := c.queue(ss.user)
	q.Reason = reason // in the mainlog line and the Admin event
	var line string
	var err error
	if op == "release" {
		var sid spool.ID
		if sid, line, err = q.QuarantineRelease(id); err == nil {
			c.o.Deliver(sid)
		}
	} else {
		line, err = q.QuarantineDelete(id)
	}
	to := "/quarantine"
	if err != nil {
		to += "/" + id
	}
	c.done(w, r, to, line, err)
}

type consoleError string

func (e consoleError) Error() string { return string(e) }

const errNoReason = consoleError("Give a reason: the mainlog records it with your name.")

// oneLine is a reason as the mainlog can hold it: one line, trimmed,
// at most 200 characters.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200])
	}
	return s
}
