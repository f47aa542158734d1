package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/event"
	"mxgate/gateway"
	"mxgate/mainlog"
	"mxgate/miltersrv"
	"mxgate/pidfile"
	"mxgate/queue"
	"mxgate/route"
	"mxgate/state"
)

func init() {
	register("reload", "[--wait DURATION]\tcheck the config, then make the running daemon reload it (config, TLS certificates, logs) and print the outcome", reloadCmd,
		withFlag("--wait", "DURATION", "how long to wait for the daemon's answer (default 10s; \"30s\", \"1m\")"))
}

// reloadWait is how long `mxgate reload` waits for the daemon's answer
// unless --wait says otherwise: a reload builds the checks (opening
// caches, reading keys) and nothing more, so a daemon that says nothing
// in this time is stuck.
const reloadWait = 10 * time.Second

// generation is one loaded config with what serve built from it. The
// gateway's sessions accepted under it and the queue's attempts begun
// under it use its router, so it is closed when both have let go.
type generation struct {
	n      int
	cfg    *config.Config
	router *route.Router
	checks *checks.Pipeline // nil until built
	users  atomic.Int32     // the gateway and the queue, until each retires it
	// checkUsers are the servers asking checks (the gateway, the milter
	// server), until each retires them (dropChecks).
	checkUsers atomic.Int32
}

// release ends one user's hold; the last one closes the router's
// transports.
func (g *generation) release() {
	if g.users.Add(-1) == 0 {
		closeRouter(g.router, g.cfg)
	}
}

// close closes what g holds once nothing uses it any more (at the end of
// serve, after the drain and the runner's stop).
func (g *generation) close(log *mainlog.Logger) {
	if g.checks != nil {
		if err := g.checks.Close(); err != nil {
			log.Panic(fmt.Sprintf("closing the checks: %v", err))
		}
	}
	closeRouter(g.router, g.cfg)
}

// daemon is serve's state that a reload replaces.
type daemon struct {
	configPath string // "" for the embedded default
	log        *mainlog.Logger
	bus        *event.Bus // made once: its sinks are the process's
	gw         *gateway.Server
	milter     *miltersrv.Server // nil without [milter_server] listen
	runner     *queue.Runner
	store      state.Store                // [state], opened at start, kept by every reload
	cur        *generation                // only the signal loop reads or replaces it
	now        atomic.Pointer[generation] // cur, for the submission socket's goroutines
	attempts   int                        // reloads asked for, for the status file
}

// reload is SIGHUP: it reopens the logs, re-reads the config file and the
// TLS certificates and, if all of it loads, makes it the config of new
// SMTP sessions and new delivery attempts. A config that does not load
// is refused with a paniclog line and the daemon serves on unchanged.
func (d *daemon) reload() {
	d.attempts++
	if err := d.log.Reopen(); err != nil {
		// The old files stay in use; the reload itself goes on.
		d.log.Panic(fmt.Sprintf("reopening the logs: %v", err))
	}
	src := configName(d.configPath)
	d.log.Main("", "reloading configuration from "+src)
	g, err := d.load()
	if err != nil {
		msg := fmt.Sprintf("configuration reload from %s refused, generation %d still serving: %s", src, d.cur.n, oneLine(err))
		d.log.Panic(msg)
		d.status(false, msg)
		return
	}
	d.cur = g
	d.now.Store(g)
	msg := fmt.Sprintf("configuration reloaded: generation %d", g.n)
	d.log.Main("", msg)
	d.status(true, msg)
}

// serving is the config and router of the generation serving now.
func (d *daemon) serving() (*config.Config, *route.Router) {
	g := d.now.Load()
	return g.cfg, g.router
}

// newGeneration builds the router and the checks of cfg, what one
// generation serves with; its caller numbers it and counts its users.
func newGeneration(cfg *config.Config, log *mainlog.Logger, bus *event.Bus, store state.Store) (*generation, error) {
	router, err := newRouter(cfg, log, bus)
	if err != nil {
		return nil, err
	}
	g := &generation{cfg: cfg, router: router}
	if g.checks, err = checks.BuildShared(cfg, log, router, store, bus); err != nil {
		closeRouter(router, cfg)
		return nil, err
	}
	return g, nil
}

// load builds the next generation from the config file and swaps it in,
// or returns why not, having closed what it built.
func (d *daemon) load() (*generation, error) {
	old := d.cur
	cfg, err := loadConfig(d.configPath)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		d.log.Main("", w.String())
	}
	for _, name := range keepFixed(old.cfg, cfg) {
		d.log.Main("", name+" changed: restart needed (the old value stays in force)")
	}
	g, err := newGeneration(cfg, d.log, d.bus, d.store)
	if err != nil {
		return nil, err
	}
	g.n = old.n + 1
	g.users.Store(2)
	g.checkUsers.Store(1)
	if d.milter != nil {
		g.checkUsers.Store(2)
	}
	if err := d.gw.Reload(cfg, g.checks.Pipeline, func() { g.dropChecks(d.log) }); err != nil {
		g.close(d.log)
		return nil, err
	}
	if d.milter != nil {
		d.milter.Reload(cfg, g.checks.Pipeline, func() { g.dropChecks(d.log) })
	}
	// From here on the new generation serves; the old one closes as its
	// last session and its last delivery end. Its breakers report no
	// more: the new generation's, closed, stand for the checks now.
	old.checks.Retire()
	d.runner.Swap(g.router, cfg.Queue.Schedule, old.release)
	return g, nil
}

// retireChecks is the gateway's end of g: no session uses its checks any
// more.
func (g *generation) retireChecks(log *mainlog.Logger) {
	if err := g.checks.Close(); err != nil {
		log.Panic(fmt.Sprintf("closing the checks of generation %d: %v", g.n, err))
	}
	g.release()
}

// oneLine joins the lines of an error (config.Load names each problem on
// its own) for one log line.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

// fixedSetting is a setting a running daemon cannot change: what it
// holds (sockets, open files, go-smtp's server, the queue's workers) was
// made from it at start.
type fixedSetting struct {
	name string
	same func(old, new *config.Config) bool
	keep func(old, new *config.Config)
}

// fixed is the fixedSetting of the field f points to.
func fixed[T any](name string, f func(*config.Config) *T) fixedSetting {
	return fixedSetting{
		name: name,
		same: func(old, new *config.Config) bool { return reflect.DeepEqual(*f(old), *f(new)) },
		keep: func(old, new *config.Config) { *f(new) = *f(old) },
	}
}

// restartOnly are the settings a reload leaves as they were: the
// listeners, the files and directories opened at start, what go-smtp's
// server holds (hostname, smtp limits it enforces, whether STARTTLS is
// offered at all; the certificates themselves do reload), the queue's
// workers and ready queue, the size of the verification caches,
// which the old and the new checks share, the state store, which
// both generations use and which holds the counters, and the admin
// listener (bound at start, its certificate loaded then) and the console
// on it (built at start with its users file and session timeout).
var restartOnly = []fixedSetting{
	fixed("listen", func(c *config.Config) *[]string { return &c.Listen }),
	fixed("listen_tls", func(c *config.Config) *[]string { return &c.ListenTLS }),
	fixed("listen_submission", func(c *config.Config) *[]string { return &c.ListenSubmission }),
	fixed("auth.backend", func(c *config.Config) *string { return &c.Auth.Backend }),
	fixed("auth.max_failures", func(c *config.Config) *int { return &c.Auth.MaxFailures }),
	fixed("auth.failure_window", func(c *config.Config) *config.Duration { return &c.Auth.FailureWindow }),
	fixed("auth.block_time", func(c *config.Config) *config.Duration { return &c.Auth.BlockTime }),
	fixed("data_dir", func(c *config.Config) *string { return &c.DataDir }),
	fixed("log.dir", func(c *config.Config) *string { return &c.Log.Dir }),
	fixed("log.format", func(c *config.Config) *string { return &c.Log.Format }),
	fixed("spool.sync", func(c *config.Config) *string { return &c.Spool.Sync }),
	fixed("user", func(c *config.Config) *string { return &c.User }),
	fixed("group", func(c *config.Config) *string { return &c.Group }),
	fixed("run_as_root", func(c *config.Config) *bool { return &c.RunAsRoot }),
	fixed("spool.min_free_space", func(c *config.Config) *config.Size { return &c.Spool.MinFreeSpace }),
	fixed("spool.min_free_inodes", func(c *config.Config) *int { return &c.Spool.MinFreeInodes }),
	fixed("host_lookup", func(c *config.Config) *config.HostLookup { return &c.HostLookup }),
	fixed("hostname", func(c *config.Config) *string { return &c.Hostname }),
	fixed("smtp.max_message_size", func(c *config.Config) *config.Size { return &c.SMTP.MaxMessageSize }),
	fixed("smtp.max_recipients", func(c *config.Config) *int { return &c.SMTP.MaxRecipients }),
	fixed("smtp.max_line_length", func(c *config.Config) *int { return &c.SMTP.MaxLineLength }),
	fixed("smtp.command_timeout", func(c *config.Config) *config.Duration { return &c.SMTP.CommandTimeout }),
	{
		name: "tls (on or off)",
		same: func(old, new *config.Config) bool { return (old.TLS.Cert == "") == (new.TLS.Cert == "") },
		keep: func(old, new *config.Config) { new.TLS = old.TLS },
	},
	fixed("queue.run_interval", func(c *config.Config) *config.Duration { return &c.Queue.RunInterval }),
	fixed("queue.max_parallel", func(c *config.Config) *int { return &c.Queue.MaxParallel }),
	fixed("queue.ready_max", func(c *config.Config) *int { return &c.Queue.ReadyMax }),
	fixed("queue.delay_warning", func(c *config.Config) *config.Duration { return &c.Queue.DelayWarning }),
	fixed("queue.timeout_frozen_after", func(c *config.Config) *config.Duration { return &c.Queue.TimeoutFrozenAfter }),
	fixed("callout.cache_size", func(c *config.Config) *int { return &c.Callout.CacheSize }),
	fixed("recipient_verify.cache_size", func(c *config.Config) *int { return &c.RecipientVerify.CacheSize }),
	fixed("state", func(c *config.Config) *config.State { return &c.State }),
	fixed("admin.listen", func(c *config.Config) *string { return &c.Admin.Listen }),
	fixed("admin.cert", func(c *config.Config) *string { return &c.Admin.Cert }),
	fixed("admin.key", func(c *config.Config) *string { return &c.Admin.Key }),
	fixed("admin.timeout", func(c *config.Config) *config.Duration { return &c.Admin.Timeout }),
	fixed("admin.users", func(c *config.Config) *string { return &c.Admin.Users }),
	fixed("admin.session_timeout", func(c *config.Config) *config.Duration { return &c.Admin.SessionTimeout }),
	fixed("tracking", func(c *config.Config) *config.Tracking { return &c.Tracking }),
	fixed("digest", func(c *config.Config) *config.Digest { return &c.Digest }),
}

// keepFixed sets every restart-only setting of new back to old's value
// and returns the names of those that differed.
func keepFixed(old, new *config.Config) []string {
	var changed []string
	for _, s := range restartOnly {
		if !s.same(old, new) {
			changed = append(changed, s.name)
			s.keep(old, new)
		}
	}
	return changed
}

// The status file is how `mxgate reload` learns the outcome of the reload
// it asked for: the daemon rewrites it (atomically) after every attempt,
//
//	pid PID
//	attempt N
//	ok|refused
//	the message logged
//
// and the command waits for its PID with an attempt number past the one
// it saw before signalling.
func statusPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "mxgate.reload") }

type reloadStatus struct {
	pid, attempt int
	ok           bool
	msg          string
}

func (d *daemon) status(ok bool, msg string) {
	word := "refused"
	if ok {
		word = "ok"
	}
	path := statusPath(d.cur.cfg)
	tmp := path + ".tmp"
	text := fmt.Sprintf("pid %d\nattempt %d\n%s\n%s\n", os.Getpid(), d.attempts, word, msg)
	err := os.WriteFile(tmp, []byte(text), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		d.log.Panic(fmt.Sprintf("writing the reload status: %v", err))
	}
}

func readStatus(path string) (reloadStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return reloadStatus{}, err
	}
	var st reloadStatus
	lines := strings.SplitN(string(b), "\n", 4)
	if len(lines) < 4 {
		return reloadStatus{}, fmt.Errorf("%s: truncated", path)
	}
	p, err1 := strconv.Atoi(strings.TrimPrefix(lines[0], "pid "))
	a, err2 := strconv.Atoi(strings.TrimPrefix(lines[1], "attempt "))
	if err := errors.Join(err1, err2); err != nil {
		return reloadStatus{}, fmt.Errorf("%s: %w", path, err)
	}
	st.pid, st.attempt, st.ok, st.msg = p, a, lines[2] == "ok", strings.TrimSpace(lines[3])
	return st, nil
}

// reloadCmd is `mxgate reload`: it refuses to signal for a config that
// does not load (printing why, exit 1), sends SIGHUP to the daemon named
// by the pid file and prints the daemon's answer: "configuration
// reloaded: generation N" (exit 0) or the refusal (exit 1). The daemon
// reads its own config file, the one it was started with.
func reloadCmd(e *env) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait := config.Duration(reloadWait)
	fs.TextVar(&wait, "wait", wait, "")
	if err := fs.Parse(e.args); err != nil {
		return fmt.Errorf("reload: %v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if wait <= 0 {
		return fmt.Errorf("reload: --wait must be more than 0: %w", errUsage)
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return fmt.Errorf("not reloading: %w", err)
	}
	pidFile := pidPath(cfg)
	pid, err := pidfile.Daemon(pidFile, "mxgate", "serve")
	if err != nil {
		return err
	}
	path := statusPath(cfg)
	seen := 0
	if st, err := readStatus(path); err == nil && st.pid == pid {
		seen = st.attempt
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling the mxgate daemon (PID %d from %s): %w", pid, pidFile, err)
	}
	deadline := time.Now().Add(time.Duration(wait))
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		st, err := readStatus(path)
		if err != nil || st.pid != pid || st.attempt <= seen {
			continue
		}
		if !st.ok {
			return errors.New(st.msg)
		}
		fmt.Fprintln(e.stdout, st.msg)
		return nil
	}
	return fmt.Errorf("the mxgate daemon (PID %d) was signalled but reported no reload within %v; see its mainlog", pid, wait)
}
