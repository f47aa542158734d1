package rcptverify

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/peertest"
)

// startDovecot starts the real Dovecot LMTP with the e2e users file
// (known@ and bob@example.test) and returns its address and a counting
// proxy in front of it.
func startDovecot(tb testing.TB) (string, *peertest.Proxy) {
	tb.Helper()
	peertest.Require(tb, "dovecot-core dovecot-lmtpd", "dovecot", "doveadm")
	dir := tb.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	addr := peertest.Start(tb, "dovecot-lmtp", dir, 0, filepath.Join(peertest.Root(tb), "testdata", "e2e", "dovecot-users"))
	return addr, peertest.CountingProxy(tb, addr)
}

// BenchmarkRecipientCallout is the time a recipient callout adds at RCPT
// (the check's Rcpt, as the pipeline calls it) against the real Dovecot
// LMTP, with a cache file as the daemon has: cold, every address new to
// the cache and asked at the store over a pooled connection
// (cold-new-connection: over a new one each time); warm, every address
// answered from the cache.
//
//	go test ./rcptverify -run '^$' -bench RecipientCallout -benchtime 2000x -count 3
func BenchmarkRecipientCallout(b *testing.B) {
	addr, _ := startDovecot(b)
	st := storeAt(b, addr)
	newSession := func(b *testing.B, idle time.Duration) filters.Session {
		o := testOptions(st)
		o.IdleTimeout = idle
		o.CacheFile = filepath.Join(b.TempDir(), "db", "recipients.db")
		v := newVerifier(b, o)
		return NewCheck(v).Open(context.Background(), &filters.Conn{})
	}
	tx := &filters.Tx{Sender: "a@sender.test"}
	ctx := context.Background()

	b.Run("cold-new-connection", func(b *testing.B) {
		// No connection outlives its lookup: connect and LHLO each time.
		sess := newSession(b, time.Nanosecond)
		i := 0
		for b.Loop() {
			i++
			if v := sess.Rcpt(ctx, tx, fmt.Sprintf("new%d@example.test", i)); v.Action != filters.Reject {
				b.Fatalf("new%d: %+v", i, v)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		sess := newSession(b, time.Minute)
		sess.Rcpt(ctx, tx, "known@example.test") // the connection, opened once
		i := 0
		for b.Loop() {
			i++
			if v := sess.Rcpt(ctx, tx, fmt.Sprintf("cold%d@example.test", i)); v.Action != filters.Reject {
				b.Fatalf("cold%d: %+v", i, v)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		sess := newSession(b, time.Minute)
		sess.Rcpt(ctx, tx, "known@example.test")
		for b.Loop() {
			if v := sess.Rcpt(ctx, tx, "known@example.test"); v.Action != filters.Accept {
				b.Fatalf("%+v", v)
			}
		}
	})
}

// storeAt is the LMTP callout store at addr.
func storeAt(tb testing.TB, addr string) Store {
	host, port, _ := net.SplitHostPort(addr)
	var n int
	if _, err := fmt.Sscan(port, &n); err != nil {
		tb.Fatal(err)
	}
	return Store{Name: "downstream", Source: SourceCallout, Target: Target{Scheme: "lmtp", Host: host, Port: n}, Delimiter: "+", Lowercase: true,
		StartTLS: TLSOpportunistic, ConnectTimeout: time.Second}
}

// TestStoreConnections counts the connections the real Dovecot LMTP sees
// for 1,000 RCPTs to 100 distinct recipients (each ten times), from one
// session or 10 at once, with the cache (100 lookups at the store) and
// without it (1,000): one connection per lookup at once at most
// (max_connections), reused, whatever the number of RCPTs. Logged for
// the record (go test -v -run TestStoreConnections).
func TestStoreConnections(t *testing.T) {
	_, p := startDovecot(t)
	st := storeAt(t, p.Addr)
	for _, tc := range []struct {
		sessions, maxConns int
		cache              bool // false: every RCPT is a lookup at the store
	}{{1, 10, true}, {10, 10, true}, {10, 2, true}, {10, 10, false}} {
		before := p.Conns()
		o := testOptions(st)
		if !tc.cache {
			o.NegativeTTL = 0
		}
		o.Timeout = 10 * time.Second // a slow machine must not turn lookups into deferrals
		o.MaxConnections = tc.maxConns
		v := newVerifier(t, o)
		ctx := context.Background()
		tx := &filters.Tx{Sender: "a@sender.test"}
		var refused atomic.Int64
		var wg sync.WaitGroup
		for s := range tc.sessions {
			wg.Go(func() {
				sess := NewCheck(v).Open(ctx, &filters.Conn{})
				for i := range 1000 / tc.sessions {
					// Each session walks the 100 addresses from its own start.
					rcpt := fmt.Sprintf("user%d@example.test", (s*10+i)%100)
					if sess.Rcpt(ctx, tx, rcpt).Action == filters.Reject {
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()
		conns := p.Conns() - before
		t.Logf("1000 RCPTs, 100 recipients, %d session(s), max_connections %d, cache %v: %d store connection(s), %d refused",
			tc.sessions, tc.maxConns, tc.cache, conns, refused.Load())
		if conns < 1 || conns > int64(tc.maxConns) || refused.Load() != 1000 {
			t.Errorf("%d connections (want 1 to %d), %d of 1000 refused", conns, tc.maxConns, refused.Load())
		}
	}
}
