package event

import (
	"testing"
	"time"
)

func TestBus(t *testing.T) {
	var nilBus *Bus
	nilBus.Emit(Event{Kind: Connect}) // a nil bus emits nothing and does not panic
	if nilBus.Enabled() {
		t.Error("nil bus Enabled")
	}

	var got []string
	at := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	b := NewBus(SinkFunc(func(e *Event) { got = append(got, "a:"+e.Kind.String()+":"+e.Time.Format(time.RFC3339)) }),
		SinkFunc(func(e *Event) { got = append(got, "b:"+e.Kind.String()) }))
	b.now = func() time.Time { return at }
	b.Emit(Event{Kind: Delivery})
	b.Emit(Event{Kind: Refused, Time: at.Add(time.Hour)})
	want := []string{"a:delivery:2026-12-07T04:00:00Z", "b:delivery", "a:refused:2026-12-07T05:00:00Z", "b:refused"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %q, want %q", i, got[i], want[i])
		}
	}
	if !b.Enabled() || NewBus().Enabled() {
		t.Error("Enabled wrong")
	}
}

func TestKindString(t *testing.T) {
	for k := Connect; k <= Breaker; k++ {
		if k.String() == "unknown" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(0).String() != "unknown" || Kind(200).String() != "unknown" {
		t.Error("out-of-range kinds must be unknown")
	}
}
