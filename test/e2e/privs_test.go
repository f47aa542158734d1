package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// TestSecondDaemon: a second serve on the data_dir of a running one exits
// 1 naming the first one's PID, and touches nothing: the first keeps
// serving, with its pid file.
func TestSecondDaemon(t *testing.T) {
	t.Parallel()
	g := startMxgate(t, "smtp://127.0.0.1:9")
	pidFile := filepath.Join(g.dataDir, "mxgate.pid")
	before := snapshot(t, g.dataDir)

	r := runBinary(t, "serve", "-config", g.cfgPath)
	want := fmt.Sprintf("mxgate: another mxgate daemon (pid %d) is using data_dir %s\n", g.cmd.Process.Pid, g.dataDir)
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("second serve: exit %d, stdout %q, stderr %q; want exit 1 and %q", r.code, r.stdout, r.stderr, want)
	}
	if after := snapshot(t, g.dataDir); after != before {
		t.Errorf("the second serve changed data_dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The logs change with the first daemon's queue runs: the second
	// wrote none of their lines.
	for _, l := range g.mainlog() {
		if m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(l); m != nil && m[1] != strconv.Itoa(g.cmd.Process.Pid) {
			t.Errorf("mainlog line of another process: %s", l)
		}
	}
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != fmt.Sprintf("%d\n", g.cmd.Process.Pid) {
		t.Errorf("pid file after the second serve: %q, %v; want the first one's PID", b, err)
	}
	if !g.running() {
		t.Fatal("the first daemon is gone")
	}
	g.waitReady()
	g.stop()
}

// snapshot lists what is under dir but its log directory, which a
// running daemon writes by itself: path, mode, size and modification
// time of each entry.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == filepath.Join(dir, "log") {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %s\n", path, fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// daemonUser is the system user TestUnprivilegedDaemon's daemon runs as,
// created when missing.
const daemonUser = "mxgate-test"

// keysUser is TestReloadAsUser's daemon's user, a member of keysGroup,
// the group its TLS key is given to (Debian's ssl-cert).
const (
	keysUser  = "mxgate-test-tls"
	keysGroup = "mxgate-test-cert"
)

// TestUnprivilegedDaemon: started as root with user set, the daemon runs
// as that user (so /proc says), everything under its data_dir is that
// user's, and a local user who may not touch the spool submits with
// `sendmail -t` through the daemon's socket: the message is delivered,
// logged with U= that user. That user's -bp is refused with a clear
// message; root's admin commands run as the daemon's user, so no file of
// root's appears in the spool. The config's data_dir is relative: to
// the config file's directory, not to the working directory (test/e2e).
func TestUnprivilegedDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starting a daemon that drops its privileges needs root")
	}
	t.Parallel()
	du := ensureUser(t, daemonUser)
	nobody := lookupCred(t, "nobody")

	// The daemon's user and nobody must be able to enter it.
	base := enterableTempDir(t, "privs")
	maildir := filepath.Join(base, "maildir")
	if err := os.Mkdir(maildir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(maildir, int(du.Uid), int(du.Gid)); err != nil {
		t.Fatal(err)
	}
	// The binary's own directory is private to root: nobody runs a copy,
	// by way of a link named sendmail.
	bin := filepath.Join(base, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	mx := copyBinary(t, bin)
	sendmail := filepath.Join(bin, "sendmail")
	if err := os.Symlink("mxgate", sendmail); err != nil {
		t.Fatal(err)
	}

	g := mxgateIn(t, base)
	cfg := fmt.Sprintf(`hostname = "mx.example.test"
listen   = [%q]
data_dir = "data"
user     = %q

[relay]
domains = ["example.test"]

[outbound]
mode = "none"

[downstream]
url = "maildir://%s"

[queue]
retry        = "F,10m,1s"
run_interval = "1s"
`, g.addr, daemonUser, maildir)
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.cleanup)
	g.start()

	// /proc: every ID of the daemon is its user's, and no group of root's.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", du.Uid, du.Uid, du.Uid, du.Uid),
		fmt.Sprintf("Gid:\t%d\t%d\t%d\t%d", du.Gid, du.Gid, du.Gid, du.Gid),
		fmt.Sprintf("Groups:\t%d", du.Gid),
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `\s*$`).Match(status) {
			t.Errorf("/proc/%d/status lacks %q:\n%s", g.cmd.Process.Pid, want, status)
		}
	}
	ownedBy(t, g.dataDir, du.Uid)
	sock := filepath.Join(g.dataDir, "submit.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("submission socket %s: %v, %v; want a socket with mode 0666", sock, fi, err)
	}

	// nobody submits; the daemon delivers.
	msg := "To: Joe <joe@example.test>\nSubject: from a web application\n\nhello\n"
	r := runWith(t, func(cmd *exec.Cmd) {
		cmd.Stdin = strings.NewReader(msg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	}, sendmail, "-config", g.cfgPath, "-t")
	if r.code != 0 || r.stderr != "" || r.stdout != "" {
		t.Fatalf("nobody's sendmail -t: exit %d, stdout %q, stderr %q; want exit 0 and nothing printed", r.code, r.stdout, r.stderr)
	}
	var id string
	waitFor(t, drainTimeout, func() string {
		for _, l := range g.mainlog() {
			if m := regexp.MustCompile(`^\S+ \S+ (\S+) <= nobody@mx\.example\.test U=nobody P=local S=\d+`).FindStringSubmatch(l); m != nil {
				id = m[1]
				return ""
			}
		}
		return "mainlog line <= nobody@mx.example.test U=nobody P=local"
	})
	g.waitCompleted(id)
	g.requireLog(id, `=> joe@example\.test R=downstream T=maildir`)
	files := maildirNew(t, filepath.Join(maildir, "example.test", "joe"))
	if len(files) != 1 {
		t.Fatalf("joe's Maildir holds %d messages, want 1", len(files))
	}
	if got, _ := os.ReadFile(files[0]); !strings.HasSuffix(string(got), "\n\nhello\n") || !strings.Contains(string(got), "From: nobody@mx.example.test") {
		t.Errorf("delivered message:\n%s", got)
	}

	// nobody may not list the queue.
	r = runWith(t, func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	}, mx, "-config", g.cfgPath, "-bp")
	want := fmt.Sprintf("mxgate: user nobody may not read the spool at %s (owned by %s): run it as root or %s\n",
		filepath.Join(g.dataDir, "spool"), daemonUser, daemonUser)
	if r.code != 1 || r.stderr != want {
		t.Errorf("nobody's -bp: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}

	// Root: sendmail goes through the daemon too, and the admin commands
	// run as the daemon's user; nothing of root's appears.
	r = runWith(t, func(cmd *exec.Cmd) { cmd.Stdin = strings.NewReader("Subject: root\n\nhi\n") }, sendmail, "-config", g.cfgPath, "-odq", "ann@example.test")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("root's sendmail -odq: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := g.mustCLI("-bpc"); out != "1\n" && out != "0\n" {
		t.Errorf("root's -bpc: %q", out)
	}
	g.mustCLI("-qf")
	g.waitSpoolEmpty()
	if !g.logHas(regexp.MustCompile(` <= root@mx\.example\.test U=root P=local `)) {
		t.Errorf("mainlog has no arrival from root (U=root)")
	}
	ownedBy(t, g.dataDir, du.Uid)

	g.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("submission socket left behind after the daemon stopped: %v", err)
	}

	// With no daemon, nobody cannot submit, and is told why.
	nobodyWithoutDaemon(t, g, sendmail, mx, msg, daemonUser)
}

// nobodyWithoutDaemon: with g's daemon stopped, nobody's sendmail -t
// (fed msg) and -bpc exit 1, told that no daemon answers and that the
// spool is owner's, never which key nobody may not read.
func nobodyWithoutDaemon(t *testing.T, g *mxgate, sendmail, mx, msg, owner string) {
	t.Helper()
	nobody := lookupCred(t, "nobody")
	spool := filepath.Join(g.dataDir, "spool")
	r := runWith(t, func(cmd *exec.Cmd) {
		cmd.Stdin = strings.NewReader(msg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	}, sendmail, "-config", g.cfgPath, "-t")
	want := fmt.Sprintf("mxgate: no mxgate daemon answers on %s, and user nobody may not read the spool at %s (owned by %s): run it as root or %s\n",
		filepath.Join(g.dataDir, "submit.sock"), spool, owner, owner)
	if r.code != 1 || r.stderr != want {
		t.Errorf("nobody's sendmail without a daemon: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}
	// Listing the queue reads no key either: nobody hears about the spool.
	r = runWith(t, func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	}, mx, "-config", g.cfgPath, "-bpc")
	want = fmt.Sprintf("mxgate: user nobody may not read the spool at %s (owned by %s): run it as root or %s\n",
		spool, owner, owner)
	if r.code != 1 || r.stderr != want {
		t.Errorf("nobody's -bpc: exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, want)
	}
}

// copyBinary copies the mxgate under test into dir, for users who may
// not enter the directory it was built in, and returns the copy's path.
func copyBinary(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	mx := filepath.Join(dir, "mxgate")
	if err := os.WriteFile(mx, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return mx
}

// mxgateIn is a daemon not started yet whose files are in base: data/,
// mxgate.toml (the caller writes it) and mxgate.out.
func mxgateIn(t *testing.T, base string) *mxgate {
	return &mxgate{
		t:       t,
		addr:    fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false)),
		dataDir: filepath.Join(base, "data"),
		cfgPath: filepath.Join(base, "mxgate.toml"),
		outPath: filepath.Join(base, "mxgate.out"),
	}
}

// ensureUser looks up name, creating it as a system user when missing
// (a member of the supplementary groups, created too), and returns its
// IDs.
func ensureUser(t *testing.T, name string, groups ...string) *syscall.Credential {
	t.Helper()
	for _, g := range groups {
		if _, err := user.LookupGroup(g); err != nil {
			out, err := exec.Command("groupadd", "--system", g).CombinedOutput()
			if _, lerr := user.LookupGroup(g); err != nil && lerr != nil {
				t.Fatalf("groupadd %s: %v\n%s", g, err, out)
			}
		}
	}
	if _, err := user.Lookup(name); err != nil {
		args := []string{"--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"}
		if len(groups) > 0 {
			args = append(args, "--groups", strings.Join(groups, ","))
		}
		out, err := exec.Command("useradd", append(args, name)...).CombinedOutput()
		// Another test may have created it meanwhile.
		if _, lerr := user.Lookup(name); err != nil && lerr != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
	}
	return lookupCred(t, name)
}

// lookupCred is name's uid and primary gid.
func lookupCred(t *testing.T, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// ownedBy fails the test for each entry under dir that uid does not own.
func ownedBy(t *testing.T, dir string, uid uint32) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
			t.Errorf("%s is owned by uid %d, want %d (%s)", path, st.Uid, uid, daemonUser)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReloadAsUser: a reload reads the config and the TLS files as the
// user the daemon runs as, so a key only root may read, loaded at start,
// would make every reload fail. The daemon says so at start (stderr and
// paniclog), the SIGHUP is refused with the old config serving, and once
// the files are the daemon group's the reload goes through. A local user
// who may read neither file submits with sendmail all the same.
func TestReloadAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starting a daemon that drops its privileges needs root")
	}
	t.Parallel()
	// The Debian way for keys: root:ssl-cert 0640, the daemon's user a
	// member of ssl-cert, which the daemon keeps as a supplementary group.
	ensureUser(t, keysUser, keysGroup)
	kg, err := user.LookupGroup(keysGroup)
	if err != nil {
		t.Fatal(err)
	}
	keysGID, _ := strconv.Atoi(kg.Gid)
	// The daemon's user must be able to enter it.
	base := enterableTempDir(t, "reload-user")
	cert, key := filepath.Join(base, "cert.pem"), filepath.Join(base, "key.pem")
	tlstest.WriteFiles(t, cert, key, "mx.example.test") // root's, mode 0600

	g := mxgateIn(t, base)
	cfg := fmt.Sprintf(`hostname = "mx.example.test"
listen   = [%q]
data_dir = "data"
user     = %q

[tls]
cert = "cert.pem"
key  = "key.pem"

[relay]
domains = ["example.test"]

[outbound]
mode = "none"

[downstream]
url = "smtp://127.0.0.1:1"
`, g.addr, keysUser)
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.cleanup)
	g.start()

	warning := fmt.Sprintf("warning: a reload will be refused: as user %s, %s:7: key \"tls.cert\": open %s: permission denied (files the config names must be readable by that user)",
		keysUser, g.cfgPath, cert)
	waitFor(t, readyTimeout, func() string {
		if !strings.Contains(g.output(), "mxgate: "+warning+"\n") {
			return fmt.Sprintf("serve's stderr saying %q", warning)
		}
		return ""
	})
	if countLines(g.paniclog(), daemonLine(regexp.QuoteMeta(warning)+"$")) != 1 {
		t.Errorf("paniclog lacks %q:\n%s", warning, strings.Join(g.paniclog(), "\n"))
	}

	g.signal(syscall.SIGHUP)
	g.waitLog(daemonLine(regexp.QuoteMeta("configuration reload from "+g.cfgPath+" refused, generation 1 still serving: ") + ".*permission denied$"))

	for _, f := range []string{cert, key} {
		if err := os.Chown(f, 0, keysGID); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	g.signal(syscall.SIGHUP)
	g.waitLog(daemonLine("configuration reloaded: generation 2$"))

	// The binary's own directory is private to root: nobody runs a copy.
	mx := copyBinary(t, base)
	r := runWith(t, func(cmd *exec.Cmd) {
		cmd.Stdin = strings.NewReader("To: joe@example.test\nSubject: from a web application\n\nhello\n")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: lookupCred(t, "nobody")}
	}, mx, "-config", g.cfgPath, "-t")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("nobody's sendmail -t: exit %d, stderr %q; want exit 0, nothing on stderr", r.code, r.stderr)
	}
	g.waitLog(regexp.MustCompile(` <= nobody@mx\.example\.test U=nobody P=local `))
	g.stop()

	// Without the daemon nobody is told that, not which key it may not read.
	nobodyWithoutDaemon(t, g, mx, mx, "To: joe@example.test\n\nhello\n", keysUser)
}
