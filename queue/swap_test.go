package queue

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestSwap: a delivery in flight when the router is swapped finishes on
// the old one, whose retired hook runs only after it ended; the next
// attempt goes through the new router (its transport's T= in the log).
func TestSwap(t *testing.T) {
	old := &fakeTransport{name: "old", hold: make(chan struct{}), entered: make(chan []string, 1)}
	e := newEnv(t, old, Options{MaxParallel: 2})
	e.r.Start(context.Background())
	first := e.submit([]string{"bob@down.test"}, nil)
	e.r.Enqueue(first)
	waitEntered(t, old)

	next := &fakeTransport{name: "new"}
	retired := make(chan struct{})
	e.r.Swap(storeRouter(next), defaultSchedule(t), func() { close(retired) })
	select {
	case <-retired:
		t.Fatal("the old router was retired while a delivery still used it")
	case <-time.After(100 * time.Millisecond):
	}

	second := e.submit([]string{"carol@down.test"}, nil)
	e.r.Enqueue(second)
	deadline := time.After(30 * time.Second)
	for len(next.Calls()) == 0 {
		select {
		case <-deadline:
			t.Fatal("no delivery through the new router within 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(old.hold)
	select {
	case <-retired:
	case <-time.After(30 * time.Second):
		t.Fatal("the old router was not retired after its last delivery")
	}
	e.r.Stop(context.Background())

	if got := old.Calls(); !slices.Equal(got[0], []string{"bob@down.test"}) || len(got) != 1 {
		t.Errorf("old transport got %v, want [[bob@down.test]]", got)
	}
	if got := next.Calls(); len(got) != 1 || !slices.Equal(got[0], []string{"carol@down.test"}) {
		t.Errorf("new transport got %v, want [[carol@down.test]]", got)
	}
	lines := e.newLines()
	for _, want := range []string{
		fmt.Sprintf("%s => bob@down.test R=downstream T=old", first),
		fmt.Sprintf("%s => carol@down.test R=downstream T=new", second),
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return len(l) >= len(want) && l[:len(want)] == want }) {
			t.Errorf("no line %q in %q", want, lines)
		}
	}
}

// TestSwapIdle: with no delivery in flight the replaced router retires
// at once.
func TestSwapIdle(t *testing.T) {
	e := newEnv(t, &fakeTransport{}, Options{})
	retired := make(chan struct{})
	e.r.Swap(storeRouter(&fakeTransport{name: "new"}), defaultSchedule(t), func() { close(retired) })
	select {
	case <-retired:
	case <-time.After(30 * time.Second):
		t.Fatal("an idle router was not retired")
	}
}
