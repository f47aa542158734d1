package callout

import (
	"context"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/state"
)

// TestSharedCache: two gateways' checkers on one real redis-server; the
// address and domain records the first learnt answer the second, which
// never probes, with the same result.
func TestSharedCache(t *testing.T) {
	dnsAddr := startDNS(t, testZone())
	srv := startMTA(t, strict, "alice@known.test")
	st, err := state.Open(state.Options{URL: peertest.Redis(t), Timeout: time.Second, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	shared := func(o *Options) { o.Shared = st; o.Postmaster = true }
	one, _ := newChecker(t, dnsAddr, srv.port, shared)
	two, _ := newChecker(t, dnsAddr, srv.port, shared)
	senders := []string{"alice@known.test", "bob@known.test"}
	var first []Result
	for _, s := range senders {
		first = append(first, check(t, one, s))
	}
	one.Close() // its records are in Redis once it is closed
	keys, err := st.Keys(context.Background(), "callout:")
	if err != nil || len(keys) == 0 {
		t.Fatalf("Redis holds %q, %v under callout:", keys, err)
	}
	_, sessions := srv.counts()
	for i, s := range senders {
		got := check(t, two, s)
		want := first[i]
		want.Cached = true
		if got != want {
			t.Errorf("%s at the second gateway = %+v, want %+v", s, got, want)
		}
	}
	if _, after := srv.counts(); after != sessions {
		t.Errorf("the second gateway probed: %d sessions, want %d", after, sessions)
	}
}
