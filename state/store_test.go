package state_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/state"
)

// backends are the stores every conformance case runs against: the
// embedded one with its file, and a real redis-server on loopback.
func backends(t *testing.T) map[string]func(t *testing.T) state.Store {
	return map[string]func(t *testing.T) state.Store{
		"embedded": func(t *testing.T) state.Store {
			return open(t, state.Options{File: filepath.Join(t.TempDir(), "state.db")})
		},
		"redis": func(t *testing.T) state.Store {
			return open(t, state.Options{URL: peertest.Redis(t), Timeout: 2 * time.Second, PoolSize: 4})
		},
	}
}

func open(tb testing.TB, o state.Options) state.Store {
	tb.Helper()
	s, err := state.Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// t0 is a fixed clock for the rate cases: Now travels as data, so both
// backends compute on the same instants.
var t0 = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

type rateEvent struct {
	at     time.Duration // after t0
	count  float64
	limit  float64
	strict bool
}

// rateCases are sequences of events on one key, each checked against
// NextRate applied to the record the reference itself keeps.
var rateCases = []struct {
	name   string
	period time.Duration
	events []rateEvent
}{
	{"first event is its count", time.Hour, []rateEvent{{0, 1, 10, false}}},
	{"steady one a minute", time.Hour, []rateEvent{
		{0, 1, 100, false}, {time.Minute, 1, 100, false}, {2 * time.Minute, 1, 100, false}, {3 * time.Minute, 1, 100, false}}},
	{"same instant adds up", time.Hour, []rateEvent{{0, 1, 100, false}, {0, 1, 100, false}, {0, 1, 100, false}}},
	{"per_rcpt counts", time.Hour, []rateEvent{{0, 5, 100, false}, {time.Second, 7, 100, false}, {time.Hour, 3, 100, false}}},
	{"leaky over limit stops storing", time.Hour, []rateEvent{
		{0, 1, 2, false}, {time.Millisecond, 1, 2, false}, {2 * time.Millisecond, 1, 2, false}, {3 * time.Millisecond, 1, 2, false},
		{10 * time.Minute, 1, 2, false}}},
	{"strict over limit keeps storing", time.Hour, []rateEvent{
		{0, 1, 2, true}, {time.Millisecond, 1, 2, true}, {2 * time.Millisecond, 1, 2, true}, {3 * time.Millisecond, 1, 2, true},
		{10 * time.Minute, 1, 2, true}}},
	{"decays over periods", time.Minute, []rateEvent{
		{0, 10, 1000, false}, {time.Second, 10, 1000, false}, {3 * time.Minute, 1, 1000, false}}},
	{"clock stepped back", time.Hour, []rateEvent{{time.Minute, 1, 100, false}, {0, 1, 100, false}}},
	{"sub-second period", 100 * time.Millisecond, []rateEvent{
		{0, 1, 50, false}, {10 * time.Millisecond, 1, 50, false}, {37 * time.Millisecond, 2, 50, false}}},
}

func TestConformance(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			ctx := context.Background()
			ns := func(t *testing.T) string { return t.Name() + ":" }

			t.Run("get set delete", func(t *testing.T) {
				k := ns(t) + "a"
				if _, ok, err := s.Get(ctx, k); ok || err != nil {
					t.Fatalf("Get absent = %v, %v", ok, err)
				}
				if err := s.Set(ctx, k, []byte("v1"), 0); err != nil {
					t.Fatal(err)
				}
				if v, ok, err := s.Get(ctx, k); !ok || err != nil || string(v) != "v1" {
					t.Fatalf("Get = %q, %v, %v", v, ok, err)
				}
				if err := s.Delete(ctx, k, ns(t)+"never"); err != nil {
					t.Fatal(err)
				}
				if _, ok, _ := s.Get(ctx, k); ok {
					t.Fatal("deleted key still there")
				}
			})

			t.Run("expiry", func(t *testing.T) {
				short, long := ns(t)+"short", ns(t)+"long"
				s.Set(ctx, short, []byte("x"), 100*time.Millisecond)
				s.Set(ctx, long, []byte("y"), time.Minute)
				if _, ok, _ := s.Get(ctx, short); !ok {
					t.Fatal("fresh key gone")
				}
				time.Sleep(250 * time.Millisecond)
				if _, ok, _ := s.Get(ctx, short); ok {
					t.Fatal("expired key still there")
				}
				if keys, _ := s.Keys(ctx, ns(t)); fmt.Sprint(keys) != fmt.Sprint([]string{long}) {
					t.Fatalf("Keys = %q, want only %q", keys, long)
				}
			})

			t.Run("keys prefix", func(t *testing.T) {
				p := ns(t)
				for _, k := range []string{"grey:1", "grey:2", "greyx", "rl:1", "gr*y:3"} {
					s.Set(ctx, p+k, []byte("1"), time.Minute)
				}
				for prefix, want := range map[string][]string{
					"grey:": {p + "grey:1", p + "grey:2"},
					"grey":  {p + "grey:1", p + "grey:2", p + "greyx"},
					"gr*":   {p + "gr*y:3"},
					"none:": {},
				} {
					got, err := s.Keys(ctx, p+prefix)
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("Keys(%q) = %q, want %q", prefix, got, want)
					}
				}
			})

			t.Run("incr ttl", func(t *testing.T) {
				k := ns(t) + "n"
				for i, want := range []int64{3, 5, 4} {
					n := []int64{3, 2, -1}[i]
					got, err := s.Incr(ctx, k, n, 200*time.Millisecond)
					if err != nil || got != want {
						t.Fatalf("Incr #%d = %d, %v; want %d", i, got, err, want)
					}
				}
				if v, _, _ := s.Get(ctx, k); string(v) != "4" {
					t.Fatalf("Get counter = %q, want \"4\"", v)
				}
				time.Sleep(350 * time.Millisecond)
				// The ttl counts from creation, not from the last Incr.
				if got, _ := s.Incr(ctx, k, 1, 0); got != 1 {
					t.Fatalf("Incr after expiry = %d, want 1", got)
				}
				// Created without ttl: a later ttl is given to it (EXPIRE NX).
				s.Incr(ctx, k, 1, 100*time.Millisecond)
				time.Sleep(250 * time.Millisecond)
				if _, ok, _ := s.Get(ctx, k); ok {
					t.Fatal("counter given a ttl later never expired")
				}
			})

			t.Run("rate", func(t *testing.T) {
				for _, c := range rateCases {
					t.Run(c.name, func(t *testing.T) {
						k := ns(t) + "rate"
						var prev float64
						var prevTime time.Time
						for i, e := range c.events {
							r := state.RateOptions{Period: c.period, Count: e.count, Limit: e.limit, Strict: e.strict, Now: t0.Add(e.at)}
							want, store := state.NextRate(prev, prevTime, r)
							if store {
								prev, prevTime = want, r.Now
							}
							got, err := s.Rate(ctx, k, r)
							if err != nil {
								t.Fatal(err)
							}
							if math.Abs(got-want) > 1e-9*math.Abs(want) {
								t.Errorf("event %d: rate %.17g, reference %.17g", i, got, want)
							}
						}
					})
				}
			})

			t.Run("rate record expires", func(t *testing.T) {
				// Five periods after its last stored event the record is
				// gone, by the wall clock: the next event is a first one.
				k := ns(t) + "rate"
				r := state.RateOptions{Period: 40 * time.Millisecond, Count: 3, Limit: 100, Now: t0}
				s.Rate(ctx, k, r)
				r.Now = t0.Add(time.Millisecond)
				if got, _ := s.Rate(ctx, k, r); got <= 3 {
					t.Fatalf("second event rate %v, want above 3", got)
				}
				if _, ok, _ := s.Get(ctx, k); !ok {
					t.Fatal("rate record not stored")
				}
				time.Sleep(300 * time.Millisecond)
				if _, ok, _ := s.Get(ctx, k); ok {
					t.Error("rate record outlived five periods")
				}
			})
		})
	}
}

// TestNextRate pins Exim's formula on numbers worked out by hand.
func TestNextRate(t *testing.T) {
	h := time.Hour
	for _, c := range []struct {
		name      string
		prev      float64
		prevAt    time.Duration // before Now; -1: never seen
		r         state.RateOptions
		rate      float64
		wantStore bool
	}{
		{"never seen", 0, -1, state.RateOptions{Period: h, Count: 1, Limit: 2}, 1, true},
		{"never seen, over a limit of 1", 0, -1, state.RateOptions{Period: h, Count: 1, Limit: 1}, 1, false},
		{"never seen, strict", 0, -1, state.RateOptions{Period: h, Count: 3, Limit: 1, Strict: true}, 3, true},
		// One period later: a = 1/e, rate = (1-1/e)*1/1 + 4/e.
		{"one period on", 4, h, state.RateOptions{Period: h, Count: 1, Limit: 10}, (1 - 1/math.E) + 4/math.E, true},
		{"same instant", 4, 0, state.RateOptions{Period: h, Count: 1, Limit: 10}, 5, true},
		{"leaky at the limit", 9, 0, state.RateOptions{Period: h, Count: 1, Limit: 10}, 10, false},
		{"at least count", 0, h, state.RateOptions{Period: h, Count: 2, Limit: 10}, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.r.Now = t0
			var at time.Time
			if c.prevAt >= 0 {
				at = t0.Add(-c.prevAt)
			}
			rate, store := state.NextRate(c.prev, at, c.r)
			if math.Abs(rate-c.rate) > 1e-6 || store != c.wantStore {
				t.Errorf("NextRate = %v, %v; want %v, %v", rate, store, c.rate, c.wantStore)
			}
		})
	}
}

// TestEmbeddedSurvivesRestart: counters and rates written before Close
// are read back by the next Open of the file; expired ones are not.
func TestEmbeddedSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "db", "state.db")
	s, err := state.Open(state.Options{File: file})
	if err != nil {
		t.Fatal(err)
	}
	s.Incr(ctx, "rl:n", 7, time.Hour)
	s.Set(ctx, "grey:short", []byte("x"), 50*time.Millisecond)
	r := state.RateOptions{Period: time.Hour, Count: 1, Limit: 100, Now: t0}
	s.Rate(ctx, "rl:rate", r)
	s.Set(ctx, "callout:gone", []byte("x"), 0)
	s.Delete(ctx, "callout:gone")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	s = open(t, state.Options{File: file})
	if v, ok, _ := s.Get(ctx, "rl:n"); string(v) != "7" || !ok {
		t.Errorf("counter after restart = %q, %v; want \"7\"", v, ok)
	}
	if keys, _ := s.Keys(ctx, ""); fmt.Sprint(keys) != "[rl:n rl:rate]" {
		t.Errorf("keys after restart = %q", keys)
	}
	r.Now = t0.Add(time.Second)
	got, _ := s.Rate(ctx, "rl:rate", r)
	want, _ := state.NextRate(1, t0, r)
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("rate after restart = %v, want %v", got, want)
	}
}

// TestRedisUnavailable: a server that accepts and never answers, and one
// that is not there, cost one timeout and give ErrUnavailable naming the
// server.
func TestRedisUnavailable(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Silent(t, silent)
	closed := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	const timeout = 300 * time.Millisecond
	ctx := context.Background()
	r := state.RateOptions{Period: time.Hour, Count: 1, Limit: 10, Now: t0}
	calls := map[string]func(s state.Store) error{
		"Get":    func(s state.Store) error { _, _, err := s.Get(ctx, "k"); return err },
		"Set":    func(s state.Store) error { return s.Set(ctx, "k", []byte("v"), time.Minute) },
		"Delete": func(s state.Store) error { return s.Delete(ctx, "k") },
		"Keys":   func(s state.Store) error { _, err := s.Keys(ctx, "k"); return err },
		"Incr":   func(s state.Store) error { _, err := s.Incr(ctx, "k", 1, time.Minute); return err },
		"Rate":   func(s state.Store) error { _, err := s.Rate(ctx, "k", r); return err },
	}
	for _, addr := range []string{silent.Addr().String(), closed} {
		s := open(t, state.Options{URL: "redis://" + addr + "/0", Timeout: timeout, PoolSize: 2})
		for name, call := range calls {
			t.Run(addr+"/"+name, func(t *testing.T) {
				start := time.Now()
				err := call(s)
				took := time.Since(start)
				if !errors.Is(err, state.ErrUnavailable) {
					t.Fatalf("err = %v, want ErrUnavailable", err)
				}
				if !strings.Contains(err.Error(), addr) {
					t.Errorf("err %q does not name %s", err, addr)
				}
				if took > timeout+200*time.Millisecond {
					t.Errorf("took %v, timeout %v", took, timeout)
				}
			})
		}
	}
}
