package deliver

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// received is one message as the downstream saw it.
type received struct {
	helo string
	from string
	to   []string
	data string
	tls  bool
}

// fakeBackend is an in-process downstream whose replies a test chooses.
type fakeBackend struct {
	rcptErr    map[string]error // RCPT reply per recipient (as the server parsed it)
	mailErr    error
	dataErr    error            // the final SMTP reply, or LMTP's default
	lmtpStatus map[string]error // LMTP: reply per recipient after the dot
	dropInData bool             // close the connection after reading part of the body

	mu   sync.Mutex
	msgs []received
}

func (b *fakeBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &fakeSession{b: b, c: c, cur: received{helo: c.Hostname(), tls: isTLS}}, nil
}

func (b *fakeBackend) received() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type fakeSession struct {
	b   *fakeBackend
	c   *smtp.Conn
	cur received
}

func (s *fakeSession) Reset()        { s.cur = received{helo: s.cur.helo, tls: s.cur.tls} }
func (s *fakeSession) Logout() error { return nil }

func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return s.b.mailErr
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.b.rcptErr[to]; err != nil {
		return err
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	if s.b.dropInData {
		io.ReadFull(r, make([]byte, 1024))
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(data)
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return s.b.dataErr
}

func (s *fakeSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	if err := s.Data(r); err != nil {
		return err
	}
	for _, to := range s.cur.to {
		if err, ok := s.b.lmtpStatus[to]; ok {
			st.SetStatus(to, err)
		}
	}
	return nil
}

// wireLog keeps every byte the server read, to assert on what went over
// the wire (CRLF, dot-stuffing, quoting) rather than on what go-smtp's
// server made of it.
type wireLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *wireLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type recordingListener struct {
	net.Listener
	log *wireLog
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, log: l.log}, nil
}

type recordingConn struct {
	net.Conn
	log *wireLog
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.log.mu.Lock()
	c.log.buf.Write(p[:n])
	c.log.mu.Unlock()
	return n, err
}

// startServer runs a go-smtp server on network ("tcp" on 127.0.0.1:0 or
// "unix" in a temp dir) until the test ends, and returns its URL.
func startServer(t *testing.T, network string, be *fakeBackend, setup func(*smtp.Server)) (string, *wireLog) {
	t.Helper()
	var l net.Listener
	var err error
	if network == "unix" {
		l, err = net.Listen("unix", t.TempDir()+"/lmtp.sock")
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s, wl := serveSMTP(t, l, be, setup)
	if network == "unix" {
		return "lmtp+unix://" + l.Addr().String(), wl
	}
	scheme := "smtp"
	if s.LMTP {
		scheme = "lmtp"
	}
	return scheme + "://" + l.Addr().String(), wl
}

// serveSMTP runs a go-smtp server for be on l until the test ends.
func serveSMTP(t *testing.T, l net.Listener, be *fakeBackend, setup func(*smtp.Server)) (*smtp.Server, *wireLog) {
	t.Helper()
	return serveSMTPBackend(t, l, be, setup)
}

// serveSMTPBackend is serveSMTP for any backend.
func serveSMTPBackend(t *testing.T, l net.Listener, be smtp.Backend, setup func(*smtp.Server)) (*smtp.Server, *wireLog) {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "downstream.test"
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	if setup != nil {
		setup(s)
	}
	wl := &wireLog{}
	go s.Serve(recordingListener{l, wl})
	t.Cleanup(func() { s.Close() })
	return s, wl
}

// scriptFunc serves one connection of a scripted server; done closes when
// the test ends, for handlers that stall on purpose.
type scriptFunc func(c net.Conn, tp *textproto.Conn, done <-chan struct{})

// startScripted runs a hand-written server for what go-smtp's server cannot
// be made to do (stall, hang up at a chosen point). handle gets each
// connection; the listener and connections close when the test ends.
func startScripted(t *testing.T, handle scriptFunc) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveScripted(t, l, handle)
	return "smtp://" + l.Addr().String()
}

// serveScripted serves l with handle until the test ends.
func serveScripted(t *testing.T, l net.Listener, handle scriptFunc) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c, textproto.NewConn(c), done)
			}()
		}
	}()
}

// msg is a Message whose Open yields body.
func msg(sender string, body string, rcpts ...string) *Message {
	return &Message{
		ID:         "1tXyZa-000AbC-Qr",
		Sender:     sender,
		Recipients: rcpts,
		Size:       int64(len(body)),
		Open:       func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

func testOptions() Options {
	return Options{
		Hostname:       "mx.example.net",
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
		StartTLS:       "opportunistic",
	}
}

// newTransport is the transport for a test's downstream URL, taken apart
// as package config does for deliver.New.
func newTransport(t *testing.T, u string, o Options) Transport {
	t.Helper()
	tr, err := New(target(t, u), o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// target takes a test's well-formed downstream URL apart: smtp://HOST:PORT,
// lmtp://HOST:PORT, lmtp+unix:///PATH or maildir:///PATH.
func target(t testing.TB, u string) Target {
	t.Helper()
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		t.Fatalf("test URL %q has no scheme", u)
	}
	if scheme == "lmtp+unix" || scheme == "maildir" {
		return Target{Scheme: scheme, Path: rest}
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		t.Fatalf("test URL %q: %v", u, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("test URL %q: %v", u, err)
	}
	return Target{Scheme: scheme, Host: host, Port: n}
}

// checkResults compares what a user of the results sees.
func checkResults(t *testing.T, got, want []Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		g := got[i]
		if want[i].Reason == NoReason {
			// Tables that predate Reason check the rest; the reasons
			// have their own tests.
			g.Reason = NoReason
		}
		if g != want[i] {
			t.Errorf("result %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// dataOnWire is what the client sent between DATA and the final dot.
func dataOnWire(t *testing.T, wire string) string {
	t.Helper()
	_, after, ok := strings.Cut(wire, "DATA\r\n")
	if !ok {
		t.Fatalf("no DATA on the wire:\n%q", wire)
	}
	body, _, ok := strings.Cut(after, "\r\n.\r\n")
	if !ok {
		t.Fatalf("no final dot on the wire:\n%q", after)
	}
	return body + "\r\n"
}
