package spool

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// otherWriter is the case SyncFS pays for: another program on the spool's
// filesystem (a database, home directories) dirtying pages it never syncs.
// scripts/bench-sync.sh sets it.
var otherWriter = flag.Int("spool.otherwriter", 0, "BenchmarkCommit: MiB/s that another writer dirties on the spool's filesystem meanwhile, without syncing; 0 for none")

// startOtherWriter writes rate MiB/s into a file under dir, in 1 MiB
// writes, wrapping at 2 GiB, until stop is called. stop removes the file,
// so its dirty pages are dropped, not written back during the next
// benchmark.
func startOtherWriter(b *testing.B, dir string, rate int) (stop func()) {
	f, err := os.Create(filepath.Join(dir, "other-writer"))
	if err != nil {
		b.Fatal(err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := bytes.Repeat([]byte("other writer\n"), 1<<20/13+1)[:1<<20]
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		var off int64
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if _, err := f.WriteAt(buf, off); err != nil {
				b.Error(err)
				return
			}
			if off += int64(len(buf)); off >= 2<<30 {
				off = 0
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		os.Remove(f.Name())
		f.Close()
	}
}

// BenchmarkCommit commits 4 KiB messages from 1, 20 and 200 concurrent
// committers under each sync policy, reporting commits/s and the p50, p99
// and maximum latency of a commit (Create, Write, Commit). Run it on a real disk (TMPDIR=/var/tmp, not a
// tmpfs), with -spool.otherwriter for the case of a busy filesystem.
func BenchmarkCommit(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 64) // 4 KiB
	for _, policy := range []SyncPolicy{SyncFdatasync, SyncFS} {
		for _, n := range []int{1, 20, 200} {
			b.Run(fmt.Sprintf("%s/committers=%d", policy, n), func(b *testing.B) {
				s, dir := openSpoolWith(b, Options{Sync: policy})
				if *otherWriter > 0 {
					defer startOtherWriter(b, filepath.Dir(dir), *otherWriter)()
				}
				var next atomic.Int64
				lat := make([][]time.Duration, n)
				var wg sync.WaitGroup
				b.ResetTimer()
				for i := range n {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							start := time.Now()
							w, err := s.Create()
							if err != nil {
								b.Error(err)
								return
							}
							if _, err := w.Write(body); err != nil {
								b.Error(err)
								return
							}
							if err := w.Commit(context.Background(), testEnvelope()); err != nil {
								b.Error(err)
								return
							}
							lat[i] = append(lat[i], time.Since(start))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				if len(all) == 0 {
					return
				}
				b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "commits/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
