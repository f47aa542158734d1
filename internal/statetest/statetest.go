// Package statetest is an in-memory state.Store for the unit tests of the
// checks that use one (rate limits, greylisting): a map under a mutex with
// the backends' rate arithmetic (state.NextRate), an injected clock, and a
// switch that makes every call fail with state.ErrUnavailable, as a Redis
// that is down would; and Silent, a real Redis client on a server that
// hangs. The real backends are package state's.
package statetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"mxgate/state"
)

// Mem is the store. Now is its clock for expiry (the rate's own clock is
// RateOptions.Now); Down makes every call fail.
type Mem struct {
	mu   sync.Mutex
	m    map[string]entry
	Now  func() time.Time
	Down bool
}

type entry struct {
	val     []byte
	expires time.Time // zero: never
}

type rateRecord struct {
	rate float64
	at   time.Time
}

// New returns an empty store on clock now (nil: time.Now).
func New(now func() time.Time) *Mem {
	if now == nil {
		now = time.Now
	}
	return &Mem{m: map[string]entry{}, Now: now}
}

var _ state.Store = (*Mem)(nil)

func (s *Mem) down() error {
	if s.Down {
		return fmt.Errorf("statetest: %w", state.ErrUnavailable)
	}
	return nil
}

// get is the live entry at key; s.mu is held.
func (s *Mem) get(key string) (entry, bool) {
	e, ok := s.m[key]
	if ok && !e.expires.IsZero() && !s.Now().Before(e.expires) {
		delete(s.m, key)
		return entry{}, false
	}
	return e, ok
}

func (s *Mem) expiry(ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	return s.Now().Add(ttl)
}

func (s *Mem) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.down(); err != nil {
		return nil, false, err
	}
	e, ok := s.get(key)
	return e.val, ok, nil
}

func (s *Mem) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.down(); err != nil {
		return err
	}
	s.m[key] = entry{val: append([]byte(nil), val...), expires: s.expiry(ttl)}
	return nil
}

func (s *Mem) Delete(_ context.Context, keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.down(); err != nil {
		return err
	}
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

func (s *Mem) Keys(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.down(); err != nil {
		return nil, err
	}
	var keys []string
	for k := range s.m {
		if _, ok := s.get(k); ok && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (s *Mem) Incr(_ context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.down(); err != nil {
		return 0, err
	}
	e, ok := s.get(key)
	var v int64
	if ok {
		v, _ = strconv.ParseInt(string(e.val), 10, 64)
	} else {
		e.expires = s.expiry(ttl)
	}
	v += n
	e.val = []byte(strconv.FormatInt(v, 10))
	s.m[key] = e
	return v, nil
}

// Rate is Exim's smoothed rate, by the backends' own arithmetic (state.NextRate).
func (s *Mem) Rate(_ context.Context, key string, r state.RateOptions) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.down(); err != nil {
		return 0, err
	}
	var old rateRecord
	if e, ok := s.get(key); ok {
		var ns int64
		fmt.Sscanf(string(e.val), "%g %d", &old.rate, &ns)
		old.at = time.Unix(0, ns)
	}
	rate, store := state.NextRate(old.rate, old.at, r)
	if store {
		s.m[key] = entry{val: fmt.Appendf(nil, "%g %d", rate, r.Now.UnixNano()), expires: s.expiry(4 * r.Period)}
	}
	return rate, nil
}

func (s *Mem) Close() error { return nil }
