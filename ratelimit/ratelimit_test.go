package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/statetest"
	"mxgate/state"
)

var t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func limit(name, key, per, action, rate string) Limit {
	var n float64
	var p string
	fmt.Sscanf(rate, "%g/%s", &n, &p)
	d, _ := time.ParseDuration(p)
	return Limit{Name: name, Key: key, Per: per, Action: action, OnError: filters.OnErrorAccept, Rate: Rate{Count: n, Period: d, Text: rate}}
}

// reply is what the client sees of a verdict.
func reply(v filters.Verdict) string {
	if !v.Refuses() {
		return "ok"
	}
	return fmt.Sprintf("%d %d.%d.%d %s", v.Code, v.Enhanced[0], v.Enhanced[1], v.Enhanced[2], v.Text)
}

// TestExim replays sequences of messages (MAIL, one RCPT each) through a
// limit and checks each reply: Exim's smoothed rate, "over when rate >=
// limit", leaky and strict.
func TestExim(t *testing.T) {
	tests := []struct {
		name   string
		limit  Limit
		strict bool
		at     []time.Duration // when each message comes, from t0
		want   []string
	}{
		{"burst over 3/1h", limit("l", KeySender, PerMail, ActionDefer, "3/1h"), false,
			[]time.Duration{0, 0, 0, 0}, []string{"ok", "ok", "451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded"}},
		{"reject", limit("l", KeySender, PerMail, ActionReject, "2/1h"), false,
			[]time.Duration{0, 0}, []string{"ok", "550 5.7.1 Rate limit exceeded"}},
		// Leaky: the refused attempts are not stored, so the rate stays
		// at 2 and a minute later has leaked below the limit (2.96).
		{"leaky recovers", limit("l", KeySender, PerMail, ActionDefer, "3/1h"), false,
			[]time.Duration{0, 0, 0, 0, time.Minute, time.Hour},
			[]string{"ok", "ok", "451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded", "ok", "ok"}},
		// Strict: every attempt counts; ten at once are a rate of 10, an
		// hour later still 4.3.
		{"strict stays over", limit("l", KeySender, PerMail, ActionDefer, "3/1h"), true,
			[]time.Duration{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, time.Hour},
			[]string{"ok", "ok", "451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded",
				"451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded",
				"451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded", "451 4.7.0 Rate limit exceeded"}},
		// A steady 1 per 30 min is a rate of about 2/1h: under 3/1h.
		{"steady under", limit("l", KeySender, PerMail, ActionDefer, "3/1h"), false,
			[]time.Duration{0, 30 * time.Minute, time.Hour, 90 * time.Minute, 2 * time.Hour}, []string{"ok", "ok", "ok", "ok", "ok"}},
		{"per rcpt", limit("l", KeySender, PerRcpt, ActionDefer, "2/1h"), false,
			[]time.Duration{0, 0}, []string{"ok", "451 4.7.0 Rate limit exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t0}
			tt.limit.Strict = tt.strict
			k := New(Options{Limits: []Limit{tt.limit}, Store: statetest.New(c.now), Now: c.now})
			for i, at := range tt.at {
				c.t = t0.Add(at)
				got := send(k, "10.0.0.1", "", "Alice@Example.TEST", "bob@dest.test")
				if got != tt.want[i] {
					t.Errorf("message %d at +%v: %s, want %s", i+1, at, got, tt.want[i])
				}
			}
		})
	}
}

// send is one connection with one message, the reply of its refusal or "ok".
func send(k *Check, ip, user, sender, rcpt string) string {
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr(ip)})
	defer s.Close()
	_, dom, _ := strings.Cut(sender, "@")
	tx := &filters.Tx{Sender: sender, SenderDomain: dom, AuthUser: user}
	if v := s.Mail(ctx, tx); v.Refuses() {
		return reply(v)
	}
	return reply(s.Rcpt(ctx, tx, rcpt))
}

// TestKeys: each key counts what it says, and a client without one (no
// AUTH) is not counted by that limit; overrides raise one value's limit.
func TestKeys(t *testing.T) {
	type msg struct{ ip, user, sender, want string }
	over := "451 4.7.0 Rate limit exceeded"
	tests := []struct {
		name  string
		limit Limit
		msgs  []msg
	}{
		{"client_ip", limit("ip", KeyClientIP, PerMail, ActionDefer, "2/1h"), []msg{
			{"10.0.0.1", "", "a@x.test", "ok"}, {"10.0.0.2", "", "a@x.test", "ok"}, {"10.0.0.1", "", "b@y.test", over}}},
		{"auth_user", limit("u", KeyAuthUser, PerMail, ActionDefer, "2/1h"), []msg{
			{"10.0.0.1", "joe", "a@x.test", "ok"}, {"10.0.0.2", "", "a@x.test", "ok"}, {"10.0.0.3", "", "a@x.test", "ok"},
			{"10.0.0.4", "joe", "b@y.test", over}}},
		{"auth_user case-insensitive", limit("u", KeyAuthUser, PerMail, ActionDefer, "2/1h"), []msg{
			{"10.0.0.1", "Joe", "a@x.test", "ok"}, {"10.0.0.2", "JOE", "a@x.test", over}}},
		{"sender case-insensitive", limit("s", KeySender, PerMail, ActionDefer, "2/1h"), []msg{
			{"10.0.0.1", "", "A@X.test", "ok"}, {"10.0.0.1", "", "b@x.test", "ok"}, {"10.0.0.2", "", "a@x.TEST", over}}},
		{"sender_domain", limit("d", KeySenderDomain, PerMail, ActionDefer, "2/1h"), []msg{
			{"10.0.0.1", "", "a@x.test", "ok"}, {"10.0.0.1", "", "", "ok"}, {"10.0.0.1", "", "b@X.test", over}}},
		{"override", func() Limit {
			l := limit("d", KeySenderDomain, PerMail, ActionDefer, "1/1h")
			l.Overrides = map[string]Rate{"bulk.test": {Count: 3, Period: time.Hour, Text: "3/1h"}}
			return l
		}(), []msg{
			{"10.0.0.1", "", "a@bulk.test", "ok"}, {"10.0.0.1", "", "a@bulk.test", "ok"}, {"10.0.0.1", "", "a@BULK.test", over},
			{"10.0.0.1", "", "a@x.test", over}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t0}
			k := New(Options{Limits: []Limit{tt.limit}, Store: statetest.New(c.now), Now: c.now})
			for i, m := range tt.msgs {
				if got := send(k, m.ip, m.user, m.sender, "r@dest.test"); got != m.want {
					t.Errorf("message %d %+v: %s, want %s", i+1, m, got, m.want)
				}
			}
		})
	}
}

// TestPerConn counts a connection once, whatever its messages.
func TestPerConn(t *testing.T) {
	c := &clock{t0}
	k := New(Options{Limits: []Limit{limit("c", KeyClientIP, PerConn, ActionDefer, "2/1h")}, Store: statetest.New(c.now), Now: c.now})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
	for i := range 5 {
		if v := s.Mail(ctx, &filters.Tx{Sender: "a@x.test"}); v.Refuses() {
			t.Fatalf("message %d of the first connection: %s", i+1, reply(v))
		}
		s.Reset(ctx)
	}
	if got := send(k, "10.0.0.1", "", "a@x.test", "r@dest.test"); got != "451 4.7.0 Rate limit exceeded" {
		t.Errorf("second connection: %s, want the deferral", got)
	}
}

// TestHold: over a hold limit the message is accepted and held under
// NAME:VALUE, with one paniclog alert per key and period and the
// rejectlog-free trace.
func TestHold(t *testing.T) {
	c := &clock{t0}
	k := New(Options{Limits: []Limit{limit("cpanel", KeySenderDomain, PerMail, ActionHold, "2/1h")}, Store: statetest.New(c.now), Now: c.now})
	ctx := context.Background()
	var holds, alerts []string
	for range 4 {
		s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
		tx := &filters.Tx{Sender: "a@x.test", SenderDomain: "x.test"}
		v := s.Mail(ctx, tx)
		if v.Refuses() {
			t.Fatalf("MAIL refused: %s", reply(v))
		}
		for _, l := range v.Logs {
			if l.Kind == filters.PanicLog {
				alerts = append(alerts, l.Text)
			}
		}
		holds = append(holds, s.Data(ctx, &filters.Message{}).Hold)
		s.Close()
	}
	if want := []string{"", "cpanel:x.test", "cpanel:x.test", "cpanel:x.test"}; fmt.Sprint(holds) != fmt.Sprint(want) {
		t.Errorf("holds %q, want %q", holds, want)
	}
	want := "ratelimit hold: cpanel:x.test over 2/1h (rate 2.0): its mail is held; `mxgate hold release cpanel:x.test`"
	if len(alerts) != 1 || alerts[0] != want {
		t.Errorf("paniclog alerts %q, want one: %q", alerts, want)
	}
}

// TestVerdictLog: the rejectlog's reason and the -bh trace.
func TestVerdictLog(t *testing.T) {
	c := &clock{t0}
	k := New(Options{Limits: []Limit{limit("users", KeyAuthUser, PerMail, ActionDefer, "1/1h")}, Store: statetest.New(c.now), Now: c.now})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
	tx := &filters.Tx{Sender: "a@x.test", AuthUser: "joe"}
	v := s.Mail(ctx, tx)
	if v.Trace[0] != "ratelimit users: auth_user joe: rate 1.0 / 1h, limit 1/1h: over: deferred" {
		t.Errorf("trace %q", v.Trace)
	}
	if v.Log != "rate limit exceeded: users auth_user joe: Sender rate 1.0 / 1h (limit 1/1h)" || v.ReasonCode != "ratelimit" {
		t.Errorf("log %q reason %q", v.Log, v.ReasonCode)
	}
}

// TestOnError: a store that is down is the limit's on_error, with a
// paniclog line.
func TestOnError(t *testing.T) {
	for _, tt := range []struct{ onError, want string }{
		{filters.OnErrorAccept, "ok"},
		{filters.OnErrorTempfail, "451 4.3.0 Temporary local problem - please try later"},
	} {
		c := &clock{t0}
		st := statetest.New(c.now)
		st.Down = true
		l := limit("l", KeySender, PerMail, ActionDefer, "1/1h")
		l.OnError = tt.onError
		k := New(Options{Limits: []Limit{l}, Store: st, Now: c.now})
		s := k.Open(context.Background(), &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
		v := s.Mail(context.Background(), &filters.Tx{Sender: "a@x.test"})
		if got := reply(v); got != tt.want {
			t.Errorf("on_error %s: %s, want %s", tt.onError, got, tt.want)
		}
		if len(v.Logs) != 1 || v.Logs[0].Kind != filters.PanicLog || !strings.Contains(v.Logs[0].Text, "state store unavailable") {
			t.Errorf("on_error %s: logs %+v, want a paniclog line", tt.onError, v.Logs)
		}
	}
}

// TestStoreDownLoggedOnce: behind the breaker checks.Build puts in front
// of the store, a dead store is logged once per cool-down, not per MAIL,
// and on_error still applies to every MAIL.
func TestStoreDownLoggedOnce(t *testing.T) {
	c := &clock{t0}
	st := statetest.New(c.now)
	st.Down = true
	l := limit("l", KeySender, PerMail, ActionDefer, "1/1h")
	l.OnError = filters.OnErrorTempfail
	k := New(Options{Limits: []Limit{l}, Store: state.NewBreaker(st, time.Minute), Now: c.now})
	s := k.Open(context.Background(), &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
	logged := 0
	for range 3 {
		v := s.Mail(context.Background(), &filters.Tx{Sender: "a@x.test"})
		if got := reply(v); got != "451 4.3.0 Temporary local problem - please try later" {
			t.Errorf("MAIL with the store down: %s, want on_error's 451", got)
		}
		logged += len(v.Logs)
	}
	if logged != 1 {
		t.Errorf("%d paniclog lines for 3 MAILs in one cool-down, want 1", logged)
	}
}

// BenchmarkMail is what a rate-limit check adds to a MAIL (two limits)
// with the in-memory store.
func BenchmarkMail(b *testing.B) {
	k := New(Options{Limits: []Limit{
		limit("ip", KeyClientIP, PerMail, ActionDefer, "1000000/1h"),
		limit("d", KeySenderDomain, PerMail, ActionHold, "1000000/1h"),
	}, Store: statetest.New(nil)})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
	tx := &filters.Tx{Sender: "a@x.test", SenderDomain: "x.test"}
	for b.Loop() {
		if v := s.Mail(ctx, tx); v.Refuses() {
			b.Fatal(reply(v))
		}
	}
}

// BenchmarkRcpt is one per-rcpt limit at RCPT.
func BenchmarkRcpt(b *testing.B) {
	k := New(Options{Limits: []Limit{limit("r", KeySender, PerRcpt, ActionDefer, "1000000/1h")}, Store: statetest.New(nil)})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
	tx := &filters.Tx{Sender: "a@x.test", SenderDomain: "x.test"}
	for b.Loop() {
		if v := s.Rcpt(ctx, tx, "r@dest.test"); v.Refuses() {
			b.Fatal(reply(v))
		}
	}
}

// TestHoldIsPerTransaction: a hold is the transaction's; the next MAIL,
// under the limit, is not held, even without a Reset in between.
func TestHoldIsPerTransaction(t *testing.T) {
	c := &clock{t0}
	l := limit("d", KeySenderDomain, PerMail, ActionHold, "1/1h")
	l.Overrides = map[string]Rate{"y.test": {Count: 5, Period: time.Hour, Text: "5/1h"}}
	k := New(Options{Limits: []Limit{l}, Store: statetest.New(c.now), Now: c.now})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
	s.Mail(ctx, &filters.Tx{Sender: "a@x.test", SenderDomain: "x.test"})
	if h := s.Data(ctx, &filters.Message{}).Hold; h != "d:x.test" {
		t.Fatalf("hold %q, want d:x.test", h)
	}
	s.Mail(ctx, &filters.Tx{Sender: "a@y.test", SenderDomain: "y.test"})
	if h := s.Data(ctx, &filters.Message{}).Hold; h != "" {
		t.Errorf("next transaction held as %q", h)
	}
}

// TestPerConnStands: a connection over a per-conn limit stays over for
// each of its messages, as Exim's per_conn answers every ACL check of the
// connection alike: a second MAIL is deferred again, and with action
// "hold" every message of the connection is held, not only the first.
func TestPerConnStands(t *testing.T) {
	for _, action := range []string{ActionDefer, ActionHold} {
		t.Run(action, func(t *testing.T) {
			c := &clock{t0}
			k := New(Options{Limits: []Limit{limit("c", KeyClientIP, PerConn, action, "2/1h")}, Store: statetest.New(c.now), Now: c.now})
			ctx := context.Background()
			if got := send(k, "10.0.0.1", "", "a@x.test", "r@dest.test"); got != "ok" {
				t.Fatalf("first connection: %s", got)
			}
			s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("10.0.0.1")})
			defer s.Close()
			var got []string
			for range 3 {
				v := s.Mail(ctx, &filters.Tx{Sender: "a@x.test"})
				if v.Refuses() {
					got = append(got, reply(v))
					continue
				}
				got = append(got, "held as "+s.Data(ctx, &filters.Message{}).Hold)
			}
			want := "451 4.7.0 Rate limit exceeded"
			if action == ActionHold {
				want = "held as c:10.0.0.1"
			}
			for i, g := range got {
				if g != want {
					t.Errorf("message %d of the second connection: %s, want %s", i+1, g, want)
				}
			}
		})
	}
}
