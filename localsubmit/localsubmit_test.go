package localsubmit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// got is what a handler saw of one request.
type got struct {
	req     Request
	message string
	err     error
}

// serve starts a Server on a socket in a fresh directory with handler h
// and returns the socket's path; the server is closed at the end of the
// test.
func serve(t *testing.T, o Options) string {
	t.Helper()
	o.Path = filepath.Join(t.TempDir(), "submit.sock")
	if o.MaxMessage == 0 {
		o.MaxMessage = 1 << 20
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = 4
	}
	if o.Log == nil {
		o.Log = func(s string) { t.Log(s) }
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(o.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind after Close: %v", o.Path, err)
		}
	})
	return o.Path
}

// recorder is a handler that reads the whole message and answers lines
// and status.
func recorder(lines []string, status int) (Handler, chan got) {
	seen := make(chan got, 10)
	return func(_ context.Context, req *Request) ([]string, int) {
		b, err := io.ReadAll(req.Message)
		seen <- got{req: *req, message: string(b), err: err}
		return lines, status
	}, seen
}

func TestSubmit(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 20000) // several frames
	tests := []struct {
		name    string
		args    []string
		message string
		lines   []string
		status  int
	}{
		{"one line, status 0", []string{"-t", "-i"}, "To: a@example.test\n\nhi\n", nil, 0},
		{"lines and status 1", []string{"-bm", "a@example.test", "b c"}, "Subject: x\n\nbody\n",
			[]string{"mxgate: <x@y>: recipient address rejected: Unrouteable address", "mxgate: no valid recipients: message not queued"}, 1},
		{"empty message", []string{"-bm", "a@example.test"}, "", nil, 0},
		{"big message", []string{"-t"}, big, []string{"ok"}, 0},
		{"no arguments", nil, "x", nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, seen := recorder(tt.lines, tt.status)
			path := serve(t, Options{Handler: h})
			var stderr bytes.Buffer
			status, err := Submit(context.Background(), path, tt.args, strings.NewReader(tt.message), &stderr)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			wantErr := ""
			for _, l := range tt.lines {
				wantErr += l + "\n"
			}
			if stderr.String() != wantErr {
				t.Errorf("stderr %q, want %q", stderr.String(), wantErr)
			}
			g := <-seen
			if g.err != nil || g.message != tt.message {
				t.Errorf("handler read %d bytes, err %v; want the %d bytes sent", len(g.message), g.err, len(tt.message))
			}
			if !slices.Equal(g.req.Args, tt.args) {
				t.Errorf("handler got args %q, want %q", g.req.Args, tt.args)
			}
			if g.req.Caller.Login != me.Username || g.req.Caller.UID != os.Getuid() {
				t.Errorf("caller %+v, want %s (uid %d) from SO_PEERCRED", g.req.Caller, me.Username, os.Getuid())
			}
		})
	}
}

// TestSocketMode: any local user may connect.
func TestSocketMode(t *testing.T) {
	h, _ := recorder(nil, 0)
	path := serve(t, Options{Handler: h})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v, want a socket with 0666", fi.Mode())
	}
}

// TestTooBig: the handler's reader fails past MaxMessage; the client
// still gets the answer.
func TestTooBig(t *testing.T) {
	h, seen := recorder([]string{"mxgate: message too big"}, 1)
	path := serve(t, Options{Handler: h, MaxMessage: 1000})
	var stderr bytes.Buffer
	status, err := Submit(context.Background(), path, []string{"-t"}, strings.NewReader(strings.Repeat("x", 100000)), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if status != 1 || stderr.String() != "mxgate: message too big\n" {
		t.Errorf("status %d, stderr %q", status, stderr.String())
	}
	if g := <-seen; !errors.Is(g.err, ErrTooBig) || len(g.message) > 1000 {
		t.Errorf("handler read %d bytes, err %v; want at most 1000 and ErrTooBig", len(g.message), g.err)
	}
}

// TestEarlyAnswer: a handler that answers without reading the message
// (a bad command line) reaches a client still sending.
func TestEarlyAnswer(t *testing.T) {
	path := serve(t, Options{Handler: func(context.Context, *Request) ([]string, int) {
		return []string{"mxgate: unknown option"}, 2
	}})
	var stderr bytes.Buffer
	status, err := Submit(context.Background(), path, []string{"-X"}, strings.NewReader(strings.Repeat("x", 4<<20)), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if status != 2 || stderr.String() != "mxgate: unknown option\n" {
		t.Errorf("status %d, stderr %q", status, stderr.String())
	}
}

// leaveSocket makes the socket file at path a crashed daemon leaves
// behind: there, with nobody listening.
func leaveSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

// TestNoDaemon: no socket, or a socket nobody listens on (its daemon
// crashed), is ErrNoDaemon, so the caller can say so or submit itself.
func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	leaveSocket(t, stale)
	for _, path := range []string{filepath.Join(dir, "absent.sock"), stale} {
		_, err := Submit(context.Background(), path, []string{"-t"}, strings.NewReader("x"), io.Discard)
		if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want ErrNoDaemon naming the socket", filepath.Base(path), err)
		}
	}
}

// TestStaleSocketReplaced: Listen takes over the socket a crashed daemon
// left behind.
func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "submit.sock")
	leaveSocket(t, path)
	h, _ := recorder(nil, 0)
	s, err := Listen(Options{Path: path, Handler: h, MaxMessage: 10, Timeout: time.Second, MaxConcurrent: 1, Log: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestConcurrencyLimit: past MaxConcurrent, a client waits up to the
// timeout and then gets exit status 75 (try again later).
func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	entered := make(chan struct{}, 1)
	path := serve(t, Options{MaxConcurrent: 1, Timeout: 300 * time.Millisecond, Handler: func(_ context.Context, req *Request) ([]string, int) {
		entered <- struct{}{}
		<-release
		return nil, 0
	}})
	first := make(chan int, 1)
	go func() {
		st, _ := Submit(context.Background(), path, []string{"-t"}, strings.NewReader("x"), io.Discard)
		first <- st
	}()
	<-entered
	var stderr bytes.Buffer
	status, err := Submit(context.Background(), path, []string{"-t"}, strings.NewReader("x"), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if status != 75 || !strings.Contains(stderr.String(), "try again later") {
		t.Errorf("second submission: status %d, stderr %q; want 75 and try again later", status, stderr.String())
	}
	once.Do(func() { close(release) })
	if st := <-first; st != 0 {
		t.Errorf("first submission: status %d, want 0", st)
	}
}

// TestIdleClient: a client that stops sending is given up on after the
// timeout; the handler's reader fails.
func TestIdleClient(t *testing.T) {
	h, seen := recorder(nil, 0)
	path := serve(t, Options{Handler: h, Timeout: 200 * time.Millisecond})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload, _ := encodeArgs([]string{"-t"})
	if err := writeFrame(c, frameArgs, payload); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(c, frameData, []byte("To: a@b\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-seen:
		var ne net.Error
		if !errors.As(g.err, &ne) || !ne.Timeout() {
			t.Errorf("handler's read ended with %v, want a timeout", g.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an idle client was not given up on")
	}
}
