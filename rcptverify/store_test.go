package rcptverify

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// fakeStore is an in-process LMTP server for fault injection: answer
// gives the reply to each RCPT TO (by address), greeting replaces the
// 220. With tls set it offers STARTTLS, and with requireTLS refuses MAIL
// in clear as a store demanding TLS does. It counts connections, RCPTs
// (those over TLS apart) and the connections open at once.
type fakeStore struct {
	addr       string
	greeting   string
	answer     func(rcpt string) string
	tls        *tls.Config
	requireTLS bool

	conns, rcpts, tlsRcpts atomic.Int64
	open, peak             atomic.Int64

	mu    sync.Mutex
	asked map[string]int
}

func startFakeStore(t *testing.T, answer func(string) string) *fakeStore {
	t.Helper()
	return startFakeStoreGreeting(t, "220 fake LMTP", answer)
}

func startFakeStoreGreeting(t *testing.T, greeting string, answer func(string) string) *fakeStore {
	t.Helper()
	return startFake(t, &fakeStore{greeting: greeting, answer: answer})
}

// startFake serves s, its address set, on loopback until the test ends.
func startFake(t *testing.T, s *fakeStore) *fakeStore {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr, s.asked = l.Addr().String(), map[string]int{}
	peertest.Serve(t, l, s.serve)
	return s
}

func (s *fakeStore) serve(c net.Conn) {
	s.conns.Add(1)
	n := s.open.Add(1)
	defer s.open.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	w := bufio.NewWriter(c)
	say := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	say(s.greeting)
	r := bufio.NewReader(c)
	secure := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "LHLO" || verb == "EHLO":
			say("250-fake")
			if s.tls != nil && !secure {
				say("250-STARTTLS")
			}
			say("250 ENHANCEDSTATUSCODES")
		case verb == "STARTTLS" && s.tls != nil && !secure:
			say("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, secure = tc, true
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		case verb == "MAIL" && s.requireTLS && !secure:
			say("530 5.7.0 Must issue a STARTTLS command first")
		case verb == "MAIL", verb == "RSET":
			say("250 2.0.0 OK")
		case verb == "RCPT":
			s.rcpts.Add(1)
			if secure {
				s.tlsRcpts.Add(1)
			}
			to := strings.TrimSuffix(strings.TrimPrefix(line[len("RCPT TO:"):], "<"), ">")
			s.mu.Lock()
			s.asked[to]++
			s.mu.Unlock()
			reply := s.answer(to)
			if reply == "" {
				return // hang up mid-conversation
			}
			say(reply)
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("500 5.5.1 what?")
		}
	}
}

func (s *fakeStore) times(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[addr]
}

// users answers 250 for the listed addresses and 550 5.1.1 for others.
func users(list ...string) func(string) string {
	return func(rcpt string) string {
		for _, u := range list {
			if rcpt == u {
				return "250 2.1.5 OK"
			}
		}
		return "550 5.1.1 <" + rcpt + "> User doesn't exist"
	}
}

// testOptions are the Options of the unit tests: short bounds, memory
// cache, every domain verified at st.
func testOptions(st Store) Options {
	return Options{
		Store:          func(string) (Store, bool) { return st, true },
		Hostname:       "mx.example.test",
		Timeout:        time.Second,
		IdleTimeout:    time.Minute,
		PositiveTTL:    time.Hour,
		NegativeTTL:    time.Hour,
		CacheSize:      1000,
		MaxConnections: 2,
	}
}

// calloutTo is the callout store of a fake store.
func calloutTo(t *testing.T, addr string) Store {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	return Store{Name: "downstream", Source: SourceCallout, Target: Target{Scheme: "lmtp", Host: host, Port: p}, Delimiter: "+", Lowercase: true,
		StartTLS: TLSOpportunistic, ConnectTimeout: time.Second}
}

func newVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func lookup(v *Verifier, st Store, addr string) Result {
	local, domain, _ := strings.Cut(addr, "@")
	return v.Lookup(context.Background(), st, local, domain)
}
