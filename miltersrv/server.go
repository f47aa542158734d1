// Package miltersrv serves the check pipeline to another MTA as a milter
// (protocol 6, go-milter's server side): Postfix's smtpd_milters or
// Sendmail's INPUT_MAIL_FILTER ask it at connect, HELO, MAIL and RCPT,
// stream the message into a temporary file under data_dir and, at the end
// of the message, get the DATA stage's verdict as a milter reply (the same
// SMTP code and text as gateway mode), a discard, a quarantine or header
// modifications (the stamps, edits and removals the checks made). Its log
// lines and events are the gateway's (package gateway's LogOutcome,
// EmitChecks, FillRefusal, FillMessage), with the MTA's queue ID (macro
// i) as the message's ID.
package miltersrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-milter"

	"mxgate/address"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/gateway"
	"mxgate/spool"
)

// Options are what the server is built from.
type Options struct {
	// Config gives [milter_server] (listen, dry_run, timeout; fixed for
	// the server's life), data_dir and the relay's trusted networks.
	Config *config.Config
	// Pipeline is every check a session is put through; Retired, when
	// set, is called once a Reload has replaced them and no session uses
	// them any more.
	Pipeline *filters.Pipeline
	Retired  func()
	Log      gateway.Logger
	Bus      *event.Bus // nil emits nothing
}

// Server is the milter listener. Its socket is bound once New returns,
// so it can be made before root is dropped.
type Server struct {
	ln      net.Listener
	unix    string // the socket file to remove at the end, "" for inet
	timeout time.Duration
	dryRun  bool
	tmpDir  string
	log     gateway.Logger
	bus     *event.Bus
	ids     *spool.IDGenerator
	ms      *milter.Server

	// ctx ends every session's checks when Shutdown gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	gen      *generation
	sessions map[*conn]struct{}
	pending  *conn // accepted, not yet given its session (Serve's goroutine only)
	draining bool
	idle     chan struct{} // closed when draining and the last session ends
}

// generation is the config and checks a session is served under from its
// connect to its end; a reload changes them for new sessions only.
type generation struct {
	cfg      *config.Config
	policy   *address.Policy // the relay's trusted networks (DKIM signing)
	pipeline *filters.Pipeline
	retired  func()
	// Under Server.mu.
	users    int
	replaced bool
}

func newGeneration(cfg *config.Config, pl *filters.Pipeline, retired func()) *generation {
	return &generation{cfg: cfg, policy: address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks), pipeline: pl, retired: retired}
}

// New binds the listen address of [milter_server].
func New(o Options) (*Server, error) {
	cfg := o.Config
	if cfg == nil || cfg.MilterServer.Listen == "" {
		return nil, errors.New("miltersrv: no milter_server.listen")
	}
	if o.Pipeline == nil {
		return nil, errors.New("miltersrv: no check pipeline")
	}
	network, addr := "tcp", strings.TrimPrefix(cfg.MilterServer.Listen, "inet:")
	if p, ok := strings.CutPrefix(cfg.MilterServer.Listen, "unix:"); ok {
		network, addr = "unix", p
		// /run/mxgate/ is gone after a reboot (tmpfs).
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("miltersrv: listen on %s: %w", cfg.MilterServer.Listen, err)
		}
		// A socket left by a daemon that died would refuse the bind.
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(p)
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("miltersrv: listen on %s: %w", cfg.MilterServer.Listen, err)
	}
	s := &Server{
		timeout:  time.Duration(cfg.MilterServer.Timeout),
		dryRun:   cfg.MilterServer.DryRun,
		tmpDir:   cfg.DataDir,
		log:      o.Log,
		bus:      o.Bus,
		ids:      spool.NewIDGenerator(),
		gen:      newGeneration(cfg, o.Pipeline, o.Retired),
		sessions: make(map[*conn]struct{}),
	}
	if network == "unix" {
		s.unix = addr
		// Postfix's smtpd runs as its own user.
		if err := os.Chmod(addr, 0o666); err != nil {
			ln.Close()
			return nil, fmt.Errorf("miltersrv: %w", err)
		}
	}
	s.ln = &listener{Listener: ln, srv: s}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ms = &milter.Server{
		NewMilter: s.newSession,
		Actions: milter.OptAddHeader | milter.OptChangeHeader | milter.OptChangeBody | milter.OptAddRcpt |
			milter.OptRemoveRcpt | milter.OptQuarantine | milter.OptChangeFrom,
		// go-milter cannot parse SMFIC_UNKNOWN; header values keep their
		// leading space, so a field is given back exactly as it came.
		Protocol: milter.OptNoUnknown | milter.OptHeaderLeadingSpace,
	}
	return s, nil
}

// Addr is the address listened on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts the MTA's connections until Shutdown (then it returns
// nil) or until the listener fails.
func (s *Server) Serve() error {
	err := s.ms.Serve(s.ln)
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining || errors.Is(err, milter.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("miltersrv: serving: %w", err)
}

// Shutdown stops accepting and lets the sessions finish until ctx is
// done; then it ends their checks and closes them, and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errors.New("miltersrv: Shutdown called twice")
	}
	s.draining = true
	s.idle = make(chan struct{})
	if len(s.sessions) == 0 {
		close(s.idle)
	}
	s.mu.Unlock()
	s.ln.Close()
	if s.unix != "" {
		os.Remove(s.unix)
	}
	select {
	case <-s.idle:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	left := make([]*conn, 0, len(s.sessions))
	for c := range s.sessions {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		c.Conn.Close() // the session ends (and cleans up) as its read fails
	}
	<-s.idle
	return fmt.Errorf("miltersrv: drain deadline passed, closed %d sessions: %w", len(left), ctx.Err())
}

// Reload makes cfg's checks those of every session from now on; sessions
// in progress finish under theirs. retired is called, in its own
// goroutine, once a later Reload has replaced pl and no session uses it.
// [milter_server] itself is fixed for the server's life.
func (s *Server) Reload(cfg *config.Config, pl *filters.Pipeline, retired func()) {
	g := newGeneration(cfg, pl, retired)
	s.mu.Lock()
	old := s.gen
	s.gen = g
	old.replaced = true
	idle := old.users == 0
	s.mu.Unlock()
	if idle && old.retired != nil {
		go old.retired()
	}
}

// acquire is the generation a new session is served under.
func (s *Server) acquire() *generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.users++
	return s.gen
}

// release ends a session's hold on g and forgets c.
func (s *Server) release(c *conn, g *generation) {
	s.mu.Lock()
	g.users--
	retire := g.replaced && g.users == 0
	delete(s.sessions, c)
	if s.draining && len(s.sessions) == 0 {
		select {
		case <-s.idle:
		default:
			close(s.idle)
		}
	}
	s.mu.Unlock()
	if retire && g.retired != nil {
		go g.retired()
	}
}

// listener hands each accepted connection to the session go-milter makes
// for it next, in the same goroutine (newSession), and bounds the MTA's
// silences and its stalls in reading.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, timeout: l.srv.timeout}
	l.srv.mu.Lock()
	l.srv.sessions[c] = struct{}{}
	l.srv.pending = c
	l.srv.mu.Unlock()
	return c, nil
}

// conn is one MTA connection. Its Close, which go-milter calls once the
// session's loop ends (QUIT, a read error, a broken packet), ends the
// session: the temporary file, the checks, the generation.
type conn struct {
	net.Conn
	timeout time.Duration
	once    sync.Once
	end     func()
}

// Read bounds each wait for the MTA: go-milter's server sets no deadline.
func (c *conn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write bounds each reply to the MTA alike: an MTA that stops reading
// would otherwise hold the session, its temporary file and its checks.
func (c *conn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.end != nil {
			c.end()
		}
	})
	return err
}

// newSession is go-milter's NewMilter, called in Serve's goroutine right
// after Accept returned the connection it is for.
func (s *Server) newSession() milter.Milter {
	s.mu.Lock()
	c := s.pending
	s.pending = nil
	s.mu.Unlock()
	g := s.acquire()
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{srv: s, gen: g, ctx: ctx, cancel: cancel, name: gateway.NewConnName(), start: time.Now()}
	c.end = func() {
		ss.close()
		s.release(c, g)
	}
	return ss
}
