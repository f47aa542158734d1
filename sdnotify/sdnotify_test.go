package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// listen opens the receiving end, as systemd does, on a path or (name
// starting with '@') an abstract name, and points $NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	if strings.HasPrefix(name, "@") {
		addr.Name = "\x00" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv(Socket, name)
	return c
}

// receive returns the next datagram's lines.
func receive(t *testing.T, c *net.UnixConn) []string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram on the notify socket: %v", err)
	}
	return strings.Split(string(buf[:n]), "\n")
}

func TestSend(t *testing.T) {
	pid := fmt.Sprintf("MAINPID=%d", os.Getpid())
	tests := []struct {
		name string
		send func() error
		want []string // regular expressions, one per line
	}{
		{"ready", func() error { return Ready("listening on 127.0.0.1:25") },
			[]string{"READY=1", pid, "STATUS=listening on 127.0.0.1:25"}},
		{"reloading", Reloading, []string{"RELOADING=1", `MONOTONIC_USEC=[1-9][0-9]*`}},
		{"stopping", func() error { return Stopping("draining sessions (up to 30s)") },
			[]string{"STOPPING=1", `STATUS=draining sessions \(up to 30s\)`}},
		{"status", func() error { return Status("3 sessions") }, []string{"STATUS=3 sessions"}},
		{"send", func() error { return Send("WATCHDOG=1", "EXTEND_TIMEOUT_USEC=5000000") },
			[]string{"WATCHDOG=1", "EXTEND_TIMEOUT_USEC=5000000"}},
	}
	sockets := map[string]func(t *testing.T) string{
		"path":     func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") },
		"abstract": func(t *testing.T) string { return fmt.Sprintf("@mxgate-sdnotify-test-%d-%s", os.Getpid(), t.Name()) },
	}
	for kind, socket := range sockets {
		for _, tc := range tests {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				c := listen(t, socket(t))
				if err := tc.send(); err != nil {
					t.Fatal(err)
				}
				got := receive(t, c)
				if len(got) != len(tc.want) {
					t.Fatalf("datagram %q, want %d lines matching %q", got, len(tc.want), tc.want)
				}
				for i, re := range tc.want {
					if !regexp.MustCompile(`^` + re + `$`).MatchString(got[i]) {
						t.Errorf("line %d: %q, want %q", i+1, got[i], re)
					}
				}
			})
		}
	}
}

// TestReloadingClock: MONOTONIC_USEC is CLOCK_MONOTONIC, which systemd
// compares with its own; it only grows.
func TestReloadingClock(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	var last int64
	for range 2 {
		if err := Reloading(); err != nil {
			t.Fatal(err)
		}
		var usec int64
		if _, err := fmt.Sscanf(receive(t, c)[1], "MONOTONIC_USEC=%d", &usec); err != nil {
			t.Fatal(err)
		}
		if usec < last {
			t.Errorf("MONOTONIC_USEC went back from %d to %d", last, usec)
		}
		last = usec
	}
}

// TestNoSocket: outside systemd nothing is sent and nothing fails.
func TestNoSocket(t *testing.T) {
	t.Setenv(Socket, "")
	for _, f := range []func() error{func() error { return Ready("x") }, Reloading, func() error { return Stopping("x") }} {
		if err := f(); err != nil {
			t.Errorf("without %s: %v, want nil", Socket, err)
		}
	}
}

// TestSocketGone: a socket that nobody listens on is an error naming it,
// for the daemon to log: systemd will time the start out.
func TestSocketGone(t *testing.T) {
	name := filepath.Join(t.TempDir(), "gone")
	t.Setenv(Socket, name)
	err := Ready("x")
	if err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET="+name) {
		t.Errorf("Ready with no listener: %v, want an error naming NOTIFY_SOCKET=%s", err, name)
	}
}
