package gateway

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
)

// TestEvents checks the events a session emits, as metrics and tracking
// see them, beside the replies the client gets.
func TestEvents(t *testing.T) {
	spam := filters.Verdict{Action: filters.Quarantine, Reason: "spam score 12.1 >= quarantine 10.0", ReasonCode: "spam-score",
		Score: 12.1, Scored: true, Log: "spamd score=12.1 required=5.0"}
	virus := filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Virus found: Eicar-Test-Signature",
		ReasonCode: "virus", Virus: "Eicar-Test-Signature", Log: "clamd virus=Eicar-Test-Signature"}
	clean := filters.Verdict{Action: filters.Accept, Score: 1.5, Scored: true, Log: "spamd score=1.5 required=5.0"}
	const msg = "From: a@client.test\nSubject: cheap\n  pills\nMessage-ID: <m1@client.test>\n\nBuy now.\n"

	tests := []struct {
		name    string
		scanner *filters.Verdict // the one fake scanner's verdict; nil: the checks of the config
		edit    func(*config.Config)
		rcpt    string
		reply   string // the DATA reply, or RCPT's when it refuses
		want    event.Event
	}{
		{
			name: "accepted", scanner: &clean, rcpt: "u@example.test", reply: "250 2.0.0 OK id=",
			want: event.Event{Kind: event.Accepted, Sender: "a@client.test", Recipients: []string{"u@example.test"},
				Subject: "cheap  pills", MessageID: "m1@client.test", Action: "accept", Source: "smtp", Score: 1.5, Scored: true},
		},
		{
			name: "relay denied", rcpt: "u@elsewhere.test", reply: "550 5.7.1 ",
			want: event.Event{Kind: event.Refused, Stage: "rcpt", Code: 550, Enhanced: "5.7.1", Sender: "a@client.test",
				Recipient: "u@elsewhere.test", Check: "relay", ReasonCode: "relay-denied"},
		},
		{
			name: "spam quarantined", scanner: &spam, rcpt: "u@example.test", reply: "250 2.0.0 OK id=",
			want: event.Event{Kind: event.Quarantined, Sender: "a@client.test", Recipients: []string{"u@example.test"},
				Subject: "cheap  pills", MessageID: "m1@client.test", Action: "quarantine", Source: "smtp", Check: "spamd",
				ReasonCode: "spam-score", Reason: "spam score 12.1 >= quarantine 10.0", Score: 12.1, Scored: true},
		},
		{
			name: "virus refused", scanner: &virus, rcpt: "u@example.test", reply: "550 5.7.1 Virus found",
			want: event.Event{Kind: event.Refused, Stage: "data", Code: 550, Enhanced: "5.7.1", Text: "Virus found: Eicar-Test-Signature",
				Sender: "a@client.test", Recipients: []string{"u@example.test"}, Check: "spamd", ReasonCode: "virus",
				Virus: "Eicar-Test-Signature", Reason: "clamd virus=Eicar-Test-Signature"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts *testServer
			if tt.scanner != nil {
				ts = newFilterServer(t, filters.Entry{Filter: &fakeFilter{name: "spamd", verdict: *tt.scanner}})
			} else {
				ts = newTestServer(t, tt.edit)
			}
			c := dial(t, ts.addr(0))
			c.greet()
			c.expect("MAIL FROM:<a@client.test>", "250 ")
			if tt.want.Stage == "rcpt" {
				c.expect("RCPT TO:<"+tt.rcpt+">", tt.reply)
			} else {
				c.expect("RCPT TO:<"+tt.rcpt+">", "250 ")
				c.expect("DATA", "354 ")
				c.send(wire(msg))
				c.expect("", tt.reply)
			}
			c.expect("QUIT", "221 ")
			c.rest()
			rec := ts.events
			disc, err := rec.Wait(event.Disconnect, clientDeadline)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rec.Wait(tt.want.Kind, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conn := rec.Of(event.Connect)
			if len(conn) != 1 || conn[0].Conn == "" || conn[0].Listener != "smtp" || conn[0].Client.String() != "127.0.0.1" {
				t.Fatalf("Connect events %+v, want one from 127.0.0.1 on smtp", conn)
			}
			if got.Conn != conn[0].Conn || disc.Conn != conn[0].Conn || got.Txn != 1 {
				t.Errorf("event Conn %q Txn %d, disconnect %q, want connection %q, transaction 1", got.Conn, got.Txn, disc.Conn, conn[0].Conn)
			}
			if disc.Duration <= 0 {
				t.Errorf("Disconnect Duration %v", disc.Duration)
			}
			if tt.want.Kind != event.Refused {
				id := ts.onlyIDOrQuarantined(got.ID)
				if got.ID != id || got.Size <= 0 {
					t.Errorf("ID %q Size %d, want %s and a size", got.ID, got.Size, id)
				}
			}
			if tt.want.Kind == event.Refused && tt.want.Stage == "data" && got.ID == "" {
				t.Error("a refusal after DATA names no message ID")
			}
			// What the test does not pin down.
			w := tt.want
			w.Time, w.Conn, w.Txn, w.Client, w.Helo, w.Listener, w.ID, w.Size = got.Time, got.Conn, got.Txn, got.Client, got.Helo, got.Listener, got.ID, got.Size
			if w.Text == "" {
				w.Text = got.Text
			}
			if w.Reason == "" {
				w.Reason = got.Reason
			}
			if !equalEvent(got, w) {
				t.Errorf("got  %+v\nwant %+v", got, w)
			}
			if got.Helo != "client.test" {
				t.Errorf("Helo %q", got.Helo)
			}
			// Every check that answered has its Check event.
			checks := rec.Of(event.Check)
			if len(checks) == 0 {
				t.Fatal("no Check events")
			}
			for _, e := range checks {
				if e.Check == "" || e.Stage == "" || e.Action == "" || e.Conn != conn[0].Conn {
					t.Errorf("Check event %+v lacks its check, stage, action or connection", e)
				}
			}
			if tt.scanner != nil {
				i := slices.IndexFunc(checks, func(e event.Event) bool { return e.Check == "spamd" })
				if i < 0 || checks[i].Stage != "data" || checks[i].Action != tt.scanner.Action.String() ||
					checks[i].Score != tt.scanner.Score || checks[i].Virus != tt.scanner.Virus || checks[i].Reason != tt.scanner.Log {
					t.Errorf("scanner's Check event: %+v", checks)
				}
			}
		})
	}
}

func equalEvent(a, b event.Event) bool {
	if !slices.Equal(a.Recipients, b.Recipients) {
		return false
	}
	a.Recipients, b.Recipients = nil, nil
	return reflect.DeepEqual(a, b)
}

// onlyIDOrQuarantined is the ID a message was kept under: the queue's,
// or, when nothing was queued, the event's (quarantine is not the queue).
func (ts *testServer) onlyIDOrQuarantined(id string) string {
	if q := ts.queued(); len(q) == 1 {
		return string(q[0])
	}
	return id
}

// TestEventsDNSList: a refusal by a DNS list names the list.
func TestEventsDNSList(t *testing.T) {
	ns := startDNS(t, zones)
	ts := newTestServer(t, withRBL(ns.addr, 1, 1, list("bl.test", "ip", 1)))
	c := dialFrom(t, "127.0.0.1", ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "554 5.7.1 ")
	c.expect("QUIT", "221 ")
	c.rest()
	got, err := ts.events.Wait(event.Refused, clientDeadline)
	if err != nil {
		t.Fatal(err)
	}
	if got.Check != "rbl" || got.List != "bl.test" || got.ReasonCode != "rbl-listed" || got.Recipient != "u@example.test" || got.Code != 554 {
		t.Errorf("Refused event %+v, want rbl's refusal naming bl.test", got)
	}
}

// TestEventsGatewayRefusals: refusals no check made (syntax, size, the
// connection limit) are events too.
func TestEventsGatewayRefusals(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.MaxMessageSize = 1000; c.SMTP.MaxConnectionsPerIP = 1 })
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test> SIZE=5000", "552 ")
	c.expect("MAIL FROM:<a@client.test.>", "501 ")
	c2 := dial(t, ts.addr(0))
	c2.expect("", "421 ")
	c.expect("QUIT", "221 ")
	var codes []string
	for _, e := range ts.events.Of(event.Refused) {
		codes = append(codes, e.Stage+" "+e.ReasonCode)
	}
	if want := []string{"protocol protocol", "mail sender-syntax"}; !slices.Equal(codes, want) {
		t.Errorf("Refused events %q, want %q", codes, want)
	}
	r, err := ts.events.Wait(event.ConnRefused, clientDeadline)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 421 || r.ReasonCode != "connection-limit" || r.Reason != "too many connections from that IP address" {
		t.Errorf("ConnRefused %+v", r)
	}
}

// BenchmarkEmitChecks is the cost of a stage's Check events, per stage of
// eight answers: nothing when no sink listens, a copy per answer when one
// does.
func BenchmarkEmitChecks(b *testing.B) {
	out := filters.Outcome{}
	for i := range 8 {
		out.Events = append(out.Events, filters.Event{Check: "check" + string(rune('a'+i)), Stage: filters.StageRcpt,
			Verdict: filters.Verdict{Log: "facts"}, Duration: time.Millisecond})
	}
	for _, tc := range []struct {
		name string
		bus  *event.Bus
	}{
		{"off", nil},
		{"on", event.NewBus(event.SinkFunc(func(*event.Event) {}))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := &Server{bus: tc.bus, log: discardLog{}}
			c := &conn{srv: srv, name: "x-1", listener: "smtp"}
			b.ReportAllocs()
			for b.Loop() {
				srv.report(out, "", "h", c, 1)
			}
		})
	}
}

// TestEventsAuth: a failed AUTH is a Refused at stage "auth" naming the
// login tried, on the submission listener; go-smtp's reply is not a
// second event.
func TestEventsAuth(t *testing.T) {
	ts := newTestServer(t, withAuth(t, nil))
	c := dial(t, ts.addr(2))
	c.expect("", "220 ")
	c.expect("EHLO client.test", "250-")
	c, _ = startTLS(t, c)
	c.expect("AUTH PLAIN "+plainResp("alice@example.test", "wrong"), "535 5.7.8 ")
	c.expect("QUIT", "221 ")
	rs := ts.events.Of(event.Refused)
	if len(rs) != 1 || rs[0].Stage != "auth" || rs[0].AuthUser != "alice@example.test" || rs[0].Code != 535 ||
		rs[0].Enhanced != "5.7.8" || rs[0].ReasonCode != "auth-failed" || rs[0].Listener != "submission" {
		t.Errorf("Refused events %+v, want one auth failure of alice on submission", rs)
	}
}

type discardLog struct{}

func (discardLog) Main(string, string)              {}
func (discardLog) Reject(string, string, ...string) {}
func (discardLog) Panic(string)                     {}
