package hints

import (
	"path/filepath"
	"testing"
	"time"
)

// TestCache: records live until their own expiry, the oldest stored is
// evicted beyond the bound, and what is left survives a reopen of the
// file, in the bucket it was written to.
func TestCache(t *testing.T) {
	file := filepath.Join(t.TempDir(), "db", "hints.db")
	o := Options{File: file, Bucket: "test", Size: 2, MaxTTL: time.Hour, MaxVerdict: 2}
	now := time.Now()
	rec := func(v int, ttl time.Duration) Record {
		return Record{Verdict: v, Reply: "r", Stored: now, Expires: now.Add(ttl)}
	}
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Entry{{"a", rec(1, time.Hour)}, {"b", rec(2, time.Hour)}, {"c", rec(1, time.Hour)}} {
		c.Persist([]Entry{e}, c.Add(e))
	}
	if _, ok := c.Get("a", now); ok {
		t.Error("a: kept beyond the bound of 2, want evicted (the oldest stored)")
	}
	if r, ok := c.Get("b", now); !ok || r.Verdict != 2 {
		t.Errorf("b: %+v, %v", r, ok)
	}
	if _, ok := c.Get("b", now.Add(2*time.Hour)); ok {
		t.Error("b: alive after its expiry")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for key, want := range map[string]bool{"a": false, "b": false, "c": true} {
		if _, ok := c.Get(key, now); ok != want {
			t.Errorf("after reopening, %s present %v, want %v", key, ok, want)
		}
	}
	other, err := Open(Options{Size: 2, MaxTTL: time.Hour, MaxVerdict: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := other.Get("c", now); ok {
		t.Error("a memory-only cache found a record of the file")
	}
}
