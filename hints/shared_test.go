package hints

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/internal/statetest"
	"mxgate/state"
)

// TestShared: what one gateway's cache adds, another's finds through the
// shared store (a real redis-server), under its prefix and as JSON, and
// the record expires there when it does.
func TestShared(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(state.Options{URL: peertest.Redis(t), Timeout: time.Second, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := Options{Bucket: "callout", Size: 10, MaxTTL: time.Hour, MaxVerdict: 2, Shared: st, Prefix: "callout:"}
	a, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	now := time.Now()
	a.Add(Entry{"a:user@example.test", Record{Verdict: 2, Reply: "550 no such user", Stored: now, Expires: now.Add(400 * time.Millisecond)}})
	a.Close() // writes what is queued
	if v, ok, _ := st.Get(ctx, "callout:a:user@example.test"); !ok || !strings.Contains(string(v), `"verdict":2`) {
		t.Fatalf("shared record = %s, %v", v, ok)
	}
	if _, ok := b.Get("a:user@example.test", now); ok {
		t.Fatal("found before Fill")
	}
	b.Fill(ctx, "a:user@example.test", "a:other@example.test")
	if r, ok := b.Get("a:user@example.test", now); !ok || r.Reply != "550 no such user" {
		t.Fatalf("after Fill: %+v, %v", r, ok)
	}
	time.Sleep(500 * time.Millisecond)
	if _, ok, _ := st.Get(ctx, "callout:a:user@example.test"); ok {
		t.Error("shared record outlived its expiry")
	}
}

// TestSharedDown: a shared store that never answers costs a Fill one
// timeout, then is a miss, logged once.
func TestSharedDown(t *testing.T) {
	st, addr := statetest.Silent(t, 200*time.Millisecond)
	var mu sync.Mutex
	var logged []string
	c, err := Open(Options{Bucket: "recipients", Size: 10, MaxTTL: time.Hour, MaxVerdict: 2, Shared: st, Prefix: "rcpt:",
		Log: func(s string) { mu.Lock(); logged = append(logged, s); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Fill(context.Background(), "k1")
	c.Fill(context.Background(), "k2")
	if took := time.Since(start); took > time.Second {
		t.Errorf("two Fills took %v with a 200ms timeout", took)
	}
	if _, ok := c.Get("k1", time.Now()); ok {
		t.Error("a record from nowhere")
	}
	now := time.Now()
	c.Add(Entry{"k3", Record{Verdict: 1, Stored: now, Expires: now.Add(time.Hour)}}) // Add never waits for the store
	if took := time.Since(now); took > 50*time.Millisecond {
		t.Errorf("Add took %v", took)
	}
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], addr) || !strings.Contains(logged[0], "recipients cache: shared store") {
		t.Errorf("logged %q, want one line naming the server", logged)
	}
}
