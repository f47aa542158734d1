package state_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/state"
)

// BenchmarkStore measures what one call costs a check: Get, Set and Rate
// on the embedded store and on a real redis-server on loopback.
func BenchmarkStore(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) state.Store
	}{
		{"embedded", func(b *testing.B) state.Store {
			return open(b, state.Options{File: filepath.Join(b.TempDir(), "state.db")})
		}},
		{"redis", func(b *testing.B) state.Store {
			return open(b, state.Options{URL: peertest.Redis(b), Timeout: time.Second, PoolSize: 10})
		}},
	}
	ctx := context.Background()
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			val := make([]byte, 200) // about a cached verification record
			s.Set(ctx, "bench:get", val, time.Hour)
			b.Run("Get", func(b *testing.B) {
				for b.Loop() {
					if _, _, err := s.Get(ctx, "bench:get"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Set", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					if err := s.Set(ctx, fmt.Sprintf("bench:set:%d", i%1000), val, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Rate", func(b *testing.B) {
				r := state.RateOptions{Period: time.Hour, Count: 1, Limit: 1e9}
				for b.Loop() {
					r.Now = time.Now()
					if _, err := s.Rate(ctx, "bench:rate", r); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
