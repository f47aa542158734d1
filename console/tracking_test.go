package console

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/tracking"
)

// withTracking gives f's console a real SQLite tracking store holding
// evs, stamped a second apart from ten minutes before f's clock.
func (f *fixture) withTracking(evs ...event.Event) *tracking.Store {
	f.t.Helper()
	s, err := tracking.Open(context.Background(), tracking.Options{URL: "sqlite:" + filepath.Join(f.t.TempDir(), "tracking.db"), Node: "mx.test", Queue: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	start := f.clock().Add(-10 * time.Minute)
	for i := range evs {
		evs[i].Time = start.Add(time.Duration(i) * time.Second)
		s.Event(&evs[i])
	}
	if err := s.Flush(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.c.o.Tracking = s
	return s
}

// accepted is the events of one message accepted over SMTP.
func accepted(conn, id, sender, subject string) []event.Event {
	return []event.Event{
		{Kind: event.Connect, Conn: conn, Client: netip.MustParseAddr("192.0.2.7"), Listener: "smtp"},
		{Kind: event.Accepted, Conn: conn, Txn: 1, ID: id, Sender: sender, Recipients: []string{"bob@dest.test"}, Size: 1234,
			Subject: subject, Source: "smtp"},
		{Kind: event.Disconnect, Conn: conn},
	}
}

// refused is an attempt whose one RCPT a DNS list refused.
func refused(conn, sender string) []event.Event {
	return []event.Event{
		{Kind: event.Connect, Conn: conn, Client: netip.MustParseAddr("198.51.100.9"), Listener: "smtp"},
		{Kind: event.Refused, Conn: conn, Txn: 1, Stage: "rcpt", Sender: sender, Recipient: "bob@dest.test", Code: 554, Enhanced: "5.7.1",
			Text: "Service unavailable; client [198.51.100.9] blocked using bl.example", ReasonCode: "rbl", Check: "rbl", List: "bl.example"},
		{Kind: event.Disconnect, Conn: conn},
	}
}

func TestTrackingPages(t *testing.T) {
	f := newFixture(t)
	var evs []event.Event
	evs = append(evs, accepted("c1", "1abcde-000001-AB", "alice@example.com", "<script>alert(1)</script>")...)
	evs = append(evs, accepted("c2", "1abcde-000002-AB", "alice@example.com", "second")...)
	evs = append(evs, refused("c3", "spammer@bad.example")...)
	f.withTracking(evs...)
	c, _ := f.loggedIn()

	for _, s := range []struct {
		name, query string
		status      int
		want        []string
		not         []string
	}{
		{"by sender", "sender=spammer@bad.example", 200, []string{"Service unavailable; client [198.51.100.9] blocked using bl.example", "rejected", "&lt;spammer@bad.example&gt;"}, []string{"alice@example.com"}},
		{"by domain", "sender=@example.com&since=24h", 200, []string{"1abcde-000001-AB", "1abcde-000002-AB"}, []string{"spammer"}},
		{"by verdict", "verdict=rejected", 200, []string{"spammer@bad.example"}, []string{"1abcde-000001-AB"}},
		{"nothing", "sender=nobody@example.com", 200, []string{"Nothing matches."}, nil},
		{"bad since", "since=yesterday", 400, []string{"bad time &#34;yesterday&#34;"}, nil},
	} {
		t.Run(s.name, func(t *testing.T) {
			r := f.do(c, "GET", "/tracking?"+s.query, nil, nil)
			if r.status != s.status {
				t.Errorf("status %d, want %d", r.status, s.status)
			}
			for _, w := range s.want {
				if !strings.Contains(r.body, w) {
					t.Errorf("page lacks %q:\n%s", w, r.body)
				}
			}
			for _, w := range s.not {
				if strings.Contains(r.body, w) {
					t.Errorf("page has %q", w)
				}
			}
		})
	}

	// A refused attempt has no ID: its page is named by its key.
	list := f.do(c, "GET", "/tracking?sender=spammer@bad.example", nil, nil).body
	m := regexp.MustCompile(`href="/tracking/message\?key=(%23\d+)"`).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("no link to the attempt:\n%s", list)
	}
	page := f.do(c, "GET", "/tracking/message?key="+m[1], nil, nil).body
	for _, w := range []string{`id="reason">554 5.7.1 Service unavailable; client [198.51.100.9] blocked using bl.example`, "bl.example", `id="timeline"`} {
		if !strings.Contains(page, w) {
			t.Errorf("attempt page lacks %q:\n%s", w, page)
		}
	}
	page = f.do(c, "GET", "/tracking/message?key=1abcde-000001-AB", nil, nil).body
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("message page does not escape the subject:\n%s", page)
	}
	if r := f.do(c, "GET", "/tracking/message?key=1abcde-000009-AB", nil, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown message: %d", r.status)
	}
}

func TestDashboard(t *testing.T) {
	f := newFixture(t)
	var evs []event.Event
	evs = append(evs, accepted("c1", "1abcde-000001-AB", "alice@example.com", "one")...)
	evs = append(evs, accepted("c2", "1abcde-000002-AB", "alice@example.com", "two")...)
	evs = append(evs, refused("c3", "spammer@bad.example")...)
	f.withTracking(evs...)
	f.queued("q@example.test", []string{"r@example.test"})
	c, _ := f.loggedIn()

	page := f.do(c, "GET", "/", nil, nil).body
	for _, w := range []string{`<td data-verdict="accepted">2</td>`, `<td data-verdict="rejected">1</td>`, `<td data-verdict="quarantined">0</td>`,
		`id="queue-size">1<`, `id="queue-oldest">60m<`, `src="/static/dashboard.js"`, `name="csrf-token" content="`} {
		if !strings.Contains(page, w) {
			t.Errorf("dashboard lacks %q", w)
		}
	}
	var rep statsReply
	r := f.do(c, "GET", "/api/stats?since=1h", nil, nil)
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Fatalf("/api/stats: %v\n%s", err, r.body)
	}
	if !rep.Tracking || rep.Queue != 1 || rep.OldestSeconds != 3600 || rep.Stats.Totals["accepted"] != 2 || rep.Stats.Totals["rejected"] != 1 {
		t.Errorf("/api/stats = %+v", rep)
	}
	if len(rep.Stats.TopSenders) == 0 || rep.Stats.TopSenders[0].Key != "alice@example.com" || rep.Stats.TopSenders[0].N != 2 {
		t.Errorf("top senders %+v", rep.Stats.TopSenders)
	}
	for _, bad := range []string{"forever", "100d", "-1h"} {
		if r := f.do(c, "GET", "/api/stats?since="+url.QueryEscape(bad), nil, nil); r.status != http.StatusBadRequest {
			t.Errorf("since=%s: %d", bad, r.status)
		}
	}
}

// Without tracking the pages say so rather than fail.
func TestTrackingOff(t *testing.T) {
	f := newFixture(t)
	c, _ := f.loggedIn()
	for _, path := range []string{"/", "/tracking", "/tracking?sender=a@b"} {
		if r := f.do(c, "GET", path, nil, nil); r.status != 200 || !strings.Contains(r.body, `id="tracking-off"`) {
			t.Errorf("GET %s: %d\n%s", path, r.status, r.body)
		}
	}
	var rep statsReply
	json.Unmarshal([]byte(f.do(c, "GET", "/api/stats", nil, nil).body), &rep)
	if rep.Tracking || rep.Stats != nil {
		t.Errorf("/api/stats without tracking: %+v", rep)
	}
}

// The static files are served, without a session, with their types.
func TestStatic(t *testing.T) {
	f := newFixture(t)
	for path, ctype := range map[string]string{
		"/static/console.css": "text/css", "/static/console.js": "text/javascript", "/static/dashboard.js": "text/javascript",
		"/static/vendor/uplot/uPlot.iife.min.js": "text/javascript", "/static/vendor/uplot/uPlot.min.css": "text/css",
	} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// The "Older" link of a full page of results leads to the next page of
// the same search.
func TestTrackingPaging(t *testing.T) {
	f := newFixture(t)
	var evs []event.Event
	for i := range pageSize + 5 {
		evs = append(evs, accepted(fmt.Sprint("c", i), fmt.Sprintf("1abcde-%06d-AB", i), "alice@example.com", "s")...)
	}
	evs = append(evs, accepted("other", "1abcde-999999-AB", "bob@example.com", "s")...)
	f.withTracking(evs...)
	c, _ := f.loggedIn()
	ids := regexp.MustCompile(`<td class="mono">(1abcde-\d+-AB)</td>`)
	first := f.do(c, "GET", "/tracking?sender=alice@example.com", nil, nil).body
	if n := len(ids.FindAllString(first, -1)); n != pageSize {
		t.Fatalf("first page: %d rows, want %d", n, pageSize)
	}
	m := regexp.MustCompile(`id="older" href="([^"]*)"`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("no link to the older results:\n%s", first)
	}
	older := f.do(c, "GET", html.UnescapeString(m[1]), nil, nil)
	var got []string
	for _, s := range ids.FindAllStringSubmatch(older.body, -1) {
		got = append(got, s[1])
	}
	want := []string{"1abcde-000004-AB", "1abcde-000003-AB", "1abcde-000002-AB", "1abcde-000001-AB", "1abcde-000000-AB"}
	if older.status != http.StatusOK || !slices.Equal(got, want) {
		t.Errorf("older page (%s): %d, rows %v, want %v", m[1], older.status, got, want)
	}
}
