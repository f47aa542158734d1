// Package gateway owns the SMTP server: listeners with connection limits,
// STARTTLS and implicit TLS, the session state machine on go-smtp (errors
// per connection, the sender and recipient syntax), and DATA: streamed
// into the spool with CRLF checks against SMTP smuggling, stamped with
// Received:, committed before the 250 that names the queue ID, and logged
// the Exim way. Every decision on a session is the check pipeline's
// (package filters, built by package checks): the gateway asks it at each
// stage and turns its events into replies, log lines and the -bh trace.
// It knows no check by name. It also works around go-smtp's gaps listed
// in conn.go.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/auth"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/hostlookup"
	"mxgate/mainlog"
	"mxgate/spool"
)

// Options are what the gateway is built from.
type Options struct {
	Config   *config.Config
	Spool    *spool.Spool
	Log      *mainlog.Logger
	OnCommit func(spool.ID) // the queue's Enqueue; called after each 250
	// Pipeline is every check a session is put through, the relay policy
	// first (package checks builds it from the config). Required: without
	// it nothing would refuse a recipient.
	Pipeline *filters.Pipeline
	// Retired, when set, is called (in its own goroutine) once a Reload
	// has replaced Config and Pipeline and no connection uses them any
	// more.
	Retired func()
	// HostLookup finds each client's host name at connect (Exim's
	// host_lookup), for the Received header, H= and the milters; nil
	// looks up nothing and every client is known by its address alone.
	HostLookup *hostlookup.Resolver

	// Trace makes a test server (Exim's -bh): no listeners, no spool, no
	// log files. ServeTest runs one session; every decision goes to Trace
	// as a ">>> " line and what would be logged as a "LOG: " line, and an
	// accepted message is read, checked and dropped.
	Trace *Tracer

	// Bus gets the sessions' events (connections, checks, refusals,
	// messages); nil emits nothing.
	Bus *event.Bus
}

// Logger is where the gateway's log lines go: the mainlog, or the trace
// of a test session.
type Logger interface {
	Main(id, text string)
	Reject(id, text string, extra ...string)
	Panic(text string)
}

// Server is the SMTP side of mxgate. Its listeners are open once New
// returns, so Addrs is known before Serve.
type Server struct {
	// fixed is the config the server was made with: what go-smtp holds
	// for its lifetime (hostname, limits, timeouts) comes from it.
	fixed    *config.Config
	spool    *spool.Spool
	log      Logger
	onCommit func(spool.ID)
	bus      *event.Bus
	hosts    *hostlookup.Resolver // nil: no host name lookups; made once (host_lookup needs a restart)
	smtp     *smtp.Server
	// auth checks SMTP AUTH logins (nil: no [auth], AUTH offered
	// nowhere); throttle counts their failures. Both are made once:
	// [auth] needs a restart.
	auth     auth.Backend
	throttle *auth.Throttle
	lns      []net.Listener // what go-smtp serves, in Addrs order
	addrs    []net.Addr

	// Test mode only: the trace, and the IDs a session would have used.
	trace *Tracer
	ids   *spool.IDGenerator

	// ctx is cancelled when Shutdown gives up waiting: commits still
	// running then fail rather than answer a client that is gone.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	gen      *generation // new connections are accepted under it (Reload)
	draining bool        // Shutdown has begun
	forced   bool        // Shutdown's deadline passed; no new DATA starts
	total    int
	perIP    map[netip.Addr]int
	conns    map[*conn]struct{}
	refusing sync.WaitGroup // 421 writers of refused connections
	inData   sync.WaitGroup // Data calls in progress
}

// New checks the options, loads the TLS certificate and opens every
// listener of the config.
func New(o Options) (*Server, error) {
	cfg := o.Config
	if cfg == nil {
		return nil, errors.New("gateway: no config")
	}
	test := o.Trace != nil
	if o.Spool == nil && !test {
		return nil, errors.New("gateway: no spool")
	}
	if o.Pipeline == nil {
		return nil, errors.New("gateway: no check pipeline")
	}
	// A test session runs on a terminal or a pipe: no TLS to offer there.
	gen, err := newGeneration(cfg, o.Pipeline, o.Retired, !test)
	if err != nil {
		return nil, err
	}
	s := &Server{
		fixed:    cfg,
		spool:    o.Spool,
		onCommit: o.OnCommit,
		bus:      o.Bus,
		gen:      gen,
		hosts:    o.HostLookup,
		perIP:    make(map[netip.Addr]int),
		conns:    make(map[*conn]struct{}),
	}
	switch {
	case test:
		s.trace = o.Trace
		s.log = s.trace
		s.ids = spool.NewIDGenerator()
	case o.Log != nil:
		s.log = o.Log
	default:
		s.log = mainlog.Discard()
	}
	if s.onCommit == nil {
		s.onCommit = func(spool.ID) {}
	}
	if a := cfg.Auth; a.Enabled() {
		b, err := auth.New(a, s.log.Panic)
		if err != nil {
			return nil, fmt.Errorf("gateway: auth.backend: %w", err)
		}
		s.auth = b
		s.throttle = auth.NewThrottle(a.MaxFailures, time.Duration(a.FailureWindow), time.Duration(a.BlockTime))
	}
	var tlsConf *tls.Config
	if gen.tls != nil {
		// Each connection gets the certificates of its generation.
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: s.configForClient}
	}
	if len(cfg.ListenTLS)+len(cfg.ListenSubmission) > 0 && tlsConf == nil && !test {
		return nil, errors.New("gateway: listen_tls and listen_submission need tls.cert and tls.key")
	}
	if len(cfg.Listen)+len(cfg.ListenTLS) == 0 && !test {
		return nil, errors.New("gateway: nothing to listen on (listen and listen_tls are empty)")
	}

	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Hostname
	srv.TLSConfig = tlsConf // STARTTLS on the plain listeners
	srv.EnableSMTPUTF8 = true
	srv.MaxMessageBytes = int64(cfg.SMTP.MaxMessageSize) // EHLO's SIZE; also MAIL SIZE=, DATA and BDAT
	srv.MaxRecipients = cfg.SMTP.MaxRecipients
	srv.MaxLineLength = cfg.SMTP.MaxLineLength
	srv.ReadTimeout = time.Duration(cfg.SMTP.CommandTimeout)
	srv.WriteTimeout = time.Duration(cfg.SMTP.CommandTimeout)
	srv.ErrorLog = errorLog{s.log}
	srv.ErrorReply = s.errorReply // smtp.max_errors, on every error reply
	s.smtp = srv

	s.ctx, s.cancel = context.WithCancel(context.Background())
	if test {
		return s, nil
	}
	fail := func(err error) (*Server, error) {
		s.closeListeners()
		s.cancel()
		if s.auth != nil {
			s.auth.Close()
		}
		return nil, err
	}
	lc := net.ListenConfig{}
	for _, a := range cfg.Listen {
		l, err := lc.Listen(s.ctx, "tcp", a)
		if err != nil {
			return fail(fmt.Errorf("gateway: listen on %s: %w", a, err))
		}
		s.addrs = append(s.addrs, l.Addr())
		s.lns = append(s.lns, &listener{Listener: l, srv: s})
	}
	for _, a := range cfg.ListenTLS {
		l, err := lc.Listen(s.ctx, "tcp", a)
		if err != nil {
			return fail(fmt.Errorf("gateway: listen (TLS) on %s: %w", a, err))
		}
		s.addrs = append(s.addrs, l.Addr())
		s.lns = append(s.lns, tls.NewListener(&listener{Listener: l, srv: s, implicitTLS: true}, tlsConf))
	}
	for _, a := range cfg.ListenSubmission {
		l, err := lc.Listen(s.ctx, "tcp", a)
		if err != nil {
			return fail(fmt.Errorf("gateway: listen (submission) on %s: %w", a, err))
		}
		s.addrs = append(s.addrs, l.Addr())
		s.lns = append(s.lns, &listener{Listener: l, srv: s, submission: true})
	}
	return s, nil
}

func (s *Server) closeListeners() {
	for _, l := range s.lns {
		l.Close()
	}
}

// Addrs returns the addresses listened on: the listen entries, then the
// listen_tls ones, then the listen_submission ones.
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Serve accepts connections on every listener until Shutdown (then it
// returns nil) or until a listener fails (then the others are closed and
// the error is returned).
func (s *Server) Serve() error {
	errs := make(chan error, len(s.lns))
	for _, l := range s.lns {
		go func() { errs <- s.smtp.Serve(l) }()
	}
	var first error
	for range s.lns {
		err := <-errs
		s.mu.Lock()
		draining := s.draining // the listeners were closed by Shutdown
		s.mu.Unlock()
		if err != nil && !draining && first == nil {
			first = fmt.Errorf("gateway: serving SMTP: %w", err)
			s.closeListeners()
		}
	}
	return first
}

// Shutdown stops accepting at once and lets sessions finish until ctx is
// done; then it closes the connections left, waits for their DATA to stop
// (a commit in flight is cancelled, so no client is left with a message it
// was never told about) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	// go-smtp only knows the listeners Serve has reached.
	s.closeListeners()
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		return errors.New("gateway: Shutdown called twice")
	}
	if s.auth != nil {
		defer s.auth.Close()
	}
	if ctx.Err() == nil { // every session has ended
		s.cancel()
		s.refusing.Wait()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("gateway: closing listeners: %w", err)
		}
		return nil
	}
	s.mu.Lock()
	s.forced = true
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range left {
		c.Close()
	}
	s.inData.Wait()
	s.refusing.Wait()
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("gateway: drain deadline passed, closed %d sessions: %w", len(left), ctx.Err())
}

// errorLog sends go-smtp's own complaints (TLS handshakes that failed on
// the implicit TLS port, broken connections, recovered panics) to mainlog.
type errorLog struct{ log Logger }

func (e errorLog) Printf(format string, v ...any) { e.log.Main("", fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.log.Main("", fmt.Sprintln(v...)) }

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	raw := c.Conn()
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	gc, ok := raw.(*conn)
	if !ok {
		return nil, fmt.Errorf("gateway: connection %v was not accepted by the gateway", raw.RemoteAddr())
	}
	return &session{srv: b.s, c: c, conn: gc}, nil
}
