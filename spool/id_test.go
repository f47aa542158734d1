package spool

import (
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidID(t *testing.T) {
	tests := map[string]bool{
		"1tXyZa-000AbC-Qr":    true,
		"000000-000000-00":    true,
		"zzzzzz-zzzzzz-zz":    true,
		"":                    false,
		"1tXyZa-000AbC-Q":     false,
		"1tXyZa-000AbC-Qrr":   false,
		"1tXyZa_000AbC-Qr":    false,
		"1tXyZa-000AbC_Qr":    false,
		"../../etc/passwd":    false,
		"1tXy/a-000AbC-Qr":    false,
		"1tXyZa-000AbC-Q.":    false,
		"1tXyZa-000AbC-Q\n":   false,
		"1tXyZa-000AbC-Qr-H":  false,
		"1tXyZé-000AbC-Qr":    false,
		"1tXyZa-0000AbC-Qr":   false,
		"1tXyZa-000AbC-Qr ":   false,
		" 1tXyZa-000AbC-Qr":   false,
		"1tXyZa-000AbC-Q\x00": false,
	}
	for s, want := range tests {
		if got := ValidID(s); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", s, got, want)
		}
	}
}

func decode62(s string) int64 {
	var v int64
	for i := range len(s) {
		v = v*62 + int64(digit62(s[i]))
	}
	return v
}

// fakeClock is a wall clock without a monotonic reading that only moves
// when the generator sleeps or the test sets it.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(d time.Duration) {
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
}

func TestIDGeneratorFormatAndTicks(t *testing.T) {
	// 1714557607 s and 500250 µs: tick 1000 of that second.
	clock := &fakeClock{now: time.Unix(1714557607, 500250000)}
	g := newGenerator(1234, clock.Now, clock.Sleep)

	// The creation tick is never used: a process that had the same pid
	// before a restart may have made ids in it.
	if id := g.next(); id != "1s26kx-00gPnE-G9" {
		t.Errorf("first id = %s, want 1s26kx-00gPnE-G9 (tick 1001, seq 0)", id)
	}
	if want := []time.Duration{250 * time.Microsecond}; !slices.Equal(clock.sleeps, want) {
		t.Errorf("slept %v, want %v (to the next 1/2000 s tick)", clock.sleeps, want)
	}
	if id := g.next(); id != "1s26kx-00gPnF-G9" {
		t.Errorf("second id in the same tick = %s, want seq 1: 1s26kx-00gPnF-G9", id)
	}
	// The rest of the tick: ids that differ from an earlier one of the
	// same second only in case are skipped (exigrep matches ids without
	// regard to case), so a tick holds fewer than 8192.
	seen := map[string]bool{"1s26kx-00gpne-g9": true, "1s26kx-00gpnf-g9": true}
	n := 2
	var id ID
	for {
		id = g.next()
		if id[14:] != "G9" {
			break
		}
		n++
		f := strings.ToLower(string(id))
		if seen[f] {
			t.Fatalf("id %s repeats an earlier one but for case", id)
		}
		seen[f] = true
	}
	// Case folding halves the usable sequence space more or less; a tick
	// must still hold thousands (millions of ids per second).
	if n >= seqLimit || n < 2000 {
		t.Errorf("%d ids in one tick, want from 2000 to %d", n, seqLimit-1)
	}
	if len(clock.sleeps) != 2 {
		t.Errorf("slept %d times, want 2: once at creation, once when the tick was used up", len(clock.sleeps))
	}
	if id != "1s26kx-00gPnE-GA" {
		t.Errorf("id after the tick is used up = %s, want the next tick: 1s26kx-00gPnE-GA", id)
	}
	if seen[strings.ToLower(string(id))] {
		t.Errorf("%s repeats an id of the previous tick but for case", id)
	}
}

func TestIDGeneratorRestartAndClockStep(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1714557607, 0)}
	before := newGenerator(77, clock.Now, clock.Sleep)
	var ids []ID
	for range 5 {
		ids = append(ids, before.next())
	}
	// A restarted process with the same pid starting in the same tick.
	after := newGenerator(77, clock.Now, clock.Sleep)
	for range 5 {
		ids = append(ids, after.next())
	}
	// The wall clock steps back a whole second.
	clock.now = clock.now.Add(-time.Second)
	for range 5 {
		ids = append(ids, after.next())
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1].Compare(ids[i]) >= 0 {
			t.Errorf("id %d %s not after id %d %s", i, ids[i], i-1, ids[i-1])
		}
	}
}

func TestIDGeneratorConcurrent(t *testing.T) {
	const goroutines, each = 8, 12500
	g := NewIDGenerator()
	pidField := int64(os.Getpid()) & pidMask
	results := make([][]ID, goroutines)
	var wg sync.WaitGroup
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]ID, each)
			for i := range ids {
				before := time.Now().Unix()
				ids[i] = g.Next()
				after := time.Now().Unix()
				if sec := decode62(string(ids[i][:6])); sec < before || sec > after {
					t.Errorf("id %s encodes second %d, made between %d and %d", ids[i], sec, before, after)
					return
				}
			}
			results[w] = ids
		}()
	}
	wg.Wait()
	seen := make(map[string]bool, goroutines*each)
	for _, ids := range results {
		for i, id := range ids {
			if !ValidID(string(id)) {
				t.Fatalf("invalid id %q", id)
			}
			// Unique even without regard to case, as exigrep compares.
			if f := strings.ToLower(string(id)); seen[f] {
				t.Fatalf("duplicate id %s (ignoring case)", id)
			} else {
				seen[f] = true
			}
			sec := decode62(string(id[:6]))
			if id[5] != base62[sec%62] {
				t.Fatalf("id %s: 6th character %c is not the last base62 digit of second %d", id, id[5], sec)
			}
			if p := decode62(string(id[7:13])); p>>seqBits != pidField {
				t.Fatalf("id %s: pid field %d does not hold pid %d", id, p, pidField)
			}
			if sub := decode62(string(id[14:])); sub >= ticksSec {
				t.Fatalf("id %s: sub-second %d out of range", id, sub)
			}
			if i > 0 && ids[i-1].Compare(id) >= 0 {
				t.Fatalf("ids out of time order: %s then %s", ids[i-1], id)
			}
		}
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d ids, want %d", len(seen), goroutines*each)
	}
}

func TestIDCompare(t *testing.T) {
	tests := []struct {
		a, b ID
		want int
	}{
		{"1s26kx-00gPnE-G9", "1s26kx-00gPnE-G9", 0},
		{"1s26kx-00gPnE-G9", "1s26ky-00gPnE-G9", -1},
		// Sub-second decides before the pid field: GA is later than G9.
		{"1s26kx-zzzzzz-G9", "1s26kx-000000-GA", -1},
		{"1s26kx-00gPnF-G9", "1s26kx-00gPnE-G9", 1},
		{"1s26kx-00gPnE-G9", "invalid", strings.Compare("1s26kx-00gPnE-G9", "invalid")},
	}
	for _, tc := range tests {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func BenchmarkIDGenerator(b *testing.B) {
	g := NewIDGenerator()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			g.Next()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g.Next()
			}
		})
	})
}
