// Package state owns what several gateways behind one MX must share, and
// one gateway must keep across restarts: rate-limit counters, greylist
// triplets, the verification and DNS-list caches. Store is the one
// interface the checks use; Open picks the backend from [state] url:
// embedded (memory, written through to bbolt under data_dir: the default)
// or Redis ("redis://", Valkey too), so that N gateways share one view.
//
// Keys are namespaced by the caller ("rl:", "grey:", "callout:", ...);
// values are opaque bytes. Every call takes a context and is bounded by
// the backend's timeout: a Redis that does not answer is an error the
// caller turns into its feature's documented fail-open or fail-closed,
// never a hang.
package state

import (
	"context"
	"errors"
	"time"
)

// Store is a shared key-value store with expiry and the two atomic
// operations the checks need: Exim's smoothed rate and a counter.
type Store interface {
	// Get returns the value at key; ok is false when it is absent or
	// expired.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Set stores val at key for ttl; ttl 0 keeps it until deleted.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes keys; an absent key is no error.
	Delete(ctx context.Context, keys ...string) error
	// Keys lists the keys, not expired, that begin with prefix.
	Keys(ctx context.Context, prefix string) ([]string, error)
	// Incr adds n to the integer at key (absent: 0) and returns the sum;
	// ttl, when not 0, is set whenever the key is created.
	Incr(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error)
	// Rate applies one event of r.Count to the smoothed rate at key,
	// atomically, and returns the rate the event sees (see RateOptions).
	Rate(ctx context.Context, key string, r RateOptions) (float64, error)
	// Close releases the store (flushes the embedded one's writes).
	Close() error
}

// RateOptions is one event of Exim's ratelimit: with the previous rate
// r0 stored at time t0, a = exp(-(Now-t0)/Period), the new rate is
// (1-a)*Count/((Now-t0)/Period) + a*r0, at least Count. A leaky limit
// (Strict false) stores the new rate only while it is below Limit, so a
// sender over the limit gets back under it at the limit's own pace;
// strict always stores it. A key never seen has rate Count. The record
// expires after a few Periods without events.
type RateOptions struct {
	Period time.Duration
	Count  float64
	Limit  float64
	Strict bool
	Now    time.Time
}

// ErrUnavailable wraps every error of a backend that could not be asked
// (Redis down, timed out): the caller applies its feature's policy.
var ErrUnavailable = errors.New("state store unavailable")
