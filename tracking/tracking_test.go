package tracking

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxgate/event"
	"mxgate/internal/peertest"
)

// t0 is the time the fed events start at.
var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func openSQLite(t *testing.T) *Store {
	t.Helper()
	return openURL(t, "sqlite:"+filepath.Join(t.TempDir(), "tracking.db"))
}

func openURL(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{URL: url, Node: "mx1.test", Queue: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// feed gives the store events, stamping each one second after the last,
// and flushes.
func feed(t *testing.T, s *Store, evs ...event.Event) {
	t.Helper()
	for i := range evs {
		if evs[i].Time.IsZero() {
			evs[i].Time = t0.Add(time.Duration(i) * time.Second)
		}
		s.Event(&evs[i])
		if i%500 == 499 {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

var client = netip.MustParseAddr("192.0.2.7")

// session is the events of one accepted SMTP message.
func session(conn, id, sender string, rcpts ...string) []event.Event {
	return []event.Event{
		{Kind: event.Connect, Conn: conn, Client: client, HostName: "client.example", Listener: "smtp"},
		{Kind: event.Check, Conn: conn, Txn: 1, Check: "rbl", Stage: "data", Action: "accept", Duration: 100 * time.Microsecond},
		{Kind: event.Check, Conn: conn, Txn: 1, Check: "spamd", Stage: "data", Action: "accept", Score: 1.5, Scored: true, Duration: 120 * time.Millisecond},
		{Kind: event.Accepted, Conn: conn, Txn: 1, ID: id, Sender: sender, Recipients: rcpts, Size: 4096,
			Subject: "Hello", MessageID: "<m1@example.com>", Source: "smtp", Score: 1.5, Scored: true, Helo: "client.example"},
		{Kind: event.Disconnect, Conn: conn},
	}
}

// refusedByList is an attempt whose only RCPT a DNS list refused.
func refusedByList(conn, sender, rcpt string) []event.Event {
	return []event.Event{
		{Kind: event.Connect, Conn: conn, Client: netip.MustParseAddr("198.51.100.9"), Listener: "smtp"},
		{Kind: event.Check, Conn: conn, Txn: 1, Check: "rbl", Stage: "rcpt", Action: "reject", List: "bl.example", ReasonCode: "rbl"},
		{Kind: event.Refused, Conn: conn, Txn: 1, Stage: "rcpt", Sender: sender, Recipient: rcpt, Code: 554, Enhanced: "5.7.1",
			Text: "Service unavailable; client [198.51.100.9] blocked using bl.example", ReasonCode: "rbl", Check: "rbl", List: "bl.example"},
		{Kind: event.Disconnect, Conn: conn},
	}
}

func TestSQLite(t *testing.T) { suite(t, openSQLite) }

// suite is every behaviour, run against each database.
func suite(t *testing.T, open func(*testing.T) *Store) {
	t.Run("AcceptedDelivered", func(t *testing.T) { testAcceptedDelivered(t, open(t)) })
	t.Run("RefusedByList", func(t *testing.T) { testRefusedByList(t, open(t)) })
	t.Run("QuarantinedReleased", func(t *testing.T) { testQuarantinedReleased(t, open(t)) })
	t.Run("QuarantinedReleasedFor", func(t *testing.T) { testQuarantinedReleasedFor(t, open(t)) })
	t.Run("Expire", func(t *testing.T) { testExpire(t, open(t)) })
	t.Run("Stats", func(t *testing.T) { testStats(t, open(t)) })
	t.Run("Paging", func(t *testing.T) { testPaging(t, open(t)) })
	t.Run("Queries", func(t *testing.T) { testQueries(t, open(t)) })
}

func testAcceptedDelivered(t *testing.T, s *Store) {
	evs := session("c1", "1abcde-000001-AB", "Alice@Example.COM", "bob@dest.test", "carol@dest.test")
	evs = append(evs,
		event.Event{Kind: event.Delivery, ID: "1abcde-000001-AB", Recipient: "bob@dest.test", Outcome: event.Delivered,
			Transport: "downstream", Host: "[127.0.0.1]:25", Reply: "250 ok", Delay: 2 * time.Second},
		event.Event{Kind: event.Delivery, ID: "1abcde-000001-AB", Recipient: "carol@dest.test", Outcome: event.Deferred,
			Transport: "downstream", Host: "[127.0.0.1]:25", Reply: "451 try later"},
	)
	feed(t, s, evs...)
	m, _, err := s.Get(context.Background(), "1abcde-000001-AB")
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Deferred || m.Sender != "alice@example.com" || m.Client != "192.0.2.7" || m.Size != 4096 ||
		m.MessageID != "m1@example.com" || !m.Scored || m.Score != 1.5 || m.Node != "mx1.test" || m.HostName != "client.example" {
		t.Errorf("after one deferral: %+v", m)
	}
	feed(t, s, event.Event{Kind: event.Delivery, ID: "1abcde-000001-AB", Recipient: "dave@dest.test", Outcome: event.Delivered,
		Transport: "downstream", Host: "[127.0.0.1]:25", Reply: "250 ok", Time: t0.Add(time.Minute), Delay: time.Minute})
	feed(t, s, event.Event{Kind: event.Delivery, ID: "1abcde-000001-AB", Recipient: "carol@dest.test", Outcome: event.Delivered,
		Transport: "downstream", Host: "[127.0.0.1]:25", Reply: "250 ok", Time: t0.Add(time.Minute), Delay: time.Minute},
		event.Event{Kind: event.Completed, ID: "1abcde-000001-AB", Time: t0.Add(time.Minute)})
	m, steps, err := s.Get(context.Background(), "1abcde-000001-AB")
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Delivered {
		t.Errorf("verdict %q, want delivered", m.Verdict)
	}
	want := []string{
		"connect: connection from client.example [192.0.2.7] on smtp",
		"check: at data: rbl accept, spamd accept (score=1.5; 120ms)",
		"accepted: accepted as 1abcde-000001-AB: <Alice@Example.COM> for <bob@dest.test>, <carol@dest.test>, 4096 bytes",
		"delivery: delivered to bob@dest.test via downstream [127.0.0.1]:25: 250 ok",
		"delivery: deferred for carol@dest.test via downstream [127.0.0.1]:25: 451 try later",
		"delivery: delivered to dave@dest.test via downstream [127.0.0.1]:25: 250 ok",
		"delivery: delivered to carol@dest.test via downstream [127.0.0.1]:25: 250 ok",
		"completed: completed",
	}
	if got := stepLines(steps); !slices.Equal(got, want) {
		t.Errorf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := rcptLines(m.Recipients); !slices.Equal(got, []string{"bob@dest.test delivered 250 ok", "carol@dest.test delivered 250 ok", "dave@dest.test delivered 250 ok"}) {
		t.Errorf("recipients %q", got)
	}
	if _, _, err := s.Get(context.Background(), "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nosuch) = %v, want ErrNotFound", err)
	}
	byKey, _, err := s.Get(context.Background(), "#"+itoa(m.Key))
	if err != nil || byKey.ID != m.ID {
		t.Errorf("Get(#%d) = %v, %v", m.Key, byKey, err)
	}
}

func testRefusedByList(t *testing.T, s *Store) {
	feed(t, s, refusedByList("c2", "spammer@bad.example", "bob@dest.test")...)
	for _, q := range []Query{{Sender: "Spammer@bad.example"}, {Sender: "@BAD.example"}, {Recipient: "bob@dest.test"}, {Client: "198.51.100.0/24"}, {Verdict: Rejected}} {
		ms, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 {
			t.Fatalf("%+v: %d rows, want 1", q, len(ms))
		}
		m := ms[0]
		if m.Verdict != Rejected || m.List != "bl.example" || m.ReasonCode != "rbl" ||
			m.Reason != "554 5.7.1 Service unavailable; client [198.51.100.9] blocked using bl.example" {
			t.Errorf("%+v: %+v", q, m)
		}
		if got := rcptLines(m.Recipients); !slices.Equal(got, []string{"bob@dest.test rejected " + m.Reason}) {
			t.Errorf("recipients %q", got)
		}
	}
}

func testQuarantinedReleased(t *testing.T, s *Store) {
	id := "1abcde-000002-CD"
	evs := session("c3", id, "x@spam.example", "bob@dest.test")
	// Quarantined comes instead of Accepted, with the message's fields.
	q := evs[3]
	q.Kind, q.Check, q.ReasonCode, q.Reason, q.Score = event.Quarantined, "spamd", "spam", "score 12.5 >= 10", 12.5
	evs[3] = q
	feed(t, s, evs...)
	ms, err := s.Search(context.Background(), Query{Verdict: Quarantined})
	if err != nil || len(ms) != 1 || ms[0].ID != id || ms[0].Score != 12.5 || ms[0].Reason != "score 12.5 >= 10" {
		t.Fatalf("quarantined: %+v, %v", ms, err)
	}
	feed(t, s,
		event.Event{Kind: event.Admin, ID: id, Action: "release", User: "admin", Reason: "not spam", Time: t0.Add(time.Hour)},
		event.Event{Kind: event.Accepted, ID: id, Source: "release", Sender: "x@spam.example", Recipients: []string{"bob@dest.test"}, Time: t0.Add(time.Hour)},
	)
	m, steps, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Verdict != Released {
		t.Errorf("verdict %q, want released", m.Verdict)
	}
	got := stepLines(steps)
	if !slices.Contains(got, "quarantined: quarantined by spamd: score 12.5 >= 10") || !slices.Contains(got, "admin: admin admin: release (not spam)") {
		t.Errorf("timeline %q", got)
	}
	if n, _ := s.Search(context.Background(), Query{ID: id}); len(n) != 1 {
		t.Errorf("release made %d rows, want 1", len(n))
	}
}

// testQuarantinedReleasedFor: a digest's links release a quarantined
// message for one recipient (a copy under a new ID) and delete it for
// the other; the quarantined row says so per recipient and stays
// quarantined until the last, and the copy's row has the client.
func testQuarantinedReleasedFor(t *testing.T, s *Store) {
	id, copyID := "1abcde-000003-EF", "1abcde-000004-GH"
	evs := session("c4", id, "x@spam.example", "bob@dest.test", "carol@dest.test")
	q := evs[3]
	q.Kind, q.Check, q.ReasonCode, q.Reason, q.Score = event.Quarantined, "spamd", "spam", "score 12.5 >= 10", 12.5
	evs[3] = q
	feed(t, s, evs...)
	feed(t, s,
		event.Event{Kind: event.Admin, ID: id, Action: "release", User: "digest link", Recipient: "Bob@dest.test", Time: t0.Add(time.Hour)},
		event.Event{Kind: event.Accepted, ID: copyID, Parent: id, Source: "release", Sender: "x@spam.example", Recipients: []string{"Bob@dest.test"},
			Size: 4096, Time: t0.Add(time.Hour)},
		event.Event{Kind: event.Delivery, ID: copyID, Recipient: "Bob@dest.test", Outcome: event.Delivered, Transport: "downstream",
			Reply: "250 ok", Time: t0.Add(time.Hour)},
	)
	get := func(key string) (*Message, []string) {
		t.Helper()
		m, steps, err := s.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		return m, stepLines(steps)
	}
	m, steps := get(id)
	if m.Verdict != Quarantined {
		t.Errorf("released for bob alone: verdict %q, want quarantined (carol's is held)", m.Verdict)
	}
	if got := rcptLines(m.Recipients); !slices.Equal(got, []string{"bob@dest.test released ", "carol@dest.test accepted "}) {
		t.Errorf("recipients %q", got)
	}
	for _, want := range []string{"admin: admin digest link: release for <Bob@dest.test>", "accepted: released for <Bob@dest.test> as " + copyID} {
		if !slices.Contains(steps, want) {
			t.Errorf("timeline %q lacks %q", steps, want)
		}
	}
	c, steps := get(copyID)
	if c.Verdict != Delivered || c.Client != "192.0.2.7" || c.HostName != "client.example" || c.Score != 12.5 || !c.Scored {
		t.Errorf("the copy: %+v", c)
	}
	if want := "accepted: accepted as " + copyID + ": <x@spam.example> for <Bob@dest.test>, 4096 bytes (release) of " + id; !slices.Contains(steps, want) {
		t.Errorf("copy's timeline %q lacks %q", steps, want)
	}
	if ms, err := s.Search(context.Background(), Query{Client: "192.0.2.7"}); err != nil || len(ms) != 2 {
		t.Errorf("search by client: %d rows, %v; want the quarantined message and its copy", len(ms), err)
	}
	feed(t, s, event.Event{Kind: event.Admin, ID: id, Action: "delete", User: "digest link", Recipient: "carol@dest.test", Time: t0.Add(2 * time.Hour)})
	if m, _ = get(id); m.Verdict != Released {
		t.Errorf("released for bob, deleted for carol: verdict %q, want released", m.Verdict)
	}
	if got := rcptLines(m.Recipients); !slices.Equal(got, []string{"bob@dest.test released ", "carol@dest.test deleted "}) {
		t.Errorf("recipients %q", got)
	}
}

// TestNodes: two gateways writing into one database make the same spool
// ID (each daemon pid 1 in its container); each one's later events find
// its own row.
func TestNodes(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "tracking.db")
	var stores []*Store
	for _, node := range []string{"mx1.test", "mx2.test"} {
		s, err := Open(context.Background(), Options{URL: url, Node: node, Queue: 100})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	id := "1abcde-000009-XY"
	for _, s := range stores {
		feed(t, s, event.Event{Kind: event.Accepted, ID: id, Sender: "a@b.test", Recipients: []string{"c@d.test"}, Source: "local"})
	}
	// mx1 restarts: its writer remembers no ID, and looks the row up.
	if err := stores[0].Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{URL: url, Node: "mx1.test", Queue: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	feed(t, s, event.Event{Kind: event.Delivery, ID: id, Recipient: "c@d.test", Outcome: event.Delivered, Reply: "250 ok"})
	ms, err := s.Search(context.Background(), Query{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range ms {
		got[m.Node] = m.Verdict
	}
	if want := map[string]string{"mx1.test": Delivered, "mx2.test": Accepted}; len(got) != 2 || got["mx1.test"] != want["mx1.test"] || got["mx2.test"] != want["mx2.test"] {
		t.Errorf("verdicts by node %v, want %v", got, want)
	}
}

func testExpire(t *testing.T, s *Store) {
	var evs []event.Event
	for i := range 2500 {
		evs = append(evs, event.Event{Kind: event.Accepted, ID: "id" + itoa(int64(i)), Sender: "a@b.test", Recipients: []string{"c@d.test"},
			Source: "local", Time: t0.Add(time.Duration(i) * time.Minute)})
	}
	feed(t, s, evs...)
	n, err := s.Expire(context.Background(), t0.Add(2100*time.Minute))
	if err != nil || n != 2100 {
		t.Fatalf("Expire = %d, %v; want 2100", n, err)
	}
	ms, err := s.Search(context.Background(), Query{Limit: 1000})
	if err != nil || len(ms) != 400 || ms[len(ms)-1].ID != "id2100" {
		t.Fatalf("left %d rows, %v", len(ms), err)
	}
	var rc int
	if err := s.db.QueryRow("SELECT count(*) FROM recipients").Scan(&rc); err != nil || rc != 400 {
		t.Errorf("recipients left %d, %v", rc, err)
	}

	// The writer remembered id5's row when it wrote it; the row is gone,
	// so a late delivery of id5 writes nothing.
	feed(t, s, event.Event{Kind: event.Delivery, ID: "id5", Recipient: "c@d.test", Outcome: event.Delivered, Reply: "250 ok"})
	if n := orphans(t, s); n != 0 {
		t.Errorf("a delivery of an expired message wrote %d steps and recipients of no message", n)
	}

	// Rows the writer added to a message while it was being deleted:
	// more than a chunk of them, deleted by the next Expire.
	tx, err := s.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1500 {
		msg := int64(1_000_000 + i)
		if _, err := tx.Exec(s.d.q("INSERT INTO steps (msg, time, kind, text) VALUES (?, 0, 'delivery', 'x')"), msg); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(s.d.q("INSERT INTO recipients (msg, time, address, domain, status) VALUES (?, 0, 'c@d.test', 'd.test', 'delivered')"), msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Expire(context.Background(), t0.Add(2100*time.Minute)); err != nil || n != 0 {
		t.Fatalf("second Expire = %d, %v; want 0", n, err)
	}
	if n := orphans(t, s); n != 0 {
		t.Errorf("%d steps and recipients of no message left after Expire", n)
	}
	if err := s.db.QueryRow("SELECT count(*) FROM recipients").Scan(&rc); err != nil || rc != 400 {
		t.Errorf("recipients left %d, %v; want the 400 of the kept messages", rc, err)
	}
}

// orphans counts the steps and recipients whose message has no row.
func orphans(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	for _, table := range []string{"steps", "recipients"} {
		var c int
		if err := s.db.QueryRow("SELECT count(*) FROM " + table + " o WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.key = o.msg)").Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

func testStats(t *testing.T, s *Store) {
	var evs []event.Event
	evs = append(evs, session("s1", "id1", "a@one.test", "x@dest.test")...)
	evs = append(evs, session("s2", "id2", "a@one.test", "x@dest.test", "y@dest.test")...)
	evs = append(evs, refusedByList("s3", "b@two.test", "x@dest.test")...)
	evs = append(evs, event.Event{Kind: event.Delivery, ID: "id1", Recipient: "x@dest.test", Outcome: event.Delivered, Delay: 3 * time.Second})
	for i := range evs {
		evs[i].Time = t0.Add(time.Duration(i) * 10 * time.Minute)
	}
	evs = append(evs, event.Event{Kind: event.Quarantined, ID: "v1", Sender: "c@three.test", Recipients: []string{"x@dest.test"}, Virus: "Eicar-Test-Signature",
		Check: "clamd", Reason: "virus", Time: t0.Add(5 * time.Hour)})
	feed(t, s, evs...)
	st, err := s.Stats(context.Background(), t0, t0.Add(6*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{Accepted: 1, Delivered: 1, Rejected: 1, Quarantined: 1}; !mapsEqual(st.Totals, want) {
		t.Errorf("totals %v, want %v", st.Totals, want)
	}
	if len(st.Series) != 6 || st.Series[0].Counts[Delivered] != 1 || st.Series[1].Counts[Accepted] != 1 || st.Series[1].Counts[Rejected] != 1 ||
		st.Series[5].Counts[Quarantined] != 1 {
		t.Errorf("series %+v", st.Series)
	}
	check := func(name string, got, want []Count) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("TopSenders", st.TopSenders, []Count{{"a@one.test", 2}, {"b@two.test", 1}, {"c@three.test", 1}})
	check("TopSenderDomains", st.TopSenderDomains[:1], []Count{{"one.test", 2}})
	check("TopRecipients", st.TopRecipients, []Count{{"x@dest.test", 4}, {"y@dest.test", 1}})
	check("TopHosts", st.TopHosts, []Count{{"192.0.2.7", 2}, {"198.51.100.9", 1}})
	check("RejectReasons", st.RejectReasons, []Count{{"rbl", 1}})
	check("RejectLists", st.RejectLists, []Count{{"bl.example", 1}})
	check("Viruses", st.Viruses, []Count{{"Eicar-Test-Signature", 1}})
	check("Scores", st.Scores, []Count{{"<0", 0}, {"0-2", 2}, {"2-4", 0}, {"4-6", 0}, {"6-8", 0}, {"8-10", 0}, {"10-15", 0}, {"15+", 0}})
	check("Delays", st.Delays, []Count{{"<1s", 0}, {"1-10s", 1}, {"10s-1m", 0}, {"1-10m", 0}, {"10m-1h", 0}, {">1h", 0}})
	week, err := s.Stats(context.Background(), t0.Add(-6*24*time.Hour), t0.Add(24*time.Hour))
	if err != nil || len(week.Series) != 8 || week.Series[6].Counts[Rejected] != 1 {
		t.Errorf("daily series %+v, %v", week.Series, err)
	}
}

func testPaging(t *testing.T, s *Store) {
	var evs []event.Event
	for i := range 25 {
		// Pairs share a time: the key orders them.
		evs = append(evs, event.Event{Kind: event.Accepted, ID: "p" + itoa(int64(i)), Sender: "pager@p.test", Source: "local",
			Time: t0.Add(time.Duration(i/2) * time.Second)})
	}
	feed(t, s, evs...)
	var ids []string
	var before int64
	for {
		ms, err := s.Search(context.Background(), Query{Sender: "pager@p.test", Limit: 10, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		before = ms[len(ms)-1].Key
	}
	if len(ids) != 25 || ids[0] != "p24" || ids[24] != "p0" {
		t.Errorf("pages gave %v", ids)
	}
}

func testQueries(t *testing.T, s *Store) {
	var evs []event.Event
	evs = append(evs, session("q1", "qid1", "a@one.test", "x@dest.test")...)
	evs = append(evs, refusedByList("q2", "b@two.test", "y@other.test")...)
	feed(t, s, evs...)
	tests := []struct {
		q    Query
		want []string // senders
	}{
		{Query{}, []string{"b@two.test", "a@one.test"}},
		{Query{ID: "qid1"}, []string{"a@one.test"}},
		{Query{MessageID: "m1@example.com"}, []string{"a@one.test"}},
		{Query{MessageID: "<m1@example.com>"}, []string{"a@one.test"}},
		{Query{Client: "192.0.2.7"}, []string{"a@one.test"}},
		{Query{Client: "192.0.2.0/31"}, nil},
		{Query{Client: "::ffff:192.0.2.7"}, []string{"a@one.test"}},
		{Query{Recipient: "@OTHER.test"}, []string{"b@two.test"}},
		{Query{Verdict: Accepted}, []string{"a@one.test"}},
		{Query{Since: t0.Add(5 * time.Second)}, []string{"b@two.test"}},
		{Query{Until: t0.Add(5 * time.Second)}, []string{"a@one.test"}},
		{Query{Sender: "a@one.test", Verdict: Rejected}, nil},
	}
	for _, tt := range tests {
		ms, err := s.Search(context.Background(), tt.q)
		if err != nil {
			t.Fatalf("%+v: %v", tt.q, err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.Sender)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%+v: %q, want %q", tt.q, got, tt.want)
		}
	}
	// Connections refused before the greeting: by a DNS list (554), by
	// the limit (421), closed without a reply while shutting down.
	feed(t, s,
		event.Event{Kind: event.ConnRefused, Conn: "r1", Client: netip.MustParseAddr("203.0.113.1"), Stage: "connect", Code: 554, Text: "blocked", ReasonCode: "rbl"},
		event.Event{Kind: event.ConnRefused, Client: netip.MustParseAddr("203.0.113.2"), Stage: "connect", Code: 421, Text: "Too many connections", ReasonCode: "connection-limit"},
		event.Event{Kind: event.ConnRefused, Conn: "r3", Client: netip.MustParseAddr("203.0.113.3"), Stage: "connect", Reason: "shutting down", ReasonCode: "shutting-down"},
	)
	for ip, want := range map[string]string{"203.0.113.1": Rejected, "203.0.113.2": Tempfailed, "203.0.113.3": Tempfailed} {
		if ms, err := s.Search(context.Background(), Query{Client: ip}); err != nil || len(ms) != 1 || ms[0].Verdict != want {
			t.Errorf("connection from %s refused: %+v, %v; want one row %s", ip, ms, err, want)
		}
	}
	if _, err := s.Search(context.Background(), Query{Client: "not-an-ip"}); err == nil {
		t.Error("a bad client was searched")
	}
}

func stepLines(steps []Step) []string {
	var s []string
	for _, st := range steps {
		s = append(s, st.Kind+": "+st.Text)
	}
	return s
}

func rcptLines(rs []Recipient) []string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Address+" "+r.Status+" "+r.Reason)
	}
	slices.Sort(s)
	return s
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestPostgres runs the suite against a real PostgreSQL, a fresh database
// per test.
func TestPostgres(t *testing.T) {
	url := peertest.Postgres(t)
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	n := 0
	suite(t, func(t *testing.T) *Store {
		n++
		name := "t" + strconv.Itoa(n)
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		return openURL(t, strings.Replace(url, "/mxgate?", "/"+name+"?", 1))
	})
}
