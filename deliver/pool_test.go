package deliver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/internal/dnstest"
	"mxgate/internal/tlstest"
)

// connCounter is a downstream's listener that counts the connections it
// accepts and keeps each Read apart: a pipelined group arrives in one.
type connCounter struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
	reads []string
}

func (l *connCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	return &readLog{Conn: c, l: l}, nil
}

func (l *connCounter) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// dropAll closes every connection from the server's side, as a server
// that closes idle sessions does.
func (l *connCounter) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

func (l *connCounter) chunks() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reads...)
}

type readLog struct {
	net.Conn
	l *connCounter
}

func (c *readLog) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.l.mu.Lock()
		c.l.reads = append(c.l.reads, string(p[:n]))
		c.l.mu.Unlock()
	}
	return n, err
}

// countedServer runs the in-process downstream (go-smtp's server) behind
// a connCounter and returns its URL.
func countedServer(t *testing.T, be *fakeBackend, setup func(*smtp.Server)) (string, *connCounter, *wireLog) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &connCounter{Listener: l}
	s, wl := serveSMTP(t, cl, be, setup)
	scheme := "smtp"
	if s.LMTP {
		scheme = "lmtp"
	}
	return scheme + "://" + l.Addr().String(), cl, wl
}

// pooled is testOptions with sessions kept between messages.
func pooled(maxConns, maxMessages int, idle time.Duration) Options {
	o := testOptions()
	o.MaxConnections, o.MaxMessages, o.IdleTimeout = maxConns, maxMessages, idle
	return o
}

func closeTransport(t *testing.T, tr Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr.(Closer).Close(ctx)
}

// eventually waits (bounded) for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantDelivered(t *testing.T, rs []Result) {
	t.Helper()
	for _, r := range rs {
		if r.Status != Delivered {
			t.Errorf("%s: %v (%s: %s), want Delivered", r.Rcpt, r.Status, r.Reason, r.Err)
		}
	}
}

// A hundred messages from ten deliveries at once go over at most
// max_connections connections, and Close says QUIT on each.
func TestPoolBoundsConnections(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		t.Run(fmt.Sprintf("lmtp=%v", lmtp), func(t *testing.T) {
			be := &fakeBackend{}
			u, cl, wl := countedServer(t, be, func(s *smtp.Server) { s.LMTP = lmtp })
			tr := newTransport(t, u, pooled(2, 0, time.Minute))
			var wg sync.WaitGroup
			for g := range 10 {
				wg.Go(func() {
					for i := range 10 {
						rcpt := fmt.Sprintf("u%d-%d@example.test", g, i)
						wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", rcpt)))
					}
				})
			}
			wg.Wait()
			if n := len(be.received()); n != 100 {
				t.Errorf("the server got %d messages, want 100", n)
			}
			if n := cl.accepted(); n > 2 {
				t.Errorf("%d connections, want at most 2", n)
			}
			closeTransport(t, tr)
			eventually(t, "QUIT on every connection", func() bool { return strings.Count(wl.String(), "QUIT\r\n") == cl.accepted() })
		})
	}
}

// A connection idle past idle_timeout is closed with QUIT; the next
// message opens a new one.
func TestPoolIdleTimeout(t *testing.T) {
	be := &fakeBackend{}
	u, cl, wl := countedServer(t, be, nil)
	tr := newTransport(t, u, pooled(2, 0, 100*time.Millisecond))
	wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test")))
	eventually(t, "QUIT after the idle timeout", func() bool { return strings.Contains(wl.String(), "QUIT\r\n") })
	wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "b@example.test")))
	if n := cl.accepted(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// max_messages_per_connection: a connection carries that many messages,
// then QUIT.
func TestPoolMaxMessages(t *testing.T) {
	be := &fakeBackend{}
	u, cl, wl := countedServer(t, be, nil)
	tr := newTransport(t, u, pooled(2, 3, time.Minute))
	for i := range 7 {
		wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", fmt.Sprintf("u%d@example.test", i))))
	}
	if n := cl.accepted(); n != 3 {
		t.Errorf("%d connections for 7 messages at 3 per connection, want 3", n)
	}
	eventually(t, "two QUITs", func() bool { return strings.Count(wl.String(), "QUIT\r\n") == 2 })
	if n := strings.Count(wl.String(), "RSET\r\n"); n != 4 {
		t.Errorf("%d RSETs, want 4 (before the 2nd and 3rd message of each connection)", n)
	}
}

// A connection the server closed while it was idle is not a delivery
// failure: the message goes over a new one, in the same attempt.
func TestPoolServerDropsIdle(t *testing.T) {
	be := &fakeBackend{}
	u, cl, _ := countedServer(t, be, nil)
	tr := newTransport(t, u, pooled(2, 0, time.Minute))
	wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test")))
	cl.dropAll()
	got := tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "b@example.test"))
	checkResults(t, got, []Result{{Rcpt: "b@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"}})
	if n := cl.accepted(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if n := len(be.received()); n != 2 {
		t.Errorf("the server got %d messages, want 2", n)
	}
}

// miniMTA is a scripted downstream for what go-smtp's server cannot be
// made to do: refuse RSET, end a session with 421, hold its reply to the
// final dot. It offers PIPELINING and takes every message.
type miniMTA struct {
	rset    string        // reply to RSET; "" = 250
	perConn int           // > 0: 421 at the MAIL after this many messages on a connection; < 0: at every MAIL
	hold    chan struct{} // non-nil: the reply to the final dot waits for a value from it, or for it to be closed

	conns, datas, delivered, quits atomic.Int64
}

func (m *miniMTA) serve(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
	m.conns.Add(1)
	defer c.Close()
	tp.PrintfLine("220 mini.test ESMTP")
	n := 0
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			tp.PrintfLine("250-mini.test\r\n250 PIPELINING")
		case "RSET":
			if m.rset == "" {
				tp.PrintfLine("250 2.0.0 OK")
				continue
			}
			tp.PrintfLine("%s", m.rset)
		case "MAIL":
			if m.perConn < 0 || m.perConn > 0 && n == m.perConn {
				tp.PrintfLine("421 4.7.0 mini.test too many messages, closing connection")
				return
			}
			n++
			tp.PrintfLine("250 2.1.0 OK")
		case "RCPT":
			tp.PrintfLine("250 2.1.5 OK")
		case "DATA":
			m.datas.Add(1)
			tp.PrintfLine("354 go ahead")
			if _, err := tp.ReadDotBytes(); err != nil {
				return
			}
			if m.hold != nil {
				select {
				case <-m.hold:
				case <-done:
					return
				}
			}
			m.delivered.Add(1)
			tp.PrintfLine("250 2.0.0 queued")
		case "QUIT":
			m.quits.Add(1)
			tp.PrintfLine("221 2.0.0 bye")
			return
		default:
			tp.PrintfLine("500 5.5.1 what?")
		}
	}
}

// An RSET that fails, or a 421 on a reused connection, means a new
// connection for the same message; a 421 on a new connection is the
// server's answer.
func TestPoolStaleSession(t *testing.T) {
	tests := []struct {
		name      string
		mta       *miniMTA
		messages  int
		wantConns int64
		want      Result // of every message
	}{{
		name:      "RSET refused",
		mta:       &miniMTA{rset: "502 5.5.1 RSET not here"},
		messages:  3,
		wantConns: 3,
		want:      Result{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 queued"},
	}, {
		name:      "421 mid-session",
		mta:       &miniMTA{perConn: 2},
		messages:  5,
		wantConns: 3,
		want:      Result{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 queued"},
	}, {
		name:      "421 on a new connection",
		mta:       &miniMTA{perConn: -1},
		messages:  2,
		wantConns: 2,
		want: Result{Rcpt: "a@example.test", Status: Deferred, Reason: RemoteTemp, Host: host, Reply: "421 4.7.0 mini.test too many messages, closing connection",
			Err: "SMTP error from remote mail server after MAIL FROM:<s@example.test>: 421 4.7.0 mini.test too many messages, closing connection"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := startScripted(t, tt.mta.serve)
			tr := newTransport(t, u, pooled(1, 0, time.Minute))
			for range tt.messages {
				checkResults(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test")), []Result{tt.want})
			}
			if n := tt.mta.conns.Load(); n != tt.wantConns {
				t.Errorf("%d connections, want %d", n, tt.wantConns)
			}
		})
	}
}

// A delivery beyond max_connections waits for a connection, as long as
// its context lets it.
func TestPoolWaitBoundedByContext(t *testing.T) {
	mta := &miniMTA{hold: make(chan struct{})}
	u := startScripted(t, mta.serve)
	tr := newTransport(t, u, pooled(1, 0, time.Minute))
	first := make(chan []Result, 1)
	go func() {
		first <- tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test"))
	}()
	eventually(t, "the first delivery's connection", func() bool { return mta.conns.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got := tr.Deliver(ctx, msg("s@example.test", "Subject: x\n\nhi\n", "b@example.test"))
	checkResults(t, got, []Result{{Rcpt: "b@example.test", Status: Deferred, Reason: Abandoned, Host: host,
		Err: "delivery abandoned: context deadline exceeded"}})

	// The waiter that gives up leaves the slot alone: the next delivery
	// gets the first one's connection.
	close(mta.hold)
	wantDelivered(t, <-first)
	wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "c@example.test")))
	if n := mta.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// MAIL and the RCPTs (RSET first on a reused connection) reach the
// server in one read when it offers PIPELINING, over SMTP and LMTP.
func TestPoolPipelining(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		t.Run(fmt.Sprintf("lmtp=%v", lmtp), func(t *testing.T) {
			be := &fakeBackend{}
			u, cl, _ := countedServer(t, be, func(s *smtp.Server) { s.LMTP = lmtp })
			tr := newTransport(t, u, pooled(1, 0, time.Minute))
			for range 2 {
				wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test", "b@example.test")))
			}
			const group = "MAIL FROM:<s@example.test> BODY=8BITMIME SIZE=15\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
			chunks := cl.chunks()
			var first, second bool
			for _, c := range chunks {
				first = first || c == group
				second = second || c == "RSET\r\n"+group
			}
			if !first || !second {
				t.Errorf("reads %q\nwant %q and RSET before it, each in one read", chunks, group)
			}
			if n := cl.accepted(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

// A session with STARTTLS is reused encrypted: one handshake for several
// messages.
func TestPoolKeepsTLS(t *testing.T) {
	cert := tlstest.Certificate(t, "localhost", "127.0.0.1")
	be := &fakeBackend{}
	u, cl, _ := countedServer(t, be, func(s *smtp.Server) { s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} })
	tr := newTransport(t, u, pooled(1, 0, time.Minute))
	for range 3 {
		wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test")))
	}
	for i, r := range be.received() {
		if !r.tls {
			t.Errorf("message %d went in clear text", i)
		}
	}
	if n := cl.accepted(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// The MX transport keeps a connection per MX host address, whatever the
// recipient domain; a domain whose policy the connection does not meet
// (MTA-STS enforce, over a clear-text one) gets a new one.
func TestPoolMXHost(t *testing.T) {
	n := newMXNet(t)
	cl := &connCounter{Listener: n.listen("127.0.0.1")}
	be := &fakeBackend{}
	serveSMTP(t, cl, be, nil)
	ca := tlstest.NewCA(t, "Test CA")
	policyPort := tlstest.ServeMTASTS(t, ca, "mta-sts.c.test", "version: STSv1\nmode: enforce\nmx: mx.shared.test\nmax_age: 86400\n")
	srv := n.dns(dnstest.Zone{
		"a.test. MX":           {"a.test. 60 IN MX 10 mx.shared.test."},
		"b.test. MX":           {"b.test. 60 IN MX 10 mx.shared.test."},
		"c.test. MX":           {"c.test. 60 IN MX 10 mx.shared.test."},
		"mx.shared.test. A":    {"mx.shared.test. 60 IN A 127.0.0.1"},
		"_mta-sts.c.test. TXT": {`_mta-sts.c.test. 60 IN TXT "v=STSv1; id=1"`},
		"mta-sts.c.test. A":    {"mta-sts.c.test. 60 IN A 127.0.0.1"},
	})
	tr := n.transport(srv, func(o *MXOptions) {
		o.IdleTimeout = time.Minute
		o.MTASTS, o.MTASTSPort, o.RootCAs = "enforce", policyPort, ca.Pool
		o.MTASTSCache = filepath.Join(t.TempDir(), "mta-sts.json")
	})
	defer closeTransport(t, tr)
	for _, rcpt := range []string{"x@a.test", "y@b.test", "z@a.test"} {
		wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.net", "Subject: x\n\nhi\n", rcpt)))
	}
	if n := cl.accepted(); n != 1 {
		t.Errorf("%d connections for three messages to one MX host, want 1", n)
	}
	got := tr.Deliver(context.Background(), msg("s@example.net", "Subject: x\n\nhi\n", "w@c.test"))
	checkResults(t, got, []Result{{Rcpt: "w@c.test", Status: Deferred, Reason: TLSRequired, Host: "mx.shared.test [127.0.0.1]",
		Err: "a TLS session is required (MTA-STS policy of c.test), but the server did not offer TLS support"}})
	if n := cl.accepted(); n != 2 {
		t.Errorf("%d connections, want 2: the clear-text one does not serve c.test", n)
	}
}

// Close QUITs the idle sessions at once; a session in use when the pool
// closed says QUIT after its message instead of waiting idle.
func TestPoolClose(t *testing.T) {
	mta := &miniMTA{hold: make(chan struct{}, 1)}
	u := startScripted(t, mta.serve)
	tr := newTransport(t, u, pooled(2, 0, time.Minute))
	mta.hold <- struct{}{}
	wantDelivered(t, tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test")))
	inUse := make(chan []Result, 1)
	go func() {
		inUse <- tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "b@example.test"))
	}()
	eventually(t, "the second delivery in DATA", func() bool { return mta.datas.Load() == 2 })
	// The first session is the one in use: the pool holds none idle.
	closeTransport(t, tr)
	if n := mta.quits.Load(); n != 0 {
		t.Fatalf("%d QUITs before the message in flight ended, want 0", n)
	}
	mta.hold <- struct{}{}
	wantDelivered(t, <-inUse)
	eventually(t, "QUIT after the message in flight", func() bool { return mta.quits.Load() == 1 })
	if n := mta.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
