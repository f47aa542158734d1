package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// Where the package puts what the test looks at.
const (
	pkgUnit     = "/lib/systemd/system/mxgate.service"
	pkgConfig   = "/etc/mxgate/mxgate.toml"
	pkgLogrot   = "/etc/logrotate.d/mxgate"
	pkgBinary   = "/usr/sbin/mxgate"
	pkgSendmail = "/usr/lib/mxgate/sendmail"
	pkgSpool    = "/var/spool/mxgate"
	pkgLogDir   = "/var/log/mxgate"
	pkgUser     = "mxgate"
	// pkgVersion is what the test builds: VERSION for main.version, and
	// the Debian version build-deb.sh derives from it.
	pkgVersion    = "v0.0.0-e2e"
	pkgDebVersion = "0.0.0+e2e"
	// buildDebTimeout bounds scripts/build-deb.sh: a cold build of the
	// static binary on a busy 2-core machine.
	buildDebTimeout = 10 * time.Minute
)

// TestDebianPackage is an admin's first hour with the package: build it
// with scripts/build-deb.sh, install it with dpkg, point the shipped
// config at a free loopback port and an smtp-sink, start the daemon as
// the unit does (systemctl where systemd runs, else the unit's ExecStart
// as root with a notify socket of the test's own), see it run as the
// mxgate user, take a message by SMTP and one from `sendmail -t` run by
// nobody, reload it, survive a forced logrotate, stop, and purge. The
// package is purged whatever happens.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a Debian package needs root")
	}
	for _, prog := range []string{"dpkg", "dpkg-deb", "dpkg-query"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s not found: not a Debian system", prog)
		}
	}
	requirePrograms(t, "smtp-sink", "logrotate", "systemd-analyze")
	// Never replace or purge an admin's own installation.
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "mxgate").Output(); len(out) > 0 && string(out) != "not-installed" {
		t.Fatalf("package mxgate is on this machine (%s): the test installs and purges its own; dpkg --purge mxgate first", out)
	}

	deb := buildDeb(t)
	t.Cleanup(func() { purgePackage(t) })
	mustRun(t, "dpkg", "-i", deb)

	t.Run("layout", checkLayout)
	ds := startSink(t)
	port := peertest.FreePort(t, false)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	editInstalledConfig(t, map[string]string{
		`listen = [":25"]`:              fmt.Sprintf("listen = [%q]", addr),
		`domains = []`:                  `domains = ["example.test"]`,
		`url = "lmtp://127.0.0.1:24"`:   fmt.Sprintf("url = %q", ds.URL()),
		`mode = "mx"`:                   `mode = "none"`,
		`# hostname = "mx.example.com"`: `hostname = "mx.example.test"`,
	})

	d := startUnit(t)
	t.Run("runs as mxgate", func(t *testing.T) { d.checkUser(t) })

	msg, err := os.ReadFile(testdata("message.eml"))
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, "127.0.0.1", addr)
	c.expect(t, "EHLO client.test", 250)
	smtpID := c.send(t, "alice@sender.test", []string{"bob@example.test"}, dataBytes(msg))
	c.expect(t, "QUIT", 221)
	waitDelivered(t, ds, smtpID, "bob@example.test")

	t.Run("sendmail -t as nobody", func(t *testing.T) {
		cred := lookupCred(t, "nobody")
		mail, err := os.Open(testdata("package-sendmail.eml"))
		if err != nil {
			t.Fatal(err)
		}
		defer mail.Close()
		r := runWith(t, func(cmd *exec.Cmd) {
			cmd.Stdin = mail
			cmd.Dir = "/"
			// What a PHP mail() call has: no -config, no MXGATE_CONFIG.
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}, pkgSendmail, "-t")
		if r.code != 0 {
			t.Fatalf("%s -t as nobody: exit status %d, stderr %q", pkgSendmail, r.code, r.stderr)
		}
		waitDelivered(t, ds, "", "carol@example.test")
		if !logMatches(t, filepath.Join(pkgLogDir, "mainlog"), regexp.MustCompile(` <= \S+ U=nobody P=local `)) {
			t.Errorf("mainlog has no <= line with U=nobody")
		}
	})

	t.Run("reload", func(t *testing.T) { d.reload(t) })
	t.Run("logrotate", func(t *testing.T) { checkLogrotate(t, addr, ds) })
	d.stop(t)

	purgePackage(t)
	for _, p := range []string{pkgBinary, pkgConfig, pkgUnit, pkgSpool, pkgLogDir} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after dpkg --purge, %s is still there (%v)", p, err)
		}
	}
}

// buildDeb runs scripts/build-deb.sh into a scratch directory and
// returns the .deb it names on its last line.
func buildDeb(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildDebTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts", "build-deb.sh"), "-o", t.TempDir())
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "VERSION="+pkgVersion)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/build-deb.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	deb := lines[len(lines)-1]
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("scripts/build-deb.sh printed %q last, want the path of a .deb", deb)
	}
	return deb
}

// purgePackage removes the package and its data if it is installed.
func purgePackage(t *testing.T) {
	t.Helper()
	out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "mxgate").Output()
	if len(out) == 0 || string(out) == "not-installed" {
		return
	}
	if out, err := exec.Command("dpkg", "--purge", "mxgate").CombinedOutput(); err != nil {
		t.Errorf("dpkg --purge mxgate: %v\n%s", err, out)
	}
}

// mustRun runs an admin tool that must succeed and returns its output.
func mustRun(t *testing.T, prog string, args ...string) string {
	t.Helper()
	r := runWith(t, nil, prog, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit status %d\n%s%s", prog, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout + r.stderr
}

// checkLayout: what the package installed and what dpkg's own checks,
// systemd's and logrotate's say about it.
func checkLayout(t *testing.T) {
	for _, alias := range []string{"sendmail", "mailq", "runq"} {
		p := filepath.Join("/usr/lib/mxgate", alias)
		if target, err := filepath.EvalSymlinks(p); err != nil || target != pkgBinary {
			t.Errorf("%s -> %q (%v), want a link to %s", p, target, err, pkgBinary)
		}
	}
	if target, err := filepath.EvalSymlinks("/usr/sbin/sendmail"); err == nil && target == pkgBinary {
		t.Errorf("/usr/sbin/sendmail is mxgate: the package must leave it to the MTA that provides it")
	}
	conffiles := mustRun(t, "dpkg-query", "-W", "-f=${Conffiles}", "mxgate")
	for _, f := range []string{pkgConfig, pkgLogrot} {
		if !strings.Contains(conffiles, " "+f+" ") {
			t.Errorf("%s is not a conffile: dpkg-query says %q", f, conffiles)
		}
	}
	for _, f := range []string{"/usr/share/man/man8/mxgate.8.gz", "/usr/share/bash-completion/completions/mxgate"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	checkFile(t, pkgSpool, 0o755, pkgUser, pkgUser)
	checkFile(t, pkgLogDir, 0o750|os.ModeSetgid, pkgUser, "adm")

	if v := mustRun(t, "dpkg-query", "-W", "-f=${Version}", "mxgate"); v != pkgDebVersion {
		t.Errorf("installed version %q, want %q (from VERSION=%s)", v, pkgDebVersion, pkgVersion)
	}
	if r := runWith(t, nil, pkgBinary, "version"); r.code != 0 || firstLine(r.stdout) != "mxgate "+pkgVersion {
		t.Errorf("%s version: exit status %d, first line %q, want %q", pkgBinary, r.code, firstLine(r.stdout), "mxgate "+pkgVersion)
	}

	// The binary built for the package reads the installed config when
	// given none, and the shipped config is valid as it is.
	r := runWith(t, func(cmd *exec.Cmd) { cmd.Env = []string{"PATH=/usr/bin:/bin"} }, pkgBinary, "config", "check")
	if r.code != 0 || !strings.Contains(r.stdout, "(from "+pkgConfig+"): OK") {
		t.Errorf("%s config check: exit status %d, stdout %q, stderr %q; want OK for %s", pkgBinary, r.code, firstLine(r.stdout), r.stderr, pkgConfig)
	}
	// A config of the admin's that leaves data_dir and log.dir out still
	// gets the installed layout, not /etc/mxgate/var.
	bare := filepath.Join(t.TempDir(), "bare.toml")
	if err := os.WriteFile(bare, []byte("relay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:25\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runWith(t, nil, pkgBinary, "-config", bare, "-bP", "data_dir", "log.dir"); r.stdout != "data_dir = /var/spool/mxgate\nlog.dir = /var/log/mxgate\n" {
		t.Errorf("%s -bP data_dir log.dir for a config naming neither: %+v; want the installed layout", pkgBinary, r)
	}
	if out := mustRun(t, "systemd-analyze", "verify", pkgUnit); out != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", pkgUnit, out)
	}
	// -d: a dry run that parses the file and prints what it would do.
	if out := mustRun(t, "logrotate", "-d", "-s", filepath.Join(t.TempDir(), "state"), pkgLogrot); !strings.Contains(out, "rotating pattern: /var/log/mxgate/*log") {
		t.Errorf("logrotate -d %s does not rotate /var/log/mxgate/*log:\n%s", pkgLogrot, out)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// checkFile fails unless path has that mode, owner and group.
func checkFile(t *testing.T, path string, mode os.FileMode, owner, group string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	got := fmt.Sprintf("%v %d:%d", fi.Mode()&(os.ModePerm|os.ModeSetgid), st.Uid, st.Gid)
	if want := fmt.Sprintf("%v %s:%s", mode, u.Uid, g.Gid); got != want {
		t.Errorf("%s: %s, want %s (%s:%s)", path, got, want, owner, group)
	}
}

// editInstalledConfig replaces lines of the installed config, each of
// which must be there exactly once: the shipped file is what is tested.
func editInstalledConfig(t *testing.T, lines map[string]string) {
	t.Helper()
	b, err := os.ReadFile(pkgConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for old, repl := range lines {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(old) + `$`)
		if n := len(re.FindAllStringIndex(cfg, -1)); n != 1 {
			t.Fatalf("%s has %d lines %q, want 1", pkgConfig, n, old)
		}
		cfg = re.ReplaceAllLiteralString(cfg, repl)
	}
	if err := os.WriteFile(pkgConfig, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitDelivered waits until the sink holds a message for rcpt (carrying
// the mxgate ID id, unless id is "").
func waitDelivered(t *testing.T, ds *sink, id, rcpt string) {
	t.Helper()
	waitFor(t, drainTimeout, func() string {
		for _, m := range ds.messages(t) {
			if (id == "" || slices.Contains(m.ids, id)) && slices.Contains(m.rcpts, rcpt) {
				return ""
			}
		}
		return fmt.Sprintf("a message for %s (id %q) in smtp-sink's directory", rcpt, id)
	})
}

// logMatches reports whether a line of the log file matches re.
func logMatches(t *testing.T, path string, re *regexp.Regexp) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// unitDaemon is the daemon the unit started: by systemctl, or by the
// test from the unit's ExecStart.
type unitDaemon struct {
	pid int
	// Without systemd: the process and the notify socket it reports on.
	cmd    *exec.Cmd
	done   chan struct{}
	states chan string
	out    string
}

// systemdRuns reports whether systemd is the init system, as
// sd_booted(3) tells.
func systemdRuns() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// unitLine returns the value of KEY= in the installed unit.
func unitLine(t *testing.T, key string) string {
	t.Helper()
	f, err := os.Open(pkgUnit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s has no %s= line", pkgUnit, key)
	return ""
}

// unitCommand is a command line of the unit as systemd would run it,
// as far as setpriv(1) can say: within the unit's
// CapabilityBoundingSet and with NoNewPrivileges, so that a capability
// the unit lacks (CAP_KILL for the reload's kill of a daemon that is no
// longer root) fails here as it would under systemd.
func unitCommand(t *testing.T, line string) []string {
	t.Helper()
	var caps []string
	for _, c := range strings.Fields(unitLine(t, "CapabilityBoundingSet")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if unitLine(t, "NoNewPrivileges") != "yes" {
		t.Fatalf("%s: NoNewPrivileges is not yes", pkgUnit)
	}
	return append([]string{"setpriv", "--no-new-privs", "--bounding-set", "-all," + strings.Join(caps, ",")}, strings.Fields(line)...)
}

// startUnit starts the daemon and waits until it says it is ready.
func startUnit(t *testing.T) *unitDaemon {
	t.Helper()
	if systemdRuns() {
		mustRun(t, "systemctl", "daemon-reload")
		// restart: postinst may have started it on the shipped config.
		mustRun(t, "systemctl", "restart", "mxgate")
		t.Cleanup(func() { exec.Command("systemctl", "stop", "mxgate").Run() })
		pid, err := strconv.Atoi(strings.TrimSpace(mustRun(t, "systemctl", "show", "-p", "MainPID", "--value", "mxgate")))
		if err != nil || pid == 0 {
			t.Fatalf("systemctl show -p MainPID mxgate: %d, %v", pid, err)
		}
		return &unitDaemon{pid: pid}
	}

	// An abstract socket: the daemon may send to it after it dropped
	// root, and nothing is left on disk.
	notifyName := fmt.Sprintf("@mxgate-e2e-notify-%d", os.Getpid())
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "\x00" + notifyName[1:], Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	d := &unitDaemon{done: make(chan struct{}), states: make(chan string, 16), out: filepath.Join(t.TempDir(), "mxgate.out")}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				close(d.states)
				return
			}
			d.states <- string(buf[:n])
		}
	}()

	argv := unitCommand(t, unitLine(t, "ExecStart"))
	out, err := os.Create(d.out)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Dir = "/"
	d.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + notifyName}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.pid = d.cmd.Process.Pid
	go func() {
		d.cmd.Wait()
		out.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.out)
			t.Logf("mxgate output:\n%s", b)
			if b, err := os.ReadFile(filepath.Join(pkgLogDir, "mainlog")); err == nil {
				t.Logf("mainlog:\n%s", b)
			}
		}
	})
	ready := d.waitState(t, "READY=1")
	if want := fmt.Sprintf("MAINPID=%d", d.pid); !strings.Contains(ready, want) {
		t.Errorf("READY=1 came as %q, want %s in it", ready, want)
	}
	return d
}

// waitState waits for a notification with the line state and returns
// the whole datagram; the ones before it are passed over.
func (d *unitDaemon) waitState(t *testing.T, state string) string {
	t.Helper()
	timeout := time.After(readyTimeout)
	for {
		select {
		case msg, ok := <-d.states:
			if !ok {
				t.Fatalf("notify socket closed before %s", state)
			}
			for _, l := range strings.Split(msg, "\n") {
				if l == state {
					return msg
				}
			}
		case <-d.done:
			t.Fatalf("mxgate exited (%v) before it sent %s", d.cmd.ProcessState, state)
		case <-timeout:
			t.Fatalf("no %s on the notify socket within %v", state, readyTimeout)
		}
	}
}

// checkUser: every uid and gid of the daemon (real, effective, saved,
// file system) is the mxgate user's, and it holds no other group.
func (d *unitDaemon) checkUser(t *testing.T) {
	cred := lookupCred(t, pkgUser)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{"Uid": cred.Uid, "Gid": cred.Gid, "Groups": cred.Gid}
	seen := 0
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		want, ok := ids[k]
		if !ok {
			continue
		}
		seen++
		// Uid and Gid list four ids; Groups the supplementary ones.
		for _, f := range strings.Fields(v) {
			if f != strconv.Itoa(int(want)) {
				t.Errorf("/proc/%d/status %s:%s, want only %d (user %s)", d.pid, k, v, want, pkgUser)
				break
			}
		}
	}
	if seen != len(ids) {
		t.Errorf("/proc/%d/status lacks one of the lines Uid, Gid, Groups:\n%s", d.pid, b)
	}
}

// reload runs the unit's ExecReload. Without systemd the daemon must say
// RELOADING=1 and then READY=1 again; with it, systemctl waits for that.
// Either way the same process serves on.
func (d *unitDaemon) reload(t *testing.T) {
	if d.cmd == nil {
		mustRun(t, "systemctl", "reload", "mxgate")
	} else {
		argv := unitCommand(t, strings.ReplaceAll(unitLine(t, "ExecReload"), "$MAINPID", strconv.Itoa(d.pid)))
		if out := mustRun(t, argv[0], argv[1:]...); out != "configuration reloaded: generation 2\n" {
			t.Errorf("ExecReload printed %q, want the daemon's answer", out)
		}
		d.waitState(t, "RELOADING=1")
		d.waitState(t, "READY=1")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", d.pid)); err != nil {
		t.Fatalf("mxgate (PID %d) gone after the reload: %v", d.pid, err)
	}
}

// stop stops the daemon as systemd does (SIGTERM) and waits for a clean
// exit.
func (d *unitDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cmd == nil {
		mustRun(t, "systemctl", "stop", "mxgate")
		return
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitState(t, "STOPPING=1")
	select {
	case <-d.done:
	case <-time.After(exitTimeout):
		t.Fatalf("mxgate (PID %d) still running %v after SIGTERM", d.pid, exitTimeout)
	}
	if st := d.cmd.ProcessState; st.ExitCode() != 0 {
		t.Errorf("mxgate after SIGTERM: %v, want exit status 0", st)
	}
}

// checkLogrotate forces a rotation with the installed logrotate file (and
// a state file of the test's, so the system's is untouched): the mainlog
// is renamed, the daemon logs the next message into a new one.
func checkLogrotate(t *testing.T, addr string, ds *sink) {
	mainlog := filepath.Join(pkgLogDir, "mainlog")
	mustRun(t, "logrotate", "-f", "-s", filepath.Join(t.TempDir(), "state"), pkgLogrot)
	// delaycompress: the first rotation is not compressed yet.
	if _, err := os.Stat(mainlog + ".1"); err != nil {
		t.Fatalf("after logrotate -f: %v", err)
	}
	checkFile(t, mainlog, 0o640, pkgUser, "adm")

	msg, err := os.ReadFile(testdata("message.eml"))
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, "127.0.0.1", addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"dave@example.test"}, dataBytes(msg))
	c.expect(t, "QUIT", 221)
	waitDelivered(t, ds, id, "dave@example.test")
	waitFor(t, drainTimeout, func() string {
		if !logMatches(t, mainlog, logLine(id, `Completed$`)) {
			return fmt.Sprintf("%s Completed in the new %s", id, mainlog)
		}
		return ""
	})
	if logMatches(t, mainlog+".1", regexp.MustCompile(regexp.QuoteMeta(id))) {
		t.Errorf("%s.1, the rotated log, names %s, which came after the rotation", mainlog, id)
	}
}
