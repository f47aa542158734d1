package console

import (
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mxgate/tracking"
)

// verdicts are the choices of the search form and the dashboard's totals.
var verdicts = []string{
	tracking.Accepted, tracking.Delivered, tracking.Deferred, tracking.Bounced,
	tracking.Rejected, tracking.Tempfailed, tracking.Quarantined, tracking.Discarded,
	tracking.Released, tracking.Deleted, tracking.Removed,
}

// pageSize is the rows of one page of search results.
const pageSize = 50

type trackingData struct {
	Off      bool // no tracking database
	Verdicts []string
	Form     url.Values
	Searched bool
	Error    string
	Rows     []tracking.Message
	// Older is the next page's query, "" on the last: already encoded,
	// so the template must not escape it again (a string would have its
	// "=" and "&" escaped, and the link would search for nothing).
	Older template.URL
}

// parseWhen reads a search's since/until: an age ("24h", "7d") before
// now, or a time ("2006-01-02T15:04", "2006-01-02"); "" is open.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("bad time " + strconv.Quote(s) + ": want an age (24h, 7d) or 2006-01-02T15:04")
}

// query is the search form as a tracking.Query.
func query(f url.Values, now time.Time) (tracking.Query, error) {
	q := tracking.Query{
		Sender: strings.TrimSpace(f.Get("sender")), Recipient: strings.TrimSpace(f.Get("rcpt")),
		ID: strings.TrimSpace(f.Get("id")), MessageID: strings.TrimSpace(f.Get("msgid")),
		Client: strings.TrimSpace(f.Get("client")), Verdict: f.Get("verdict"), Limit: pageSize,
	}
	var err error
	if q.Since, err = parseWhen(f.Get("since"), now); err != nil {
		return q, err
	}
	if q.Until, err = parseWhen(f.Get("until"), now); err != nil {
		return q, err
	}
	if b := f.Get("before"); b != "" {
		if q.Before, err = strconv.ParseInt(b, 10, 64); err != nil || q.Before <= 0 {
			return q, errors.New("bad page")
		}
	}
	return q, nil
}

func (c *Console) trackingSearch(w http.ResponseWriter, r *http.Request) {
	d := trackingData{Off: c.o.Tracking == nil, Verdicts: verdicts, Form: r.URL.Query()}
	if d.Off || len(r.URL.Query()) == 0 {
		c.render(w, r, http.StatusOK, "tracking", "Tracking", d)
		return
	}
	d.Searched = true
	q, err := query(d.Form, c.o.Now())
	if err == nil {
		d.Rows, err = c.o.Tracking.Search(r.Context(), q)
	}
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "tracking", "Tracking", d)
		return
	}
	if len(d.Rows) == pageSize {
		next := url.Values{}
		for k, v := range d.Form {
			next[k] = v
		}
		next.Set("before", strconv.FormatInt(d.Rows[len(d.Rows)-1].Key, 10))
		d.Older = template.URL(next.Encode())
	}
	c.render(w, r, http.StatusOK, "tracking", "Tracking", d)
}

type trackingMessageData struct {
	Message *tracking.Message
	Steps   []tracking.Step
}

func (c *Console) trackingMessage(w http.ResponseWriter, r *http.Request) {
	if c.o.Tracking == nil {
		c.fail(w, r, http.StatusNotFound, "Message tracking is off ([tracking] url = \"none\").")
		return
	}
	key := r.FormValue("key")
	m, steps, err := c.o.Tracking.Get(r.Context(), key)
	if errors.Is(err, tracking.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "No message "+key+" in the tracking database.")
		return
	} else if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "Tracking database: "+err.Error())
		return
	}
	c.render(w, r, http.StatusOK, "tracking_message", "Message "+key, trackingMessageData{Message: m, Steps: steps})
}

// messageKey is how the message page names a row: its spool ID, or its
// key when it has none (a refused attempt).
func messageKey(m *tracking.Message) string {
	if m.ID != "" {
		return m.ID
	}
	return "#" + strconv.FormatInt(m.Key, 10)
}

type dashboardData struct {
	Off      bool
	Verdicts []string
	Totals   map[string]int64
	Queue    int
	Oldest   time.Duration
}

// dashboard renders the totals of the last 24 hours on the server, so
// they are there before the script's first poll; the script then keeps
// them and the charts current.
func (c *Console) dashboard(w http.ResponseWriter, r *http.Request) {
	d := dashboardData{Off: c.o.Tracking == nil, Verdicts: verdicts}
	d.Queue, d.Oldest = c.queueSize()
	if !d.Off {
		now := c.o.Now()
		if st, err := c.o.Tracking.Stats(r.Context(), now.Add(-24*time.Hour), now); err == nil {
			d.Totals = st.Totals
		} else {
			c.o.Log.Panic("console: tracking statistics: " + err.Error())
		}
	}
	c.render(w, r, http.StatusOK, "dashboard", "Dashboard", d)
}

// queueSize is the number of queued messages and the oldest one's age.
func (c *Console) queueSize() (int, time.Duration) {
	ids, err := c.o.Queue.Spool.List()
	if err != nil {
		return 0, 0
	}
	for _, id := range ids {
		if env, err := c.o.Queue.Spool.Load(id); err == nil {
			return len(ids), c.o.Now().Sub(env.Received)
		}
	}
	return len(ids), 0
}

// statsReply is /api/stats: the tracking statistics and the queue.
type statsReply struct {
	Tracking      bool            `json:"tracking"`
	Stats         *tracking.Stats `json:"stats,omitempty"`
	Queue         int             `json:"queue"`
	OldestSeconds float64         `json:"oldest_seconds"`
	Verdicts      []string        `json:"verdicts"`
}

// maxSince bounds the period /api/stats covers.
const maxSince = 90 * 24 * time.Hour

func (c *Console) apiStats(w http.ResponseWriter, r *http.Request) {
	since := 24 * time.Hour
	if s := r.FormValue("since"); s != "" {
		now := c.o.Now()
		t, err := parseWhen(s, now)
		if err != nil || t.IsZero() || now.Sub(t) > maxSince || !now.After(t) {
			http.Error(w, "bad since: want an age up to 90d (24h, 7d)", http.StatusBadRequest)
			return
		}
		since = now.Sub(t)
	}
	rep := statsReply{Tracking: c.o.Tracking != nil, Verdicts: verdicts}
	n, oldest := c.queueSize()
	rep.Queue, rep.OldestSeconds = n, oldest.Seconds()
	if rep.Tracking {
		now := c.o.Now()
		st, err := c.o.Tracking.Stats(r.Context(), now.Add(-since), now)
		if err != nil {
			http.Error(w, "tracking statistics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		rep.Stats = st
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(rep)
}
