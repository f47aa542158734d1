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

// TestSharedFile: a file opened twice in one process (a reload's checks
// beside the old ones) is one cache: the second Open neither waits for
// bbolt's lock nor fails, a record added through one handle is seen
// through the other, and the file stays open until the last handle
// closes; then it opens again at once.
func TestSharedFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hints.db")
	o := Options{File: file, Bucket: "test", Size: 10, MaxTTL: time.Hour, MaxVerdict: 2}
	now := time.Now()
	first, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("second Open took %v: it waited for the file lock", d)
	}
	first.Add(Entry{"k", Record{Verdict: 1, Stored: now, Expires: now.Add(time.Hour)}})
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("second Close of one handle: %v", err)
	}
	if r, ok := second.Get("k", now); !ok || r.Verdict != 1 {
		t.Errorf("through the other handle after the first closed: %+v, %v", r, ok)
	}
	second.Add(Entry{"l", Record{Verdict: 2, Stored: now, Expires: now.Add(time.Hour)}})
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(Options{File: file, Bucket: "test", Size: 10, MaxTTL: time.Hour, MaxVerdict: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for _, k := range []string{"k", "l"} {
		if _, ok := again.Get(k, now); !ok {
			t.Errorf("%s: not in the file after the last handle closed", k)
		}
	}
}
