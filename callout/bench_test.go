package callout

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkProbesPer1000Messages sends 1,000 messages from 100 distinct
// senders through a fresh Checker per iteration, ten sessions at a time,
// and reports how many probes reached the counting server.
func BenchmarkProbesPer1000Messages(b *testing.B) {
	dnsAddr := startDNS(b, testZone())
	srv := startMTA(b, acceptAll)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		c, err := New(testOptions(Options{Hostname: "gw.example.net", Resolvers: []string{dnsAddr}, Port: srv.port, PerHostConcurrency: 10, PerHostRate: 1e6}))
		if err != nil {
			b.Fatal(err)
		}
		for batch := 0; batch < 1000; batch += 10 {
			pend := make([]*Pending, 10)
			for i := range pend {
				pend[i] = c.Start(ctx, fmt.Sprintf("sender%d@known.test", (batch+i)%100))
			}
			for _, p := range pend {
				if r := p.Wait(ctx); r.Verdict != Accept {
					b.Fatalf("%+v", r)
				}
			}
		}
		c.Close()
	}
	rcpts, _ := srv.counts()
	b.ReportMetric(float64(len(rcpts))/float64(b.N), "probes/1000msgs")
}

// BenchmarkWaitWarmCache is the latency a session sees at MAIL+RCPT when
// the sender is cached (Start + Wait), with the bbolt file behind the cache.
func BenchmarkWaitWarmCache(b *testing.B) {
	dnsAddr := startDNS(b, testZone())
	srv := startMTA(b, acceptAll)
	c, err := New(testOptions(Options{Hostname: "gw.example.net", Resolvers: []string{dnsAddr}, Port: srv.port, CacheFile: b.TempDir() + "/callout.db", PerHostRate: 1e6}))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if r := c.Start(ctx, "alice@known.test").Wait(ctx); r.Verdict != Accept {
		b.Fatalf("%+v", r)
	}
	b.ResetTimer()
	for b.Loop() {
		if r := c.Start(ctx, "alice@known.test").Wait(ctx); !r.Cached {
			b.Fatalf("not cached: %+v", r)
		}
	}
}
