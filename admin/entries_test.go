package admin

import (
	"slices"
	"testing"
	"time"
)

// Entries says what -bp says, as data: the same messages in the same
// order, the corrupt one set aside and the unreadable one with its error.
func TestEntries(t *testing.T) {
	q, ids := mixedQueue(t)
	got, err := q.Entries()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id       int
		sender   string
		size     int64
		frozen   bool
		pending  []string
		received time.Time
		failed   bool
	}{
		{0, "alice@example.test", 2969, false, []string{"bob@example.test"}, now.Add(-(25*time.Minute + 40*time.Second)), false},
		{1, "", 48, true, []string{"alice@example.test"}, now.Add(-(3*time.Hour + 10*time.Minute)), false},
		{2, "bob@example.test", 20041, false, []string{"x2@example.test"}, now.Add(-5 * 24 * time.Hour), false},
		{4, "", 0, false, nil, time.Time{}, true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		e := got[i]
		if e.ID != ids[w.id] || e.Sender != w.sender || e.Size != w.size || e.Frozen != w.frozen ||
			!slices.Equal(e.Pending(), w.pending) || !e.Received.Equal(w.received) || (e.Err != nil) != w.failed {
			t.Errorf("entry %d = %+v (pending %v), want %+v", i, e, e.Pending(), w)
		}
	}
}
