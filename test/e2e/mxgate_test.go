package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"mxgate/internal/peertest"
)

// Bounds of the waits on the mxgate process.
const (
	readyTimeout = 15 * time.Second // until it greets with 220
	exitTimeout  = 20 * time.Second // after SIGTERM (config: shutdown_timeout 10s)
	drainTimeout = 30 * time.Second // until the spool is empty
)

// mxgate is one mxgate process on a generated config. Its data_dir (spool,
// logs) outlives restarts, which is what the crash test needs.
type mxgate struct {
	t       *testing.T
	addr    string // 127.0.0.1:PORT it listens on
	dataDir string
	cfgPath string
	outPath string // its stdout and stderr

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// startMxgate writes a config from testdata/e2e/mxgate.toml.tmpl with
// downstream as [downstream] url, starts `mxgate serve` and waits for its
// 220. The process is killed at the end of the test if still running.
func startMxgate(t *testing.T, downstream string) *mxgate {
	t.Helper()
	return startMxgateConfig(t, testdata("mxgate.toml.tmpl"), downstream)
}

// outboundFor is the [outbound] section of the tests' configs: mail for
// other domains (relayed for 127.0.0.2, bounces to outside senders) goes
// to an SMTP downstream as the smarthost; with any other downstream
// nothing leaves.
func outboundFor(downstream string) string {
	if strings.HasPrefix(downstream, "smtp://") {
		return fmt.Sprintf("mode      = \"smarthost\"\nsmarthost = %q\nstarttls  = \"none\"", downstream)
	}
	return `mode = "none"`
}

// startMxgateConfig is startMxgate with the config template tmplPath,
// which gets .Listen, .DataDir, .Downstream and .Outbound (the
// [outbound] section's keys).
func startMxgateConfig(t *testing.T, tmplPath, downstream string) *mxgate {
	t.Helper()
	return startMxgateOutbound(t, tmplPath, downstream, outboundFor(downstream))
}

// startMxgateOutbound is startMxgateConfig with outbound as the
// [outbound] section's keys.
func startMxgateOutbound(t *testing.T, tmplPath, downstream, outbound string) *mxgate {
	t.Helper()
	dir := t.TempDir()
	g := &mxgate{
		t:       t,
		addr:    fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false)),
		dataDir: filepath.Join(dir, "data"),
		cfgPath: filepath.Join(dir, "mxgate.toml"),
		outPath: filepath.Join(dir, "mxgate.out"),
	}
	tmpl, err := template.ParseFiles(tmplPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg bytes.Buffer
	// serve refuses to run as root unless told to, and the tests run as
	// root in CI.
	if os.Geteuid() == 0 {
		cfg.WriteString("run_as_root = true\n")
	}
	err = tmpl.Execute(&cfg, map[string]string{
		"Listen":     g.addr,
		"DataDir":    g.dataDir,
		"Downstream": downstream,
		"Outbound":   outbound,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.cfgPath, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.cleanup)
	g.start()
	return g
}

// in returns g reporting to t: a subtest uses it, because a subtest must
// never fail its parent with FailNow.
func (g *mxgate) in(t *testing.T) *mxgate {
	c := *g
	c.t = t
	return &c
}

// start runs `mxgate serve` on the existing config and data_dir.
func (g *mxgate) start() {
	g.t.Helper()
	out, err := os.OpenFile(g.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "-config", g.cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		g.t.Fatalf("starting %s: %v", binary, err)
	}
	g.cmd, g.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		out.Close()
		close(done)
	}(g.done)
	g.waitReady()
}

// waitReady waits until mxgate greets with 220 on its address.
func (g *mxgate) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-g.done:
			g.t.Fatalf("mxgate exited during start-up (%v); output:\n%s", g.cmd.ProcessState, g.output())
		default:
		}
		c, greeting, err := dial("127.0.0.1", g.addr)
		if err == nil {
			c.cmd("QUIT")
			c.Close()
			if greeting.Code != 220 {
				g.t.Fatalf("mxgate greeting on %s: %v, want 220", g.addr, greeting)
			}
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("mxgate did not greet on %s within %v: %v; output:\n%s", g.addr, readyTimeout, err, g.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running reports whether the current process has not exited yet.
func (g *mxgate) running() bool {
	if g.cmd == nil {
		return false
	}
	select {
	case <-g.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the running process.
func (g *mxgate) signal(sig syscall.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("sending %v to mxgate (PID %d): %v", sig, g.cmd.Process.Pid, err)
	}
}

// waitExit waits for the process to exit and fails the test unless it
// exited on its own with status 0.
func (g *mxgate) waitExit() {
	g.t.Helper()
	select {
	case <-g.done:
	case <-time.After(exitTimeout):
		g.cmd.Process.Kill()
		<-g.done
		g.t.Fatalf("mxgate (PID %d) still running %v after SIGTERM; killed; output:\n%s", g.cmd.Process.Pid, exitTimeout, g.output())
	}
	if st := g.cmd.ProcessState; !st.Exited() || st.ExitCode() != 0 {
		g.t.Fatalf("mxgate after SIGTERM: %v, want exit status 0; output:\n%s", st, g.output())
	}
}

// stop is SIGTERM plus waitExit.
func (g *mxgate) stop() {
	g.t.Helper()
	g.signal(syscall.SIGTERM)
	g.waitExit()
}

// kill is a crash: SIGKILL, then reap.
func (g *mxgate) kill() {
	g.t.Helper()
	g.signal(syscall.SIGKILL)
	select {
	case <-g.done:
	case <-time.After(exitTimeout):
		g.t.Fatalf("mxgate (PID %d) survived SIGKILL for %v", g.cmd.Process.Pid, exitTimeout)
	}
}

// cleanup kills a process a failed test left running.
func (g *mxgate) cleanup() {
	if g.running() {
		g.cmd.Process.Kill()
		<-g.done
	}
	if g.t.Failed() {
		g.t.Logf("mxgate output (%s):\n%s", g.outPath, g.output())
		g.t.Logf("mainlog:\n%s", strings.Join(g.mainlog(), "\n"))
	}
}

func (g *mxgate) output() string {
	b, err := os.ReadFile(g.outPath)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// mainlog returns the lines of DATA_DIR/log/mainlog; none before it exists.
func (g *mxgate) mainlog() []string {
	b, err := os.ReadFile(filepath.Join(g.dataDir, "log", "mainlog"))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			g.t.Errorf("reading mainlog: %v", err)
		}
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// logLine matches one mainlog line of message id: "DATE TIME ID rest",
// rest matching the regular expression pattern.
func logLine(id, pattern string) *regexp.Regexp {
	return regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ` + regexp.QuoteMeta(id) + ` ` + pattern)
}

// logHas reports whether some mainlog line matches re.
func (g *mxgate) logHas(re *regexp.Regexp) bool {
	for _, l := range g.mainlog() {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// requireLog fails the test unless some mainlog line matches each pattern.
func (g *mxgate) requireLog(id string, patterns ...string) {
	g.t.Helper()
	for _, p := range patterns {
		if re := logLine(id, p); !g.logHas(re) {
			g.t.Errorf("mainlog has no line matching %q", re)
		}
	}
}

// spooled returns the IDs that have a -H file in the spool.
func (g *mxgate) spooled() []string {
	g.t.Helper()
	files, err := filepath.Glob(filepath.Join(g.dataDir, "spool", "input", "*", "*-H"))
	if err != nil {
		g.t.Fatal(err)
	}
	ids := make([]string, len(files))
	for i, f := range files {
		ids[i] = strings.TrimSuffix(filepath.Base(f), "-H")
	}
	return ids
}

// waitCompleted waits until every id has its "Completed" line.
func (g *mxgate) waitCompleted(ids ...string) {
	g.t.Helper()
	waitFor(g.t, drainTimeout, func() string {
		for _, id := range ids {
			if !g.logHas(logLine(id, `Completed$`)) {
				return "mainlog line " + strconv.Quote(id+" Completed")
			}
		}
		return ""
	})
}

// waitSpoolEmpty waits until no message is left in the spool.
func (g *mxgate) waitSpoolEmpty() {
	g.t.Helper()
	waitFor(g.t, drainTimeout, func() string {
		if ids := g.spooled(); len(ids) > 0 {
			return fmt.Sprintf("an empty spool (%d left: %v)", len(ids), ids[:min(len(ids), 5)])
		}
		return ""
	})
}

// waitFor polls cond until it returns "" or timeout passes; cond returns
// what it still waits for, which the failure names.
func waitFor(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := cond()
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
