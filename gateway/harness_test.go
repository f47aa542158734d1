package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/hostlookup"
	"mxgate/internal/eventtest"
	"mxgate/internal/tlstest"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/spool"
)

// clientDeadline bounds every test conversation, so a server that never
// answers fails the test instead of hanging it.
const clientDeadline = 20 * time.Second

type testServer struct {
	t       *testing.T
	srv     *Server
	spool   *spool.Spool
	cfg     *config.Config
	logDir  string
	served  chan error
	mu      sync.Mutex
	commits []spool.ID
	// pipeline is the checks of cfg, as cmd/mxgate builds them.
	pipeline *checks.Pipeline
	// events is what the server emitted.
	events *eventtest.Recorder
}

// newTestServer runs a gateway on 127.0.0.1 with the embedded defaults,
// relay domain example.test and, unless edit changes it, a trusted network
// that does not hold the test client (127.0.0.1).
func newTestServer(t *testing.T, edit func(*config.Config)) *testServer {
	t.Helper()
	return newTestServerWith(t, edit, nil)
}

// newTestServerWith is newTestServer with the checks' pipeline made by
// build instead of package checks (fakes), when build is not nil.
func newTestServerWith(t *testing.T, edit func(*config.Config), build func(*config.Config, filters.Logger) *filters.Pipeline) *testServer {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "mx.example.test"
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.DataDir = dir
	cfg.Relay.Domains = []string{"example.test"}
	cfg.Relay.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	// Trusted clients relay: mail for other domains has a route out.
	cfg.Outbound.Mode = "mx"
	// No names unless a test turns host_lookup on with its fake DNS.
	cfg.HostLookup.Enabled = false
	if edit != nil {
		edit(cfg)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Sync: spool.SyncFdatasync,
		MinFreeSpace: int64(cfg.Spool.MinFreeSpace), MinFreeInodes: int64(cfg.Spool.MinFreeInodes)})
	if err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "log")
	lg, err := mainlog.Open(logDir, false)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, spool: sp, cfg: cfg, logDir: logDir, served: make(chan error, 1)}
	rec, bus := eventtest.New()
	ts.events = rec
	pl, err := checks.Build(cfg, lg, route.New(checks.RouteOptions(cfg)), false)
	if err != nil {
		t.Fatal(err)
	}
	ts.pipeline = pl
	if build != nil {
		pl.Pipeline = build(cfg, lg)
	}
	var hosts *hostlookup.Resolver
	if h := cfg.HostLookup; h.Enabled {
		hosts, err = hostlookup.New(hostlookup.Options{Resolvers: h.Resolver, Timeout: time.Duration(h.Timeout),
			CacheSize: h.CacheSize, MinTTL: time.Duration(h.MinTTL), MaxTTL: time.Duration(h.MaxTTL), HostsFile: testHostsFile})
		if err != nil {
			t.Fatal(err)
		}
	}
	ts.srv, err = New(Options{Config: cfg, Spool: sp, Log: lg, Pipeline: pl.Pipeline, HostLookup: hosts, Bus: bus, OnCommit: func(id spool.ID) {
		ts.mu.Lock()
		ts.commits = append(ts.commits, id)
		ts.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { ts.served <- ts.srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil && !strings.Contains(err.Error(), "twice") {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.served; err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
		pl.Close()
		sp.Close()
		lg.Close()
	})
	return ts
}

func (ts *testServer) addr(i int) string { return ts.srv.Addrs()[i].String() }

// queued returns the IDs in the spool, checked against the OnCommit calls.
func (ts *testServer) queued() []spool.ID {
	ts.t.Helper()
	ids, err := ts.spool.List()
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.mu.Lock()
	commits := slices.Clone(ts.commits)
	ts.mu.Unlock()
	slices.Sort(commits)
	slices.Sort(ids)
	if !slices.Equal(ids, commits) {
		ts.t.Errorf("spool holds %v but OnCommit was called for %v", ids, commits)
	}
	return ids
}

// onlyID is the ID of the one message the spool must hold.
func (ts *testServer) onlyID() spool.ID {
	ts.t.Helper()
	ids := ts.queued()
	if len(ids) != 1 {
		ts.t.Fatalf("queued %v, want one message", ids)
	}
	return ids[0]
}

// message returns the spooled message as delivery would read it.
func (ts *testServer) message(id spool.ID) string {
	ts.t.Helper()
	rc, size, err := ts.spool.OpenMessage(id)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		ts.t.Fatal(err)
	}
	if int64(len(b)) != size {
		ts.t.Errorf("OpenMessage size %d, read %d bytes", size, len(b))
	}
	return string(b)
}

func (ts *testServer) logFile(name string) string {
	ts.t.Helper()
	b, err := os.ReadFile(filepath.Join(ts.logDir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		ts.t.Fatal(err)
	}
	return string(b)
}

// client speaks raw bytes, so the tests control every CR and LF.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: clientDeadline}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, c)
}

func newClient(t *testing.T, c net.Conn) *client {
	c.SetDeadline(time.Now().Add(clientDeadline))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// greet reads the banner and says EHLO.
func (c *client) greet() {
	c.t.Helper()
	c.expect("", "220 mx.example.test ESMTP")
	c.expect("EHLO client.test", "250-Hello client.test")
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("writing %q: %v", s, err)
	}
}

// reply reads one whole reply, lines joined with "\n" and without CRLF.
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply (so far %q): %v", strings.Join(append(lines, l), "\n"), err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect sends cmd (nothing when "") and checks the reply starts with want.
func (c *client) expect(cmd, want string) string {
	c.t.Helper()
	if cmd != "" {
		c.send(cmd + "\r\n")
	}
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%q -> %q, want %q...", cmd, got, want)
	}
	return got
}

// rest reads until the server closes the connection.
func (c *client) rest() string {
	c.t.Helper()
	b, err := io.ReadAll(c.r)
	if err != nil {
		c.t.Fatalf("reading to EOF (got %q): %v", b, err)
	}
	return string(b)
}

// wire turns an LF message into DATA's form: CRLF, dot-stuffed, with the
// end-of-data line.
func wire(msg string) string {
	lines := strings.Split(strings.TrimSuffix(msg, "\n"), "\n")
	var b strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l + "\r\n")
	}
	return b.String() + ".\r\n"
}

// sendRaw runs one transaction whose DATA is raw, exactly as given (end
// of data included), and expects it accepted.
func (c *client) sendRaw(data string) {
	c.t.Helper()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send(data)
	c.expect("", "250 2.0.0 OK id=")
}

// sendMessage runs one transaction and returns the DATA reply.
func (c *client) sendMessage(from string, rcpts []string, msg string) string {
	c.t.Helper()
	c.expect("MAIL FROM:<"+from+">", "250 ")
	for _, r := range rcpts {
		c.expect("RCPT TO:<"+r+">", "250 ")
	}
	c.expect("DATA", "354 ")
	c.send(wire(msg))
	return c.reply()
}

func readMessage(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func withTLS(t *testing.T) func(*config.Config) {
	cert, key := tlstest.Files(t, "mx.example.test")
	return func(c *config.Config) {
		c.TLS.Cert, c.TLS.Key = cert, key
		c.ListenTLS = []string{"127.0.0.1:0"}
	}
}

func tlsClientConfig() *tls.Config {
	return &tls.Config{ServerName: "mx.example.test", InsecureSkipVerify: true}
}
