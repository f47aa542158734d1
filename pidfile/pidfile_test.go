package pidfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc makes a process table under a temporary directory holding one
// process per entry: pid → cmdline (NUL-separated), comm, and whether its
// exe is this test binary.
func fakeProc(t *testing.T, procs map[int]struct {
	cmdline, comm string
	ourExe        bool
}) {
	t.Helper()
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p.cmdline), 0o644)
		os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644)
		if p.ourExe {
			if err := os.Symlink(self, filepath.Join(dir, "exe")); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })
}

func TestWriteRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mxgate.pid")
	if err := Write(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("pid file holds %q, %v", b, err)
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); err != nil {
		t.Errorf("removing it again: %v", err)
	}
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

func TestDaemon(t *testing.T) {
	fakeProc(t, map[int]struct {
		cmdline, comm string
		ourExe        bool
	}{
		100: {"/usr/sbin/mxgate\x00-config\x00/etc/mxgate.toml\x00serve\x00", "mxgate", false},
		101: {"/opt/new/mxgate-renamed\x00serve\x00", "mxgate-renamed", true},
		102: {"/usr/bin/vim\x00serve\x00", "vim", false},
		103: {"/usr/sbin/mxgate\x00-bp\x00", "mxgate", false},
		104: {"/usr/sbin/mxgate\x00", "mxgate", false},
	})
	dir := t.TempDir()
	pidFile := func(content string) string {
		p := filepath.Join(dir, "mxgate.pid")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		content string
		pid     int
		err     string
	}{
		{"100\n", 100, ""},
		{" 101 \n", 101, ""},
		{"102\n", 0, `process 102 from PATH is not an mxgate daemon (stale pid file; "/usr/bin/vim serve" runs there): not signalled`},
		{"103\n", 0, `process 103 from PATH is not an mxgate daemon (stale pid file; "/usr/sbin/mxgate -bp" runs there): not signalled`},
		{"104\n", 0, `process 104 from PATH is not an mxgate daemon (stale pid file; "/usr/sbin/mxgate" runs there): not signalled`},
		{"999\n", 0, "no mxgate daemon is running: process 999 from PATH has exited (stale pid file)"},
		{"garbage\n", 0, `PATH holds "garbage", not a process ID`},
		{"-5\n", 0, `PATH holds "-5", not a process ID`},
	} {
		path := pidFile(tt.content)
		pid, err := Daemon(path, "mxgate", "serve")
		want := strings.ReplaceAll(tt.err, "PATH", path)
		if pid != tt.pid || (err == nil) != (want == "") || err != nil && err.Error() != want {
			t.Errorf("pid file %q: %d, %v; want %d, %q", tt.content, pid, err, tt.pid, want)
		}
	}
	missing := filepath.Join(dir, "none.pid")
	if _, err := Daemon(missing, "mxgate", "serve"); err == nil || err.Error() != "no mxgate daemon is running (no "+missing+")" {
		t.Errorf("missing pid file: %v", err)
	}
	if _, err := Daemon(dir, "mxgate", "serve"); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Errorf("a directory as pid file: %v", err)
	}
}

// The real /proc: this test process is not a daemon.
func TestDaemonRealProc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mxgate.pid")
	if err := Write(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Daemon(path, "mxgate", "serve"); err == nil || !strings.Contains(err.Error(), "is not an mxgate daemon") {
		t.Errorf("Daemon of the test process: %v", err)
	}
}
