package spool

import (
	"sync"
	"testing"

	"mxgate/event"
	"mxgate/internal/eventtest"
)

// TestSpoolCommitEvents: the group commits' events add up to the
// messages committed, each naming its batch's size and sync time.
func TestSpoolCommitEvents(t *testing.T) {
	rec, bus := eventtest.New()
	o := testOptions()
	o.Bus = bus
	s, _ := openSpoolWith(t, o)
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { commit(t, s, testEnvelope(), testBody) })
	}
	wg.Wait()
	total := 0
	es := rec.Of(event.SpoolCommit)
	for _, e := range es {
		if e.Batch < 1 || e.Duration <= 0 {
			t.Errorf("SpoolCommit %+v: an empty batch or no sync time", e)
		}
		total += e.Batch
	}
	if total != n {
		t.Errorf("SpoolCommit batches add up to %d, want %d commits", total, n)
	}
	t.Logf("%d commits in %d batches", n, len(es))
}
