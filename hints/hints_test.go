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
		c.Add(e)
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

// TestPersistBehind: Add does not wait for the file (here held by
// another write transaction, as a slow disk sync would); what it marked
// is on disk once the cache is closed, the latest state of each key.
func TestPersistBehind(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hints.db")
	o := Options{File: file, Bucket: "test", Size: 10, MaxTTL: time.Hour, MaxVerdict: 2}
	now := time.Now()
	rec := func(v int) Record { return Record{Verdict: v, Stored: now, Expires: now.Add(time.Hour)} }
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := c.db.Begin(true) // the file's one writer, busy
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for _, e := range []Entry{{"a", rec(1)}, {"b", rec(1)}, {"a", rec(2)}} {
			c.Add(e)
		}
	}()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Error("Add waited for the file")
	}
	if r, ok := c.Get("a", now); !ok || r.Verdict != 2 {
		t.Errorf("a in memory: %+v, %v; want verdict 2", r, ok)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	<-returned
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for key, want := range map[string]int{"a": 2, "b": 1} {
		if r, ok := c.Get(key, now); !ok || r.Verdict != want {
			t.Errorf("after reopening, %s: %+v, %v; want verdict %d", key, r, ok, want)
		}
	}
}
