package rcptverify

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	tests := []struct {
		delim     string
		lowercase bool
		local     string
		want      string
	}{
		{"+", true, "User+Tag", "user@example.test"},
		{"+", false, "User+Tag", "User@example.test"},
		{"", true, "User+Tag", "user+tag@example.test"},
		{"+-", true, "a-b+c", "a@example.test"},
		{"+", true, "+tag", "+tag@example.test"}, // no local part before it: nothing to strip
	}
	for _, tc := range tests {
		st := Store{Delimiter: tc.delim, Lowercase: tc.lowercase}
		if got := Key(st, tc.local, "Example.TEST"); got != tc.want {
			t.Errorf("Key(%q, lowercase %v, %q) = %q, want %q", tc.delim, tc.lowercase, tc.local, got, tc.want)
		}
	}
}

// TestSingleFlight: 50 sessions asking about one address at once make
// one RCPT at the store.
func TestSingleFlight(t *testing.T) {
	release := make(chan struct{})
	s := startFakeStore(t, func(string) string { <-release; return "250 2.1.5 OK" })
	st := calloutTo(t, s.addr)
	v := newVerifier(t, testOptions(st))
	var wg sync.WaitGroup
	results := make([]Result, 50)
	for i := range results {
		wg.Go(func() { results[i] = lookup(v, st, "u@example.test") })
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, r := range results {
		if r.Verdict != Found {
			t.Errorf("session %d: %+v", i, r)
		}
	}
	if n := s.times("u@example.test"); n != 1 {
		t.Errorf("the store was asked %d times, want 1", n)
	}
}

// TestPersistent: answers survive a restart in the cache file.
func TestPersistent(t *testing.T) {
	s := startFakeStore(t, users("known@example.test"))
	st := calloutTo(t, s.addr)
	o := testOptions(st)
	o.CacheFile = filepath.Join(t.TempDir(), "db", "recipients.db")
	for round := range 2 {
		v, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"known@example.test", "nobody@example.test"} {
			r := lookup(v, st, a)
			if r.Cached != (round == 1) {
				t.Errorf("round %d: %s: Cached = %v", round, a, r.Cached)
			}
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.rcpts.Load(); n != 2 {
		t.Errorf("%d RCPTs at the store, want 2", n)
	}
}

// TestWaitBounded: a session that stops waiting gets Defer at once; the
// lookup goes on and its answer is cached.
func TestWaitBounded(t *testing.T) {
	release := make(chan struct{})
	s := startFakeStore(t, func(string) string { <-release; return "550 5.1.1 no" })
	st := calloutTo(t, s.addr)
	v := newVerifier(t, testOptions(st))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if r := v.Lookup(ctx, st, "u", "example.test"); r.Verdict != Defer {
		t.Errorf("Lookup = %+v, want Defer", r)
	}
	close(release)
	deadline := time.Now().Add(time.Second)
	for {
		if r := lookup(v, st, "u@example.test"); r.Cached && r.Verdict == NotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the answer of the abandoned lookup was not cached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
