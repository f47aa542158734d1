package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/statetest"
)

var t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

// attempt is one RCPT at t0+at.
type attempt struct {
	at               time.Duration
	ip, sender, rcpt string
	user             string
	allowed          bool // the rbl check found the client on a DNSWL
	want             string
}

const (
	ok = "ok"
)

func deferred(secs int) string {
	return fmt.Sprintf("451 4.7.1 Greylisted, please try again in %d seconds", secs)
}

// TestGreylist replays attempts through one check with delay 5m, retry
// window 1h, expire 35d, auto_allow 2, and checks each reply.
func TestGreylist(t *testing.T) {
	tests := []struct {
		name     string
		attempts []attempt
	}{
		{"first deferred, early retry deferred, retry after delay passes, remembered", []attempt{
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
			{at: 2 * time.Minute, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(180)},
			{at: 6 * time.Minute, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: ok},
			{at: 30 * 24 * time.Hour, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: ok},
		}},
		{"another address of the /24, case folded", []attempt{
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
			{at: 10 * time.Minute, ip: "192.0.2.200", sender: "A@X.test", rcpt: "B@dest.test", want: ok},
		}},
		{"another /24 is another triplet", []attempt{
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
			{at: 10 * time.Minute, ip: "192.0.3.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
		}},
		{"IPv6 by /64", []attempt{
			{at: 0, ip: "2001:db8:1:2::10", sender: "", rcpt: "b@dest.test", want: deferred(300)},
			{at: 10 * time.Minute, ip: "2001:db8:1:2:ffff::1", sender: "", rcpt: "b@dest.test", want: ok},
		}},
		{"retry after the window starts over", []attempt{
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
			{at: 2 * time.Hour, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
			{at: 2*time.Hour + 5*time.Minute, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: ok},
		}},
		{"auto-allow after 2 passed triplets", []attempt{
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "c@dest.test", want: deferred(300)},
			{at: 5 * time.Minute, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: ok},
			{at: 5 * time.Minute, ip: "192.0.2.10", sender: "a@x.test", rcpt: "c@dest.test", want: ok},
			{at: 6 * time.Minute, ip: "192.0.2.11", sender: "new@y.test", rcpt: "d@dest.test", want: ok},
		}},
		{"skipped: trusted, authenticated, DNSWL", []attempt{
			{at: 0, ip: "10.1.1.1", sender: "a@x.test", rcpt: "b@dest.test", want: ok},
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", user: "joe", want: ok},
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", allowed: true, want: ok},
			{at: 0, ip: "192.0.2.10", sender: "a@x.test", rcpt: "b@dest.test", want: deferred(300)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			clock := func() time.Time { return now }
			k := New(Options{Store: statetest.New(clock), Delay: 5 * time.Minute, RetryWindow: time.Hour, Expire: 35 * 24 * time.Hour,
				AutoAllow: 2, Skip: func(ip netip.Addr) bool { return ip.Is4() && ip.As4()[0] == 10 }, Now: clock})
			for i, a := range tt.attempts {
				now = t0.Add(a.at)
				if got := rcpt(k, a); got != a.want {
					t.Errorf("attempt %d %+v: %s, want %s", i+1, a, got, a.want)
				}
			}
		})
	}
}

func rcpt(k *Check, a attempt) string {
	ctx := context.Background()
	c := &filters.Conn{IP: netip.MustParseAddr(a.ip)}
	c.Allowlisted.Store(a.allowed)
	s := k.Open(ctx, c)
	defer s.Close()
	v := s.Rcpt(ctx, &filters.Tx{Sender: a.sender, AuthUser: a.user}, a.rcpt)
	if !v.Refuses() {
		return ok
	}
	return fmt.Sprintf("%d %d.%d.%d %s", v.Code, v.Enhanced[0], v.Enhanced[1], v.Enhanced[2], v.Text)
}

// TestLines: the rejectlog reason, postgrey's "delayed" line, the trace.
func TestLines(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	k := New(Options{Store: statetest.New(clock), Delay: 5 * time.Minute, RetryWindow: time.Hour, Expire: time.Hour, Now: clock})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("192.0.2.10")})
	tx := &filters.Tx{Sender: "a@x.test"}
	v := s.Rcpt(ctx, tx, "b@dest.test")
	if want := "greylisted: triplet (192.0.2.0/24, <a@x.test>, <b@dest.test>) first seen"; v.Log != want || v.ReasonCode != "greylisted" {
		t.Errorf("log %q reason %q, want %q", v.Log, v.ReasonCode, want)
	}
	now = t0.Add(7 * time.Minute)
	v = s.Rcpt(ctx, tx, "b@dest.test")
	if len(v.Logs) != 1 || v.Logs[0].Text != "greylist: triplet (192.0.2.0/24, <a@x.test>, <b@dest.test>) passed, delayed 420 seconds" || !v.Logs[0].Host {
		t.Errorf("logs %+v", v.Logs)
	}
	if len(v.Trace) != 1 || !strings.HasSuffix(v.Trace[0], "retried after 7m0s: passed") {
		t.Errorf("trace %q", v.Trace)
	}
}

// TestOnError: a store that is down is on_error, with a paniclog line.
func TestOnError(t *testing.T) {
	for _, tt := range []struct{ onError, want string }{
		{filters.OnErrorAccept, ok},
		{filters.OnErrorTempfail, "451 4.3.0 Temporary local problem - please try later"},
	} {
		st := statetest.New(nil)
		st.Down = true
		k := New(Options{Store: st, Delay: time.Minute, RetryWindow: time.Hour, Expire: time.Hour, OnError: tt.onError})
		if got := rcpt(k, attempt{ip: "192.0.2.1", sender: "a@x.test", rcpt: "b@dest.test"}); got != tt.want {
			t.Errorf("on_error %s: %s, want %s", tt.onError, got, tt.want)
		}
	}
}

// BenchmarkRcptPassed is what greylisting adds to the RCPT of a triplet
// that passed before (the common case), with the in-memory store.
func BenchmarkRcptPassed(b *testing.B) {
	st := statetest.New(nil)
	ip := netip.MustParseAddr("192.0.2.10")
	if err := st.Set(context.Background(), TripletKey(ip, "a@x.test", "b@dest.test"), []byte("1 1"), time.Hour); err != nil {
		b.Fatal(err)
	}
	k := New(Options{Store: st, Delay: time.Minute, RetryWindow: time.Hour, Expire: time.Hour})
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: ip})
	tx := &filters.Tx{Sender: "a@x.test"}
	for b.Loop() {
		if v := s.Rcpt(ctx, tx, "b@dest.test"); v.Refuses() {
			b.Fatal(v.Text)
		}
	}
}
