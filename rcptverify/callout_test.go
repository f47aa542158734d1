package rcptverify

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// TestCallout: what the store's replies make of a lookup, which answers
// are cached (asked again: the store sees a second RCPT only for an
// answer that was not), and which refusals are the store refusing our
// verification, for paniclog: only a bad mailbox is an unknown user.
func TestCallout(t *testing.T) {
	const refuses = "recipient verify: the store lmtp %s refuses our callouts: " +
		`response to "RCPT TO:<u@example.test>" from 127.0.0.1 [127.0.0.1] was: `
	tests := []struct {
		name    string
		answer  string // the store's reply to RCPT; "" hangs up
		verdict Verdict
		detail  string
		cached  bool
		panic   string // the paniclog line, %s the store's address; "" none
	}{
		{"user exists", "250 2.1.5 OK", Found, "accepted by lmtp ", true, ""},
		{"no such user", "550 5.1.1 <u@example.test> User doesn't exist", NotFound,
			`response to "RCPT TO:<u@example.test>" from 127.0.0.1 [127.0.0.1] was: 550 5.1.1 <u@example.test> User doesn't exist`, true, ""},
		{"user has moved", "551 5.1.6 moved", NotFound, "from 127.0.0.1 [127.0.0.1] was: 551 5.1.6 moved", true, ""},
		{"bad mailbox syntax", "553 5.1.3 bad address", NotFound, "was: 553 5.1.3 bad address", true, ""},
		{"no enhanced code", "550 no such mailbox", NotFound, "was: 550 no such mailbox", true, ""},
		{"mailbox full", "552 5.2.2 Mailbox full", Found, "over quota at lmtp 127.0.0.1:", true, ""},
		{"mailbox full for now", "452 4.2.2 Mailbox full", Found, "452 4.2.2 Mailbox full", true, ""},
		{"relay denied", "554 5.7.1 Relay access denied", Defer,
			"RCPT TO:<u@example.test> refused: 554 5.7.1 Relay access denied", false, refuses + "554 5.7.1 Relay access denied"},
		{"policy 550", "550 5.7.1 Not allowed", Defer, "refused: 550 5.7.1 Not allowed", false, refuses + "550 5.7.1 Not allowed"},
		{"TLS wanted", "530 5.7.0 Must issue a STARTTLS command first", Defer,
			"refused: 530 5.7.0", false, refuses + "530 5.7.0 Must issue a STARTTLS command first"},
		{"4xx", "451 4.3.0 Temporary internal failure", Defer, "RCPT TO:<u@example.test>: 451 4.3.0 Temporary internal failure", false, ""},
		{"hangs up", "", Defer, "RCPT TO: ", false, ""},
		{"garbage", "hello there", Defer, "RCPT TO: ", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startFakeStore(t, func(string) string { return tc.answer })
			st := calloutTo(t, s.addr)
			var panics []string
			o := testOptions(st)
			o.Panic = func(line string) { panics = append(panics, line) }
			v := newVerifier(t, o)
			r := lookup(v, st, "U+tag@Example.TEST")
			if r.Verdict != tc.verdict || !strings.Contains(r.Detail, tc.detail) || r.Key != "u@example.test" {
				t.Errorf("Lookup = %+v, want %v with %q for u@example.test", r, tc.verdict, tc.detail)
			}
			again := lookup(v, st, "u@example.test")
			if again.Cached != tc.cached || again.Verdict != tc.verdict {
				t.Errorf("second Lookup = %+v, want cached %v", again, tc.cached)
			}
			want := 2
			if tc.cached {
				want = 1
			}
			if n := s.times("u@example.test"); n != want {
				t.Errorf("the store was asked %d times, want %d", n, want)
			}
			// The same refusal again, for this address or another, is
			// not another line: paniclog is not a log of every RCPT.
			lookup(v, st, "w@example.test")
			var wantPanics []string
			if tc.panic != "" {
				wantPanics = []string{fmt.Sprintf(tc.panic, s.addr)}
			}
			if !slices.Equal(panics, wantPanics) {
				t.Errorf("paniclog %q, want %q", panics, wantPanics)
			}
		})
	}
}

// TestCalloutStoreTrouble: a store that does not greet, refuses the
// connection or refuses MAIL FROM:<> gives Defer within the timeout.
func TestCalloutStoreTrouble(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Silent(t, hung)
	badGreeting := startFakeStoreGreeting(t, "554 5.3.2 go away", users())

	// No store at a socket path: a TCP port closed now could be any
	// other test's by the time it is dialled.
	none := Store{Source: SourceCallout, Target: Target{Scheme: "lmtp+unix", Path: filepath.Join(t.TempDir(), "lmtp")}}
	tests := []struct {
		name   string
		st     Store
		detail string
	}{
		{"never answers", calloutTo(t, hung.Addr().String()), "greeting/LHLO: "}, // the command's timeout or the lookup's, the same
		{"no store", none, "connect: dial unix " + none.Target.Path + ": connect: no such file or directory"},
		{"refuses at greeting", calloutTo(t, badGreeting.addr), "greeting/LHLO: 554 5.3.2 go away"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			o := testOptions(st)
			o.Timeout = 300 * time.Millisecond
			v := newVerifier(t, o)
			start := time.Now()
			r := lookup(v, st, "u@example.test")
			if r.Verdict != Defer || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("Lookup = %+v, want Defer with %q", r, tc.detail)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Lookup took %v, want about the 300ms timeout", d)
			}
		})
	}
}

// TestCalloutConnections: lookups of 100 addresses, ten times each, use
// one connection when asked one after the other, and never more than
// MaxConnections at once when asked together; a store that closed an
// idle connection costs a reconnect, not an answer.
func TestCalloutConnections(t *testing.T) {
	s := startFakeStore(t, users("u7@example.test"))
	st := calloutTo(t, s.addr)
	o := testOptions(st)
	o.NegativeTTL = 0 // every lookup asks
	o.PositiveTTL = 0
	v := newVerifier(t, o)
	for i := range 1000 {
		if r := lookup(v, st, fmt.Sprintf("u%d@example.test", i%100)); r.Verdict == Defer {
			t.Fatalf("lookup %d: %+v", i, r)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("1000 lookups one after the other: %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() { lookup(v, st, fmt.Sprintf("p%d@example.test", i)) })
	}
	wg.Wait()
	if p := s.peak.Load(); p > int64(o.MaxConnections) {
		t.Errorf("%d connections open at once, want at most %d", p, o.MaxConnections)
	}
	if n := s.rcpts.Load(); n != 1200 {
		t.Errorf("%d RCPTs, want 1200", n)
	}
}

// TestCalloutStale: a pooled connection the store closed is replaced.
func TestCalloutStale(t *testing.T) {
	s := startFakeStore(t, func(rcpt string) string {
		if rcpt == "bye@example.test" {
			return "" // answers nothing and hangs up
		}
		return "250 2.1.5 OK"
	})
	st := calloutTo(t, s.addr)
	v := newVerifier(t, testOptions(st))
	lookup(v, st, "a@example.test")
	// Close the pooled connection under the verifier, as a store's idle
	// timeout does.
	v.callout(st).pool.mu.Lock()
	for _, ic := range v.callout(st).pool.idle {
		ic.c.nc.Close()
	}
	v.callout(st).pool.mu.Unlock()
	if r := lookup(v, st, "b@example.test"); r.Verdict != Found {
		t.Errorf("Lookup after the store closed the connection = %+v, want Found", r)
	}
}

// TestCalloutQuoted: a local part that needs quotes is asked quoted.
func TestCalloutQuoted(t *testing.T) {
	s := startFakeStore(t, users(`"john doe"@example.test`))
	st := calloutTo(t, s.addr)
	v := newVerifier(t, testOptions(st))
	if r := lookup(v, st, "john doe@example.test"); r.Verdict != Found || r.Key != "john doe@example.test" {
		t.Errorf("Lookup = %+v, want Found for john doe@example.test", r)
	}
}

// TestCalloutTLS: the callout asks the store as the route's starttls and
// tls_verify say delivery reaches it: over TLS when offered, never in
// clear under "required", the certificate verified under tls_verify, in
// clear again when TLS is broken and nothing demands it.
func TestCalloutTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "Store CA")
	good := &tls.Config{Certificates: []tls.Certificate{ca.Certificate(t, "127.0.0.1")}}
	broken := &tls.Config{Certificates: good.Certificates, MaxVersion: tls.VersionTLS11}
	tests := []struct {
		name       string
		tls        *tls.Config // what the store offers; nil: no STARTTLS
		requireTLS bool        // the store refuses MAIL in clear
		mode       string
		verify     bool
		roots      *x509.CertPool
		verdict    Verdict
		detail     string
		rcpts      int64 // RCPTs the store saw, over TLS
		clear      int64 // and in clear
	}{
		{"store demands TLS", good, true, TLSOpportunistic, false, nil, Found, "accepted by lmtp ", 1, 0},
		{"required, verified", good, false, TLSRequired, true, ca.Pool, Found, "accepted by lmtp ", 1, 0},
		{"required, not offered", nil, false, TLSRequired, false, nil, Defer,
			`starttls = "required", but the store did not offer STARTTLS`, 0, 0},
		{"required, untrusted", good, false, TLSRequired, true, tlstest.NewCA(t, "Other CA").Pool, Defer,
			"TLS handshake: tls: failed to verify certificate", 0, 0},
		{"none", good, false, TLSNone, false, nil, Found, "accepted by lmtp ", 0, 1},
		{"opportunistic, TLS broken", broken, false, TLSOpportunistic, false, nil, Found, "accepted by lmtp ", 0, 1},
		{"opportunistic, verified, TLS broken", broken, false, TLSOpportunistic, true, ca.Pool, Defer, "TLS handshake: ", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startFake(t, &fakeStore{greeting: "220 fake LMTP", answer: users("u@example.test"), tls: tc.tls, requireTLS: tc.requireTLS})
			st := calloutTo(t, s.addr)
			st.StartTLS, st.TLSVerify = tc.mode, tc.verify
			o := testOptions(st)
			o.RootCAs = tc.roots
			v := newVerifier(t, o)
			r := lookup(v, st, "u@example.test")
			if r.Verdict != tc.verdict || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("Lookup = %+v, want %v with %q", r, tc.verdict, tc.detail)
			}
			if got, clear := s.tlsRcpts.Load(), s.rcpts.Load()-s.tlsRcpts.Load(); got != tc.rcpts || clear != tc.clear {
				t.Errorf("the store saw %d RCPTs over TLS and %d in clear, want %d and %d", got, clear, tc.rcpts, tc.clear)
			}
		})
	}
}
