// Package peertest gives tests their peers: the real third-party programs
// mxgate is tested against (spamd, clamd, rbldnsd, smtp-sink, ...), started
// and stopped through the project's scripts/peers.sh by PID; the silent
// peer of fault tests, which never answers; Serve, the accept loop of
// a test's own fake peer (a fake spamd or clamd); and CountingProxy, which
// counts the connections a peer sees.
package peertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptTimeout bounds one run of scripts/peers.sh (spamd needs seconds).
const scriptTimeout = 60 * time.Second

// Require fails the test when a program is missing: the tests that use a
// real peer are the ones that matter, so they never skip.
func Require(tb testing.TB, debPackages string, programs ...string) {
	tb.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err == nil {
			continue
		}
		if _, err := exec.LookPath("/usr/sbin/" + p); err == nil {
			continue
		}
		tb.Fatalf("%s not found (Debian packages %s): run scripts/install-test-deps.sh", p, debPackages)
	}
}

// Root is the repository root: the directory holding go.mod above the
// test's working directory.
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("peertest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Run runs scripts/peers.sh with args from the repository root (where
// relative zone and config paths lead) and fails the test when it fails.
func Run(tb testing.TB, args ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	root := Root(tb)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "peers.sh"), args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("scripts/peers.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// FreePort returns a loopback port nothing is bound to, TCP or (udp) UDP;
// the peers bind it themselves.
func FreePort(tb testing.TB, udp bool) int {
	tb.Helper()
	if udp {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreePorts returns a TCP port p of 127.0.0.1 such that p, p+1, ...
// p+n-1 are all free now: for a peer that binds ports beside its own
// (rspamd takes the two after it).
func FreePorts(tb testing.TB, n int) int {
	tb.Helper()
	for range 100 {
		p := FreePort(tb, false)
		if p+n-1 > 65535 {
			continue
		}
		var held []net.Listener
		for i := 1; i < n; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+i))
			if err != nil {
				break
			}
			held = append(held, ln)
		}
		for _, ln := range held {
			ln.Close()
		}
		if len(held) == n-1 {
			return p
		}
	}
	tb.Fatalf("no %d consecutive free ports on 127.0.0.1 in 100 tries", n)
	return 0
}

// Start runs `peers.sh start name DIR PORT extra...` in dir (""; a fresh
// one) on port (0: a free TCP port), stops it when the test ends, and
// returns its address.
func Start(tb testing.TB, name, dir string, port int, extra ...string) string {
	tb.Helper()
	if port == 0 {
		port = FreePort(tb, false)
	}
	if dir == "" {
		dir = tb.TempDir()
	}
	Run(tb, append([]string{"start", name, dir, fmt.Sprint(port)}, extra...)...)
	tb.Cleanup(func() { Run(tb, "stop", name, dir) })
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// Silent serves l as a peer that accepts every connection and never says a
// word (a hung server, for timeout tests) until the test ends, when l and
// every connection are closed.
func Silent(tb testing.TB, l net.Listener) {
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
}

// ServeDeadline bounds each connection Serve hands to its handler, so a
// client that hangs cannot hang the test.
const ServeDeadline = 10 * time.Second

// Serve is the accept loop of a fake peer: each connection to l is
// handled by handle in its own goroutine, under ServeDeadline, and closed
// when handle returns. When the test ends l is closed and Serve's cleanup
// waits for every handler to return.
func Serve(tb testing.TB, l net.Listener, handle func(c net.Conn)) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(ServeDeadline))
				handle(c)
			})
		}
	})
	tb.Cleanup(func() { l.Close(); wg.Wait() })
}

var quoted = regexp.MustCompile(`"([^"]*)"`)

// DKIMRecord is the DNS TXT record of the key the opendkim that
// peers.sh started in dir signs with (selector sel1 of example.test), as
// opendkim-genkey wrote it in BIND syntax: its quoted strings joined.
func DKIMRecord(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, "keys", "sel1.txt")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var rec strings.Builder
	for _, m := range quoted.FindAllStringSubmatch(string(b), -1) {
		rec.WriteString(m[1])
	}
	if !strings.Contains(rec.String(), "p=") {
		tb.Fatalf("%s: no DKIM key record in %q", path, b)
	}
	return rec.String()
}

// Proxy forwards TCP connections to a peer and counts them: the
// connections the peer sees, for tests of connection reuse.
type Proxy struct {
	Addr  string // where to connect instead of the peer
	conns atomic.Int64
}

// Conns is how many connections the proxy has accepted.
func (p *Proxy) Conns() int64 { return p.conns.Load() }

// CountingProxy starts a Proxy to target on 127.0.0.1, until the test ends
// (each connection under ServeDeadline, as Serve's).
func CountingProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String()}
	Serve(tb, l, func(c net.Conn) {
		p.conns.Add(1)
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() })
		io.Copy(c, up)
		c.(*net.TCPConn).CloseWrite()
		wg.Wait()
	})
	return p
}

// Redis starts a redis-server of its own for the test (no persistence,
// stopped when the test ends) and returns its URL, database 0.
func Redis(tb testing.TB) string {
	tb.Helper()
	Require(tb, "redis-server", "redis-server")
	return "redis://" + Start(tb, "redis", "", 0) + "/0"
}

// Prometheus starts a Prometheus server of its own for the test, scraping
// each target ("HOST:PORT", /metrics) every second, with its storage in a
// scratch directory, stopped when the test ends; it returns the base URL
// of its HTTP API, "http://127.0.0.1:PORT".
func Prometheus(tb testing.TB, targets ...string) string {
	tb.Helper()
	Require(tb, "prometheus", "prometheus")
	return "http://" + Start(tb, "prometheus", "", 0, targets...)
}
