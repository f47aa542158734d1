package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrCoolingDown is what a Breaker answers, at once, while the store it
// guards is left alone after failing; it wraps ErrUnavailable. A caller
// logs the failure that opened the breaker, not each answer after it.
var ErrCoolingDown = fmt.Errorf("%w: cooling down after a failure", ErrUnavailable)

// Breaker guards a Store that may be down (Redis): after a call fails
// with ErrUnavailable, every call answers ErrCoolingDown for the cool-down
// without asking the store, so that a dead Redis costs the checks one
// timeout per cool-down, not one per call, and the logs one line.
type Breaker struct {
	Store
	coolDown time.Duration
	now      func() time.Time

	mu    sync.Mutex
	until time.Time
}

// NewBreaker guards st, leaving it alone for coolDown after a failure.
func NewBreaker(st Store, coolDown time.Duration) *Breaker {
	return &Breaker{Store: st, coolDown: coolDown, now: time.Now}
}

// open reports whether the store is being left alone now.
func (b *Breaker) open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.now().Before(b.until)
}

// after notes err, the answer of a call to the store.
func (b *Breaker) after(err error) error {
	if errors.Is(err, ErrUnavailable) {
		b.mu.Lock()
		b.until = b.now().Add(b.coolDown)
		b.mu.Unlock()
	}
	return err
}

func (b *Breaker) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if b.open() {
		return nil, false, ErrCoolingDown
	}
	v, ok, err := b.Store.Get(ctx, key)
	return v, ok, b.after(err)
}

func (b *Breaker) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if b.open() {
		return ErrCoolingDown
	}
	return b.after(b.Store.Set(ctx, key, val, ttl))
}

func (b *Breaker) Delete(ctx context.Context, keys ...string) error {
	if b.open() {
		return ErrCoolingDown
	}
	return b.after(b.Store.Delete(ctx, keys...))
}

func (b *Breaker) Keys(ctx context.Context, prefix string) ([]string, error) {
	if b.open() {
		return nil, ErrCoolingDown
	}
	ks, err := b.Store.Keys(ctx, prefix)
	return ks, b.after(err)
}

func (b *Breaker) Incr(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	if b.open() {
		return 0, ErrCoolingDown
	}
	v, err := b.Store.Incr(ctx, key, n, ttl)
	return v, b.after(err)
}

func (b *Breaker) Rate(ctx context.Context, key string, r RateOptions) (float64, error) {
	if b.open() {
		return 0, ErrCoolingDown
	}
	v, err := b.Store.Rate(ctx, key, r)
	return v, b.after(err)
}
