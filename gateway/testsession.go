package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"mxgate/mainlog"
)

// Tracer is the trace of a test session: ">>> " lines for the decisions
// and "LOG: " lines for what the daemon would have logged, without the
// timestamp (Exim's -bh). Data may run in go-smtp's BDAT goroutine, so
// lines are written under mu. A nil *Tracer traces nothing: the daemon's
// code paths call it unconditionally.
type Tracer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewTracer returns the trace of a test session written to w. It is also
// the Logger of the session's check pipeline, so what a check would log
// shows up in the trace.
func NewTracer(w io.Writer) *Tracer { return &Tracer{w: w} }

func (t *Tracer) line(prefix, text string) {
	b := mainlog.AppendEscaped([]byte(prefix), text)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.w.Write(append(b, '\n'))
}

// printf writes one ">>> " decision line.
func (t *Tracer) printf(format string, a ...any) {
	if t == nil {
		return
	}
	t.line(">>> ", fmt.Sprintf(format, a...))
}

// Trace writes one line of a decision's trace (">>> line"), as a test
// session traces its checks: the policy server's -bh uses it.
func (t *Tracer) Trace(line string) { t.printf("%s", line) }

func (t *Tracer) Main(id, text string) {
	if id != "" {
		text = id + " " + text
	}
	t.line("LOG: ", text)
}

// Reject traces the log line only: the rejectlog's extra lines repeat the
// message's headers, which the tester has just typed.
func (t *Tracer) Reject(id, text string, _ ...string) { t.Main(id, text) }

func (t *Tracer) Panic(text string) { t.line("LOG: ", "PANIC "+text) }

// ServeTest runs one SMTP session as if from peer, reading the client's
// side from in and writing the server's to out, through the same session
// code and policy as the daemon; it returns when the client quits or in
// ends. The server must have been made with Options.Trace.
//
// Lines may end in LF or CRLF: a terminal sends LF, and a script written
// in an editor does too. So every LF is read as CRLF, and a bare LF in
// DATA cannot be tested this way (a bare CR can).
func (s *Server) ServeTest(peer netip.AddrPort, in io.Reader, out io.Writer) error {
	if s.trace == nil {
		return errors.New("gateway: ServeTest needs a server made with Options.Trace")
	}
	ip := peer.Addr().Unmap()
	fmt.Fprintf(out, "**** SMTP testing session as if from host %s\n**** but without any ident (RFC 1413) callback.\n**** This is not for real!\n\n", ip)
	if s.gen.policy.Trusted(ip) {
		s.trace.printf("host in relay.trusted_networks? yes: may relay to any domain")
	} else {
		s.trace.printf("host in relay.trusted_networks? no")
	}
	if s.fixed.TLS.Cert != "" {
		s.trace.printf("STARTTLS not offered: a test session has no TLS")
	}
	sc := &stdioConn{r: &crlfReader{r: in}, w: out, peer: peer, closed: make(chan struct{})}
	gc, why := s.admit(sc, ip, int(peer.Port()))
	if gc == nil {
		return fmt.Errorf("gateway: test session from %s refused: %s", ip, why)
	}
	gc.open(false)
	err := s.smtp.Serve(&oneConnListener{c: gc, done: sc.closed})
	s.inData.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// stdioConn is a test session's connection: reads from the tester's
// input, writes to the output. Deadlines do nothing, as a person at a
// terminal may take their time.
type stdioConn struct {
	r      io.Reader
	w      io.Writer
	peer   netip.AddrPort
	once   sync.Once
	closed chan struct{}
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Close ends the session; in and out belong to the caller and stay open.
func (c *stdioConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *stdioConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *stdioConn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(c.peer)
}
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener hands go-smtp a single connection, then reports itself
// closed once that connection is, which ends Serve.
type oneConnListener struct {
	c    net.Conn
	done <-chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }

// crlfReader turns every LF not preceded by CR into CRLF.
type crlfReader struct {
	r         io.Reader
	buf       []byte
	cr        bool // the last byte passed on was a CR
	pendingLF bool // a CR was passed on for an LF that did not fit
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	if c.pendingLF {
		p[0] = '\n'
		n, c.pendingLF = 1, false
		if len(p) == 1 {
			return 1, nil
		}
	}
	// Each byte read becomes at most two; the last one may be split
	// across calls through pendingLF.
	m := max((len(p)-n)/2, 1)
	if len(c.buf) < m {
		c.buf = make([]byte, m)
	}
	k, err := c.r.Read(c.buf[:m])
	for _, b := range c.buf[:k] {
		if b == '\n' && !c.cr {
			p[n] = '\r'
			n++
			if n == len(p) {
				c.pendingLF = true
				continue
			}
		}
		p[n] = b
		n++
		c.cr = b == '\r'
	}
	if c.pendingLF {
		c.cr = false
		if err == io.EOF {
			err = nil // the LF is still to come
		}
	}
	return n, err
}
