package deliver

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDovecotLMTP delivers to the real Dovecot LMTP server, started from a
// scratch config and stopped again by the test.
func TestDovecotLMTP(t *testing.T) {
	if _, err := exec.LookPath("dovecot"); err != nil {
		t.Skip("dovecot is not installed (the e2e suite covers it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the scratch config delivers as user nobody, which needs root")
	}
	// Not t.TempDir: its parent is 0700, and Dovecot writes the mail as
	// nobody.
	dir, err := os.MkdirTemp("", "deliver-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	tmpl, err := os.ReadFile("testdata/dovecot.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "dovecot.conf")
	text := strings.NewReplacer("DIR", dir, "PORT", port).Replace(string(tmpl))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Output goes to a file, not a pipe: the daemon keeps its inherited
	// descriptors, and a pipe would never reach EOF.
	outPath := filepath.Join(dir, "dovecot.out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dovecot", "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.Close()
	if err != nil {
		text, _ := os.ReadFile(outPath)
		t.Fatalf("dovecot -c %s: %v\n%s", conf, err, text)
	}
	t.Cleanup(func() { stopDovecot(t, dir, conf) })

	addr := net.JoinHostPort("127.0.0.1", port)
	waitListening(t, addr, filepath.Join(dir, "dovecot.log"))

	const body = "From: s@example.test\nSubject: dovecot test\n\n.leading dot\nbody\n"
	tr := newTransport(t, "lmtp://"+addr, testOptions())
	got := tr.Deliver(context.Background(), msg("s@example.test", body, "user@example.test", "other@example.test"))
	for i, rcpt := range []string{"user@example.test", "other@example.test"} {
		r := got[i]
		if r.Rcpt != rcpt || r.Status != Delivered || r.Host != host || r.Err != "" ||
			!strings.HasPrefix(r.Reply, "250 2.0.0 <"+rcpt+"> ") || !strings.HasSuffix(r.Reply, " Saved") {
			t.Errorf("result %d: %+v, want Delivered with 250 2.0.0 <%s> ... Saved", i, r, rcpt)
		}
		local := strings.Split(rcpt, "@")[0]
		newDir := filepath.Join(dir, "example.test", local, "Maildir", "new")
		names := files(t, newDir)
		if len(names) != 1 {
			t.Fatalf("%s holds %v, want one message", newDir, names)
		}
		data, err := os.ReadFile(filepath.Join(newDir, names[0]))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "Subject: dovecot test\n") || !strings.HasSuffix(string(data), "\n\n.leading dot\nbody\n") {
			t.Errorf("%s:\n%s", names[0], data)
		}
	}
}

// waitListening waits for Dovecot's listener (it daemonizes before it is
// ready), within a bound.
func waitListening(t *testing.T, addr, logPath string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("dovecot not listening on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopDovecot stops the master with doveadm and waits, within a bound, for
// it to be gone, so the scratch directory can be removed. The master is not
// our child: it may linger as a zombie, which counts as gone.
func stopDovecot(t *testing.T, dir, conf string) {
	pidText, _ := os.ReadFile(filepath.Join(dir, "run", "master.pid"))
	cmd := exec.Command("doveadm", "-c", conf, "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("doveadm -c %s stop: %v\n%s", conf, err, out)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("dovecot master %d still running after doveadm stop", pid)
}
