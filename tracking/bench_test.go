package tracking

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/event"
)

// benchStart is the first message's time in a generated database; one
// message every 2.5 s makes 1,000,000 span about a month (the default
// retention).
var benchStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const benchEvery = 2500 * time.Millisecond

// fill bulk-inserts n generated messages, with recipients and steps, in
// one transaction: senders over 1,000 domains, recipients over 100
// domains, clients over a /16, a verdict mix like a real gateway's.
func fill(tb testing.TB, db *sql.DB, n int) {
	tb.Helper()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	msg, err := tx.Prepare(`INSERT INTO messages (key, id, time, node, client, client_bin, sender, sender_domain, size, subject, message_id, verdict, reason, list, score, scored)
		VALUES (?, ?, ?, 'mx1', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	rcpt, err := tx.Prepare("INSERT INTO recipients (msg, time, address, domain, status, reason) VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		tb.Fatal(err)
	}
	step, err := tx.Prepare("INSERT INTO steps (msg, time, kind, text) VALUES (?, ?, 'accepted', 'accepted')")
	if err != nil {
		tb.Fatal(err)
	}
	verdicts := []string{Delivered, Delivered, Delivered, Delivered, Rejected, Rejected, Tempfailed, Quarantined, Deferred, Bounced}
	for i := 1; i <= n; i++ {
		t := benchStart.Add(time.Duration(i) * benchEvery).UnixMilli()
		v := verdicts[i%len(verdicts)]
		id, reason, list := "", "", ""
		if v == Rejected || v == Tempfailed {
			reason, list = "554 5.7.1 blocked using bl.example", "bl.example"
		} else {
			id = benchID(i)
		}
		dom := fmt.Sprintf("d%d.example", i%1000)
		sender := fmt.Sprintf("s%d@%s", i%2000, dom)
		client := netip.AddrFrom4([4]byte{10, 1, byte(i / 256 % 256), byte(i % 256)})
		b := client.As16()
		if _, err := msg.Exec(i, id, t, client.String(), b[:], sender, dom, 4096, "subject", fmt.Sprintf("m%d@example.com", i), v, reason, list, float64(i%20), 1); err != nil {
			tb.Fatal(err)
		}
		addr := fmt.Sprintf("u%d@r%d.test", i%50000, i%100)
		if _, err := rcpt.Exec(i, t, addr, fmt.Sprintf("r%d.test", i%100), "delivered", ""); err != nil {
			tb.Fatal(err)
		}
		if _, err := step.Exec(i, t); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Exec("ANALYZE"); err != nil {
		tb.Fatal(err)
	}
}

func benchID(i int) string { return fmt.Sprintf("1b%04x-%06x-AB", i/65536, i%65536) }

// benchQueries are the query kinds the database is indexed for, over
// a database made by fill of n messages.
func benchQueries(n int) []struct {
	name string
	q    Query
} {
	mid := benchStart.Add(time.Duration(n/2) * benchEvery)
	return []struct {
		name string
		q    Query
	}{
		{"sender", Query{Sender: "s123@d123.example"}},
		{"sender+time", Query{Sender: "s123@d123.example", Since: mid, Until: mid.Add(7 * 24 * time.Hour)}},
		{"sender-domain", Query{Sender: "@d7.example"}},
		{"recipient", Query{Recipient: "u77@r77.test"}},
		{"recipient-domain+time", Query{Recipient: "@r5.test", Since: mid, Until: mid.Add(24 * time.Hour)}},
		{"id", Query{ID: benchID(n / 3)}},
		{"message-id", Query{MessageID: fmt.Sprintf("<m%d@example.com>", n/3)}},
		{"client", Query{Client: "10.1.2.3"}},
		{"client-cidr", Query{Client: "10.1.2.0/24"}},
		{"verdict+time", Query{Verdict: Rejected, Since: mid, Until: mid.Add(time.Hour)}},
		{"time", Query{Since: mid, Until: mid.Add(time.Hour)}},
		{"sender-domain-page", Query{Sender: "@d7.example", Before: int64(n / 2)}},
		{"newest", Query{}},
	}
}

// TestQueryPlans: every query kind is answered from an index, never by
// scanning the messages or the recipients.
func TestQueryPlans(t *testing.T) {
	s := openSQLite(t)
	const n = 10000
	fill(t, s.db, n)
	for _, bq := range benchQueries(n) {
		query, args, err := bq.q.searchSQL()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, p := range plan {
			// A SCAN is a whole table; "SCAN m USING INDEX messages_time"
			// (the newest rows, no condition) is an index read in order.
			if strings.HasPrefix(p, "SCAN ") && !strings.Contains(p, " USING INDEX ") {
				t.Errorf("%s: the plan scans a table:\n%s", bq.name, strings.Join(plan, "\n"))
				break
			}
		}
		ms, err := s.Search(context.Background(), bq.q)
		if err != nil || len(ms) == 0 {
			t.Errorf("%s: %d rows, %v", bq.name, len(ms), err)
		}
	}
}

// BenchmarkSearch1M times each query kind over 1,000,000 messages. The
// database is built once (a few minutes) and kept in the temp directory
// for the next run (MXGATE_BENCH_DB names another file).
func BenchmarkSearch1M(b *testing.B) {
	const n = 1000000
	path := os.Getenv("MXGATE_BENCH_DB")
	if path == "" {
		path = filepath.Join(os.TempDir(), fmt.Sprintf("mxgate-tracking-bench-1m-v%d.db", schemaVersion))
	}
	if _, err := os.Stat(path); err != nil {
		tmp := path + ".tmp"
		os.Remove(tmp)
		s, err := Open(context.Background(), Options{URL: "sqlite:" + tmp})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, s.db, n)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(context.Background(), Options{URL: "sqlite:" + path, ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, bq := range benchQueries(n) {
		b.Run(bq.name, func(b *testing.B) {
			for b.Loop() {
				ms, err := s.Search(context.Background(), bq.q)
				if err != nil || len(ms) == 0 {
					b.Fatalf("%d rows, %v", len(ms), err)
				}
			}
		})
	}
}

// BenchmarkEvent is the mail path's cost of tracking: one event copied
// into the queue, the events of whole sessions in turn (connect, checks,
// accepted, disconnect, delivery, completed) while the writer drains
// them. "dropped" counts the events the writer could not keep up with:
// none at the rate of real mail, many in this loop.
func BenchmarkEvent(b *testing.B) {
	s, err := Open(context.Background(), Options{URL: "sqlite:" + filepath.Join(b.TempDir(), "t.db"), Queue: 10000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	evs := benchSessions(1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Event(&evs[i])
		if i++; i == len(evs) {
			i = 0
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(s.Dropped()), "dropped")
}

// BenchmarkWriter is what the writer sustains: the same sessions' events,
// each written (a Flush every 5000), so ns/op is per event written.
func BenchmarkWriter(b *testing.B) {
	s, err := Open(context.Background(), Options{URL: "sqlite:" + filepath.Join(b.TempDir(), "t.db"), Queue: 10000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	evs := benchSessions(1000)
	i, n := 0, 0
	for b.Loop() {
		s.Event(&evs[i])
		if i++; i == len(evs) {
			i = 0
		}
		if n++; n%5000 == 0 {
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if s.Dropped() > 0 {
		b.Fatalf("%d events dropped", s.Dropped())
	}
}

// benchSessions is the events of n accepted and delivered messages.
func benchSessions(n int) []event.Event {
	var evs []event.Event
	now := time.Now()
	for i := range n {
		conn, id := fmt.Sprintf("c%d", i), benchID(i)
		client := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)})
		evs = append(evs,
			event.Event{Kind: event.Connect, Conn: conn, Client: client, Listener: "smtp"},
			event.Event{Kind: event.Check, Conn: conn, Txn: 1, Check: "rbl", Stage: "rcpt", Action: "accept"},
			event.Event{Kind: event.Check, Conn: conn, Txn: 1, Check: "spamd", Stage: "data", Action: "accept", Score: 1, Scored: true},
			event.Event{Kind: event.Accepted, Conn: conn, Txn: 1, ID: id, Sender: "a@b.test", Recipients: []string{"c@d.test"}, Size: 4096, Source: "smtp"},
			event.Event{Kind: event.Disconnect, Conn: conn},
			event.Event{Kind: event.Delivery, ID: id, Recipient: "c@d.test", Outcome: event.Delivered, Transport: "downstream", Reply: "250 ok"},
			event.Event{Kind: event.Completed, ID: id},
		)
	}
	for i := range evs {
		evs[i].Time = now
	}
	return evs
}
