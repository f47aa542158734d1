package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogReopen is logrotate's cycle: the mainlog is renamed while the
// daemon runs, `mxgate log reopen` makes it open a new one, and each file
// ends up with the lines of its own messages only. It reopens the logs
// and nothing else (SIGUSR1): a config changed meanwhile is not read.
func TestLogReopen(t *testing.T) {
	requireCommand(t, "log reopen")
	ds := startScripted(t)
	g := startMxgate(t, ds.URL())
	msg, err := os.ReadFile(testdata("message.eml"))
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	before := c.send(t, "alice@example.test", []string{"bob@example.test"}, dataBytes(msg))
	g.waitCompleted(before)

	logDir := filepath.Join(g.dataDir, "log")
	mainlog, rotated := filepath.Join(logDir, "mainlog"), filepath.Join(logDir, "mainlog.1")
	if err := os.Rename(mainlog, rotated); err != nil {
		t.Fatal(err)
	}
	g.editConfig(domainsLine, moreDomains)
	if out := g.mustCLI("log", "reopen"); out != "" {
		t.Errorf("mxgate log reopen printed %q, want nothing", out)
	}
	waitFor(t, drainTimeout, func() string {
		if _, err := os.Stat(mainlog); err != nil {
			return "the daemon to create a new mainlog"
		}
		return ""
	})
	after := c.send(t, "alice@example.test", []string{"carol@example.test"}, dataBytes(msg))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(after)
	if code := rcptCode(t, "127.0.0.1", g.addr, "dave@new.test"); code != 550 {
		t.Errorf("RCPT to new.test after log reopen: %d, want 550 (the changed config is not read)", code)
	}
	if n := countLines(g.mainlog(), daemonLine("reloading configuration")); n != 0 {
		t.Errorf("log reopen reloaded the configuration (%d reload lines)", n)
	}

	for _, f := range []struct {
		path       string
		has, lacks string
	}{
		{rotated, before, after},
		{mainlog, after, before},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		for _, flag := range []string{"<=", "=>", "Completed"} {
			if !strings.Contains(log, " "+f.has+" "+flag) {
				t.Errorf("%s has no %q line of %s:\n%s", filepath.Base(f.path), flag, f.has, log)
			}
		}
		if strings.Contains(log, f.lacks) {
			t.Errorf("%s names %s, which was logged into the other file:\n%s", filepath.Base(f.path), f.lacks, log)
		}
	}
}

// TestLogReopenRefuses: without a daemon to signal, `mxgate log reopen`
// says why and exits 1, and never signals a process that merely reuses the
// PID of a stale pid file.
func TestLogReopenRefuses(t *testing.T) {
	requireCommand(t, "log reopen")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mxgate.toml")
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "data_dir = %q\n[relay]\ndomains = [\"example.test\"]\n[downstream]\nurl = \"smtp://127.0.0.1:1\"\n", dataDir), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dataDir, "mxgate.pid")
	for _, tc := range []struct {
		name    string
		pidFile string // contents; "" for none
		stderr  string
	}{
		{"no pid file", "",
			"mxgate: no mxgate daemon is running (no " + pidFile + ")\n"},
		{"garbage", "12ab\n",
			"mxgate: " + pidFile + ` holds "12ab", not a process ID` + "\n"},
		{"exited process", "999999999\n",
			"mxgate: no mxgate daemon is running: process 999999999 from " + pidFile + " has exited (stale pid file)\n"},
		// The test binary itself is alive and is not `mxgate serve`.
		{"another program", fmt.Sprintf("%d\n", os.Getpid()),
			fmt.Sprintf("mxgate: process %d from %s is not an mxgate daemon (stale pid file; %q runs there): not signalled\n",
				os.Getpid(), pidFile, strings.Join(os.Args, " "))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(pidFile)
			if tc.pidFile != "" {
				if err := os.WriteFile(pidFile, []byte(tc.pidFile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := runBinary(t, "-config", cfg, "log", "reopen")
			if r.code != 1 || r.stdout != "" || r.stderr != tc.stderr {
				t.Errorf("mxgate log reopen: status %d, stdout %q, stderr %q; want status 1, no stdout, stderr %q",
					r.code, r.stdout, r.stderr, tc.stderr)
			}
		})
	}
}
