package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"mxgate/event"
)

// The exposition text a scrape shows for each kind of event, one metric
// family at a time: what a dashboard reads.
func TestEventCounts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []event.Event
		metric string // the family compared
		want   string // its samples in the text format
	}{
		{"connections", []event.Event{
			{Kind: event.Connect, Conn: "c1", Listener: "smtp"},
			{Kind: event.Connect, Conn: "c2", Listener: "smtp"},
			{Kind: event.Connect, Conn: "c3", Listener: "submission"},
		}, "mxgate_connections_total", `
mxgate_connections_total{listener="smtp"} 2
mxgate_connections_total{listener="submission"} 1
`},
		{"active connections: a refused one's disconnect is not counted", []event.Event{
			{Kind: event.Connect, Conn: "c1", Listener: "smtp"},
			{Kind: event.Connect, Conn: "c2", Listener: "smtp"},
			{Kind: event.ConnRefused, Conn: "c3", ReasonCode: "too-many-connections"},
			{Kind: event.Disconnect, Conn: "c3"},
			{Kind: event.Disconnect, Conn: "c1"},
			{Kind: event.Disconnect, Conn: "c1"},
		}, "mxgate_connections_active", `
mxgate_connections_active 1
`},
		{"refused connections", []event.Event{
			{Kind: event.ConnRefused, Code: 421, ReasonCode: "too-many-connections"},
			{Kind: event.ConnRefused, Code: 554, Check: "rbl", ReasonCode: "rbl-listed", List: "zen.example"},
			{Kind: event.ConnRefused, Code: 421},
		}, "mxgate_connections_refused_total", `
mxgate_connections_refused_total{reason="other"} 1
mxgate_connections_refused_total{reason="rbl-listed"} 1
mxgate_connections_refused_total{reason="too-many-connections"} 1
`},
		{"messages by final action", []event.Event{
			{Kind: event.Accepted, Action: "accept", Source: "smtp"},
			{Kind: event.Accepted, Action: "accept", Source: "local"},
			{Kind: event.Accepted, Action: "accept", Source: "milter"},
			{Kind: event.Accepted, Action: "tag", Source: "smtp"},
			{Kind: event.Quarantined, Check: "spamd"},
			{Kind: event.Discarded, Check: "milter"},
			{Kind: event.Refused, Stage: "data", Code: 550, Check: "clamd", Recipients: []string{"a@x", "b@x"}},
			{Kind: event.Refused, Stage: "data", Code: 451, Check: "spamd"},
			// Made or let out by the gateway: not received mail.
			{Kind: event.Accepted, Action: "accept", Source: "bounce"},
			{Kind: event.Accepted, Action: "accept", Source: "release"},
			{Kind: event.Accepted, Action: "accept", Source: "digest"},
		}, "mxgate_messages_total", `
mxgate_messages_total{action="accepted"} 3
mxgate_messages_total{action="discarded"} 1
mxgate_messages_total{action="quarantined"} 1
mxgate_messages_total{action="rejected"} 1
mxgate_messages_total{action="tagged"} 1
mxgate_messages_total{action="tempfailed"} 1
`},
		{"refusals before DATA, a RCPT per recipient", []event.Event{
			{Kind: event.Refused, Stage: "rcpt", Code: 550, ReasonCode: "unknown-user", Recipient: "a@x"},
			{Kind: event.Refused, Stage: "rcpt", Code: 550, ReasonCode: "unknown-user", Recipient: "b@x"},
			{Kind: event.Refused, Stage: "rcpt", Code: 554, Check: "rbl", ReasonCode: "rbl-listed", Recipient: "c@x"},
			{Kind: event.Refused, Stage: "mail", Code: 451, Check: "ratelimit"},
		}, "mxgate_rcpt_refused_total", `
mxgate_rcpt_refused_total{reason="ratelimit",stage="mail"} 1
mxgate_rcpt_refused_total{reason="rbl-listed",stage="rcpt"} 1
mxgate_rcpt_refused_total{reason="unknown-user",stage="rcpt"} 2
`},
		{"the check that decided", []event.Event{
			{Kind: event.Refused, Stage: "rcpt", Code: 554, Check: "rbl"},
			{Kind: event.Refused, Stage: "data", Code: 550, Check: "spamd"},
			{Kind: event.Refused, Stage: "data", Code: 451, Check: "spamd"},
			{Kind: event.Quarantined, Check: "spamd"},
			{Kind: event.Discarded, Check: "milter"},
			{Kind: event.Refused, Stage: "rcpt", Code: 550}, // no check: a protocol refusal
		}, "mxgate_decided_total", `
mxgate_decided_total{action="discarded",check="milter"} 1
mxgate_decided_total{action="quarantined",check="spamd"} 1
mxgate_decided_total{action="rejected",check="rbl"} 1
mxgate_decided_total{action="rejected",check="spamd"} 1
mxgate_decided_total{action="tempfailed",check="spamd"} 1
`},
		{"check errors", []event.Event{
			{Kind: event.Check, Check: "spamd", Stage: "data", Err: errors.New("connection refused")},
			{Kind: event.Check, Check: "spamd", Stage: "data", Scored: true, Score: 1},
			{Kind: event.Check, Check: "clamd", Stage: "data", Err: errors.New("timeout")},
		}, "mxgate_check_errors_total", `
mxgate_check_errors_total{check="clamd"} 1
mxgate_check_errors_total{check="spamd"} 1
`},
		{"viruses, without their names", []event.Event{
			{Kind: event.Check, Check: "clamd", Stage: "data", Virus: "Eicar-Test-Signature"},
			{Kind: event.Check, Check: "clamd", Stage: "data", Virus: "Win.Trojan.X"},
			{Kind: event.Check, Check: "clamd", Stage: "data"},
		}, "mxgate_viruses_total", `
mxgate_viruses_total 2
`},
		{"breakers", []event.Event{
			{Kind: event.Breaker, Check: "spamd", Open: true},
			{Kind: event.Breaker, Check: "clamd", Open: true},
			{Kind: event.Breaker, Check: "clamd", Open: false},
		}, "mxgate_breaker_open", `
mxgate_breaker_open{check="clamd"} 0
mxgate_breaker_open{check="spamd"} 1
`},
		{"deliveries by outcome and destination", []event.Event{
			{Kind: event.Delivery, Outcome: event.Delivered, Transport: "smtp", Router: "downstream", Host: "mx.example [192.0.2.1]:25"},
			{Kind: event.Delivery, Outcome: event.Delivered, Transport: "smtp", Router: "downstream"},
			{Kind: event.Delivery, Outcome: event.Deferred, Transport: "lmtp", Router: "example.org"},
			{Kind: event.Delivery, Outcome: event.Failed, Transport: "smtp", Router: "outbound"},
		}, "mxgate_deliveries_total", `
mxgate_deliveries_total{outcome="deferred",router="example.org",transport="lmtp"} 1
mxgate_deliveries_total{outcome="delivered",router="downstream",transport="smtp"} 2
mxgate_deliveries_total{outcome="failed",router="outbound",transport="smtp"} 1
`},
		{"bounces", []event.Event{{Kind: event.Bounce}, {Kind: event.Bounce}}, "mxgate_bounces_total", `
mxgate_bounces_total 2
`},
		{"dns lookups: cached or not, unknown types bounded", []event.Event{
			{Kind: event.DNSLookup, QType: "A"},
			{Kind: event.DNSLookup, QType: "A", Cached: true},
			{Kind: event.DNSLookup, QType: "A", Cached: true},
			{Kind: event.DNSLookup, QType: "TXT"},
			{Kind: event.DNSLookup, QType: "TYPE65280"},
		}, "mxgate_dns_lookups_total", `
mxgate_dns_lookups_total{cached="false",qtype="A"} 1
mxgate_dns_lookups_total{cached="false",qtype="TXT"} 1
mxgate_dns_lookups_total{cached="false",qtype="other"} 1
mxgate_dns_lookups_total{cached="true",qtype="A"} 2
`},
		{"dns errors", []event.Event{
			{Kind: event.DNSLookup, QType: "A", Err: errors.New("SERVFAIL")},
			{Kind: event.DNSLookup, QType: "A"},
		}, "mxgate_dns_lookup_errors_total", `
mxgate_dns_lookup_errors_total 1
`},
		{"admin actions", []event.Event{
			{Kind: event.Admin, Action: "freeze", User: "root", ID: "1aBcDe-000001-00"},
			{Kind: event.Admin, Action: "release", User: "alice"},
			{Kind: event.Admin, Action: "release", User: "bob"},
		}, "mxgate_admin_actions_total", `
mxgate_admin_actions_total{action="freeze"} 1
mxgate_admin_actions_total{action="release"} 2
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Options{Version: "test"})
			feed(m, tc.events)
			if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(header(t, m, tc.metric)+tc.want), tc.metric); err != nil {
				t.Error(err)
			}
		})
	}
}

// The histograms of one scenario, read as a scrape reads them: the
// golden file holds every mxgate_ family but the queue's.
func TestScrapeGolden(t *testing.T) {
	m := New(Options{Version: "1.2.3"})
	feed(m, []event.Event{
		{Kind: event.Connect, Conn: "c1", Listener: "smtp"},
		{Kind: event.Check, Check: "rbl", Stage: "rcpt", Duration: 3 * time.Millisecond},
		{Kind: event.Check, Check: "spamd", Stage: "data", Duration: 400 * time.Millisecond, Scored: true, Score: 12.1},
		{Kind: event.Check, Check: "spamd", Stage: "data", Duration: 70 * time.Millisecond, Scored: true, Score: -0.1},
		{Kind: event.Accepted, Action: "tag", Source: "smtp", Scored: true, Score: 12.1},
		{Kind: event.SpoolCommit, Batch: 3, Duration: 2 * time.Millisecond},
		{Kind: event.SpoolCommit, Batch: 1, Duration: 700 * time.Microsecond},
		{Kind: event.Delivery, Outcome: event.Delivered, Transport: "smtp", Router: "downstream", Duration: 30 * time.Millisecond, Delay: 2 * time.Second},
		{Kind: event.Delivery, Outcome: event.Deferred, Transport: "smtp", Router: "downstream", Duration: 5 * time.Second, Delay: 6 * time.Second},
		{Kind: event.Disconnect, Conn: "c1"},
	})
	golden, err := os.Open("testdata/scenario.prom")
	if err != nil {
		t.Fatal(err)
	}
	defer golden.Close()
	names := []string{"mxgate_build_info", "mxgate_check_duration_seconds", "mxgate_spam_score",
		"mxgate_spool_commit_batch_size", "mxgate_spool_sync_duration_seconds", "mxgate_delivery_duration_seconds",
		"mxgate_delivery_delay_seconds", "mxgate_messages_total", "mxgate_connections_active"}
	if err := testutil.GatherAndCompare(m.Registry(), golden, names...); err != nil {
		t.Error(err)
	}
}

// The handler serves the text format with the runtime's and the
// process's metrics beside ours.
func TestHandler(t *testing.T) {
	m := New(Options{Version: "v9"})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	for _, want := range []string{`mxgate_build_info{version="v9"} 1`, "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

// The queue is read once per queueCache however often it is scraped.
func TestQueueCached(t *testing.T) {
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	var reads atomic.Int32
	var fail atomic.Bool
	m := New(Options{})
	m.reg.MustRegister(newQueueCollector(func() (int, time.Time, error) {
		reads.Add(1)
		if fail.Load() {
			return 0, time.Time{}, errors.New("reading the spool: permission denied")
		}
		return 100000, now.Add(-90 * time.Minute), nil
	}, func() time.Time { return now }))
	want := `# HELP mxgate_queue_messages Messages in the queue (the spool's -H files).
# TYPE mxgate_queue_messages gauge
mxgate_queue_messages 100000
# HELP mxgate_queue_oldest_age_seconds Age of the oldest message in the queue; 0 when it is empty.
# TYPE mxgate_queue_oldest_age_seconds gauge
mxgate_queue_oldest_age_seconds 5400
`
	for range 3 {
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "mxgate_queue_messages", "mxgate_queue_oldest_age_seconds"); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("3 scrapes read the spool %d times, want 1", n)
	}
	now = now.Add(queueCache)
	fail.Store(true)
	if _, err := m.Registry().Gather(); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("a failed reading gathers %v, want the spool's error", err)
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("after the cache expired the spool was read %d times, want 2", n)
	}
}

func feed(m *Metrics, events []event.Event) {
	bus := event.NewBus(m)
	for _, e := range events {
		bus.Emit(e)
	}
}

// header is the HELP and TYPE lines of a family, as the registry has them.
func header(t *testing.T, m *Metrics, name string) string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return "# HELP " + name + " " + mf.GetHelp() + "\n# TYPE " + name + " " + strings.ToLower(mf.GetType().String()) + "\n"
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

// BenchmarkEvent is the sink's cost on the mail path, for the events of
// one accepted message delivered once.
func BenchmarkEvent(b *testing.B) {
	m := New(Options{Version: "bench"})
	events := []event.Event{
		{Kind: event.Connect, Conn: "c1", Listener: "smtp"},
		{Kind: event.Check, Check: "rbl", Stage: "rcpt", Duration: time.Millisecond},
		{Kind: event.Check, Check: "spamd", Stage: "data", Duration: 80 * time.Millisecond, Scored: true, Score: 1.5},
		{Kind: event.SpoolCommit, Batch: 1, Duration: time.Millisecond},
		{Kind: event.Accepted, Action: "accept", Source: "smtp"},
		{Kind: event.Delivery, Outcome: event.Delivered, Transport: "smtp", Router: "downstream", Duration: 5 * time.Millisecond, Delay: time.Second},
		{Kind: event.Disconnect, Conn: "c1"},
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range events {
			m.Event(&events[i])
		}
	}
}
