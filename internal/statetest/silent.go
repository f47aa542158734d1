package statetest

import (
	"net"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/state"
)

// Silent is a real Redis client, with timeout, on a loopback server that
// accepts and never answers: a Redis that hangs, for the tests of what a
// shared store that is down costs. It returns the store, closed when the
// test ends, and the server's address, which its errors name.
func Silent(tb testing.TB, timeout time.Duration) (state.Store, string) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	peertest.Silent(tb, l)
	st, err := state.Open(state.Options{URL: "redis://" + l.Addr().String() + "/0", Timeout: timeout, PoolSize: 2})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st, l.Addr().String()
}
