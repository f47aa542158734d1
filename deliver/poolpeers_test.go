package deliver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// sendMany delivers n messages from conc deliveries at once, each to one
// recipient of rcpt(i), and fails the test on any result but Delivered.
func sendMany(tb testing.TB, tr Transport, n, conc int, rcpt func(i int) string) {
	tb.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	for range conc {
		wg.Go(func() {
			for i := range next {
				for _, r := range tr.Deliver(context.Background(), msg("s@example.test", "Subject: load\n\nhello\n", rcpt(i))) {
					if r.Status != Delivered {
						tb.Errorf("%s: %v (%s: %s)", r.Rcpt, r.Status, r.Reason, r.Err)
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Against the real smtp-sink: forty messages from four deliveries at once
// over at most two connections.
func TestPoolSink(t *testing.T) {
	port, dir := startSink(t)
	proxy := peertest.CountingProxy(t, fmt.Sprintf("127.0.0.1:%d", port))
	tr := newTransport(t, "smtp://"+proxy.Addr, pooled(2, 0, time.Minute))
	sendMany(t, tr, 40, 4, func(i int) string { return fmt.Sprintf("u%d@example.test", i) })
	closeTransport(t, tr)
	if n := len(sinkMessages(t, dir)); n != 40 {
		t.Errorf("the sink saved %d messages, want 40", n)
	}
	t.Logf("%d messages over %d connections", 40, proxy.Conns())
	if n := proxy.Conns(); n > 2 {
		t.Errorf("%d connections, want at most 2", n)
	}
}

// Against the real Dovecot LMTP: forty messages to two users from four
// deliveries at once over at most two connections, every one in its
// Maildir.
func TestPoolDovecot(t *testing.T) {
	peertest.Require(t, "dovecot-core dovecot-lmtpd", "dovecot", "doveadm")
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := peertest.Start(t, "dovecot-lmtp", dir, 0, filepath.Join(peertest.Root(t), "testdata", "e2e", "dovecot-users"))
	proxy := peertest.CountingProxy(t, addr)
	tr := newTransport(t, "lmtp://"+proxy.Addr, pooled(2, 0, time.Minute))
	users := []string{"known", "bob"}
	sendMany(t, tr, 40, 4, func(i int) string { return users[i%2] + "@example.test" })
	closeTransport(t, tr)
	for _, u := range users {
		files, err := filepath.Glob(filepath.Join(dir, "mail", "example.test", u, "Maildir", "new", "*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 20 {
			t.Errorf("%s's Maildir has %d messages, want 20", u, len(files))
		}
	}
	t.Logf("%d messages over %d connections", 40, proxy.Conns())
	if n := proxy.Conns(); n > 2 {
		t.Errorf("%d connections, want at most 2", n)
	}
}

// BenchmarkSinkThroughput is messages per second through the SMTP
// transport to the real smtp-sink (saving nothing), ten deliveries at
// once: a connection per message (no-pool) against the pool.
//
//	go test ./deliver -run '^$' -bench SinkThroughput -benchtime 2000x
func BenchmarkSinkThroughput(b *testing.B) {
	peertest.Require(b, "postfix", "smtp-sink")
	dir := b.TempDir()
	port := peertest.FreePort(b, false)
	peertest.Start(b, "smtp-sink", dir, port, "--no-dump")
	u := fmt.Sprintf("smtp://127.0.0.1:%d", port)
	for _, bc := range []struct {
		name string
		o    Options
	}{
		{"no-pool", pooled(10, 0, 0)},
		{"pool", pooled(10, 0, time.Minute)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr, err := New(target(b, u), bc.o)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			sendMany(b, tr, b.N, 10, func(i int) string { return fmt.Sprintf("u%d@example.test", i) })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
			tr.(Closer).Close(context.Background())
		})
	}
}
