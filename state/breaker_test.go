package state

import (
	"context"
	"errors"
	"testing"
	"time"
)

// downStore fails every call as an unreachable Redis does, counting them.
type downStore struct {
	Store
	calls int
}

func (d *downStore) Rate(context.Context, string, RateOptions) (float64, error) {
	d.calls++
	return 0, ErrUnavailable
}

// TestBreaker: after a failure the store is not asked again until the
// cool-down ends; the answers meanwhile are ErrCoolingDown, which is
// ErrUnavailable too.
func TestBreaker(t *testing.T) {
	d := &downStore{}
	b := NewBreaker(d, time.Minute)
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := b.Rate(ctx, "k", RateOptions{}); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCoolingDown) {
		t.Fatalf("first call: %v, want the store's own ErrUnavailable", err)
	}
	for range 5 {
		if _, err := b.Rate(ctx, "k", RateOptions{}); !errors.Is(err, ErrCoolingDown) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("during the cool-down: %v, want ErrCoolingDown", err)
		}
	}
	if d.calls != 1 {
		t.Errorf("the store was asked %d times during the cool-down, want 1", d.calls)
	}
	now = now.Add(time.Minute)
	b.Rate(ctx, "k", RateOptions{})
	if d.calls != 2 {
		t.Errorf("after the cool-down the store was asked %d times in all, want 2", d.calls)
	}
}
