package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mxgate/config"
	"mxgate/event"
	"mxgate/gateway"
	"mxgate/localsubmit"
	"mxgate/mainlog"
	"mxgate/pidfile"
	"mxgate/privdrop"
	"mxgate/queue"
	"mxgate/sdnotify"
	"mxgate/state"
)

// systemConfig is the config file of an installed mxgate, set by the
// packaging script (-ldflags "-X main.systemConfig=/etc/mxgate/mxgate.toml");
// empty in a plain `go build`, which runs on the embedded default.
var systemConfig string

// loadConfig reads FILE; when path is "", the installed config file, or
// the embedded default in a plain build.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		if systemConfig == "" {
			return config.Default(), nil
		}
		path = systemConfig
	}
	return config.Load(path)
}

// loadClientConfig is loadConfig for sendmail, which any user runs: the
// files the config names are not read (config.LoadClient).
func loadClientConfig(path string) (*config.Config, error) {
	if path == "" {
		if systemConfig == "" {
			return config.Default(), nil
		}
		path = systemConfig
	}
	return config.LoadClient(path)
}

// configName names, for messages, the file loadConfig(path) reads: its
// absolute path, or "the embedded default".
func configName(path string) string {
	if path == "" {
		path = systemConfig
	}
	if path == "" {
		return "the embedded default"
	}
	return absPath(path)
}

func init() {
	register("serve", "[-v]\trun the gateway in the foreground (SIGTERM drains, SIGHUP reloads, SIGUSR1 reopens logs)", serve,
		withDoc(`Once its listeners are up, serve says on stderr where it listens (each
address and its kind, smtp or smtps), which config it read and where it
logs, and nothing else: the mainlog has the rest. Errors still go to
stderr, and so does the warning that reloads will be refused, when the
configured user may not read a file the config names.`),
		withFlag("-v", "", "also print the version, pid, spool and pid file at start"))
}

func serve(e *env) error {
	verbose := len(e.args) == 1 && e.args[0] == "-v"
	if !verbose {
		if err := noArgs(e); err != nil {
			return err
		}
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	if len(cfg.Listen)+len(cfg.ListenTLS) == 0 {
		// listen = []: only the servers for another MTA, no SMTP and no
		// queue of our own (config allows it only beside them).
		return serveForMTA(e, cfg)
	}
	if err := mayServe(cfg); err != nil {
		return err
	}
	lock, logExisted, err := lockDataDir(cfg)
	if err != nil {
		return err
	}
	defer lock.Release()
	// The metrics sink is on the bus from the start, and reads the
	// queue from the spool once it is open.
	metricsSink := newMetrics(cfg)
	log, sp, bus, trackStore, err := openLogsAndSpool(cfg, true, metricsSinks(metricsSink)...)
	if err != nil {
		return err
	}
	defer log.Close()
	defer sp.Close()
	// After the drain and the runner's stop (deferred later, run
	// earlier): the tracking store writes the last events.
	defer closeBus(bus, log)
	if metricsSink != nil {
		metricsSink.WatchQueue(queueReader(sp))
	}
	for _, w := range cfg.Warnings {
		log.Main("", w.String())
	}
	if addr, err := pprofFromEnv(); err != nil {
		return err
	} else if addr != nil {
		log.Main("", fmt.Sprintf("profiling on http://%v/debug/pprof/ (%s)", addr, pprofEnv))
	}
	// The state store outlives every generation of checks: closed after
	// them (deferred before them), it writes the embedded store's last
	// changes to its file.
	store, err := state.Open(cfg.StateOptions())
	if err != nil {
		return err
	}
	defer closeState(store, log)
	// d.cur is the generation serving (a reload replaces it). Closed
	// after the drain and the runner's stop below: no session or delivery
	// uses it any more.
	first, err := newGeneration(cfg, log, bus, store)
	if err != nil {
		return err
	}
	first.n = 1
	first.users.Store(2)
	d := &daemon{configPath: e.configPath, log: log, bus: bus, store: store, cur: first}
	d.now.Store(d.cur)
	defer func() { d.cur.close(log) }()
	runner := newRunner(cfg, sp, log, first.router, bus)
	hosts, err := newHostLookup(cfg, bus)
	if err != nil {
		return err
	}
	first.checkUsers.Store(1)
	if cfg.MilterServer.Listen != "" {
		first.checkUsers.Store(2)
	}
	gw, err := gateway.New(gateway.Options{Config: cfg, Spool: sp, Log: log, OnCommit: runner.Enqueue, Pipeline: first.checks.Pipeline,
		Retired: func() { first.dropChecks(log) }, HostLookup: hosts, Bus: bus})
	if err != nil {
		return err
	}
	d.gw, d.runner = gw, runner
	// The milter server's socket is bound with the SMTP listeners, before
	// root is dropped.
	if d.milter, err = newMilterServer(cfg, log, bus, first, func() { first.dropChecks(log) }); err != nil {
		return err
	}
	// Bound with the SMTP listeners, before root is dropped; its own
	// pipeline of the MAIL and RCPT checks, built from the config of the
	// start.
	policy, err := listenPolicy(cfg, log, bus, store)
	if err != nil {
		return err
	}
	defer policy.close()
	// The admin listener is bound with the others, before root is
	// dropped; it closes last, so /metrics answers through the drain.
	console, err := newConsole(cfg, log, sp, bus, runner, trackStore)
	if err != nil {
		return err
	}
	admin, err := startAdmin(cfg, log, metricsSink, console, digestLinks(cfg, sp, log, runner, bus),
		"the SMTP listeners", serveProbes(cfg, d, sp))
	if err != nil {
		return err
	}
	defer admin.stop(time.Duration(cfg.Admin.Timeout))

	sigs, undo, err := daemonSignals(cfg)
	if err != nil {
		return err
	}
	defer undo()

	// Local users submit through the daemon. Closed first of all at exit
	// (deferred last), while the spool is still open.
	sock, err := localsubmit.Listen(localsubmit.Options{
		Path:    submitSocket(cfg),
		Handler: submitHandler(d.serving, sp, log, runner, bus),
		// Room for the CRs of CRLF line ends, which submission drops
		// before it holds the message to smtp.max_message_size.
		MaxMessage:    int64(cfg.SMTP.MaxMessageSize) * 9 / 8,
		Timeout:       time.Duration(cfg.SMTP.DataTimeout),
		MaxConcurrent: cfg.SMTP.MaxConnectionsPerIP,
		Log:           func(s string) { log.Main("", s) },
	})
	if err != nil {
		return err
	}
	defer sock.Close()

	// Everything root had to do is done: the listeners are bound, the
	// TLS keys and the files opened. Nothing is accepted before this.
	dropping := os.Geteuid() == 0 && cfg.UID > 0
	if err := dropPrivileges(cfg, logExisted); err != nil {
		return err
	}
	if dropping {
		reloadable(e, cfg.User, log)
	}
	go func() {
		if err := sock.Serve(); err != nil {
			log.Panic(err.Error())
		}
	}()
	admin.serve()
	policy.serve()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runner.Start(ctx)
	if err := startDigest(ctx, cfg, sp, log, runner, bus); err != nil {
		return err
	}

	served := make(chan error, 2)
	go func() { served <- gw.Serve() }()
	if d.milter != nil {
		go func() { served <- d.milter.Serve() }()
		log.Main("", "milter server listening on "+cfg.MilterServer.Listen)
	}
	admin.listening(true)
	started := fmt.Sprintf("mxgate daemon started: pid=%d, listening for SMTP on %v", os.Getpid(), gw.Addrs())
	if policy != nil {
		started += ", policy server on " + policy.addr()
	}
	log.Main("", started)
	announce(e, cfg, gw.Addrs(), verbose)
	// The listeners are bound (gateway.New): a client connecting now is
	// served, so systemd may call the unit started.
	ready := fmt.Sprintf("listening for SMTP on %v", gw.Addrs())
	notify(e, sdnotify.Ready(ready))

	for {
		select {
		case err := <-served:
			// The listeners died on their own: nothing more will arrive, so
			// let deliveries in flight finish before reporting.
			admin.listening(false)
			stop(runner, d.cur.cfg)
			return err
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP: // reload: config, TLS certificates, logs
				// systemd waits for READY=1 after RELOADING=1 whatever the
				// outcome: a refused reload leaves the old config serving.
				notify(e, sdnotify.Reloading())
				d.reload()
				notify(e, sdnotify.Ready(ready))
				continue
			case syscall.SIGUSR1: // log rotation: the logs only
				if err := log.Reopen(); err != nil {
					fmt.Fprintf(e.stderr, "mxgate: reopening logs: %v\n", err)
				}
				continue
			}
			cfg := d.cur.cfg
			admin.listening(false)
			log.Main("", fmt.Sprintf("mxgate daemon stopping on %v: draining sessions (up to %v)", sig, time.Duration(cfg.SMTP.ShutdownTimeout)))
			notify(e, sdnotify.Stopping(fmt.Sprintf("draining sessions (up to %v)", time.Duration(cfg.SMTP.ShutdownTimeout))))
			dctx, dcancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
			milterDone := make(chan error, 1)
			if d.milter != nil {
				go func() { milterDone <- d.milter.Shutdown(dctx) }()
			}
			err := gw.Shutdown(dctx)
			if d.milter != nil {
				err = errors.Join(err, <-milterDone)
				<-served
			}
			dcancel()
			if err != nil {
				log.Main("", fmt.Sprintf("drain deadline passed, sessions closed: %v", err))
			}
			<-served
			stop(runner, cfg)
			log.Main("", "mxgate daemon stopped")
			return nil
		}
	}
}

// daemonSignals catches the daemon's signals, then writes its pid file,
// which lets `mxgate log reopen` and `mxgate reload` find it: caught
// first, a SIGHUP from `mxgate reload` never finds the default action
// (exit). undo removes the pid file and lets the signals go.
func daemonSignals(cfg *config.Config) (sigs chan os.Signal, undo func(), err error) {
	sigs = make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	pidFile := pidPath(cfg)
	if err := pidfile.Write(pidFile); err != nil {
		signal.Stop(sigs)
		return nil, nil, err
	}
	return sigs, func() {
		pidfile.Remove(pidFile)
		signal.Stop(sigs)
	}, nil
}

// lockDataDir makes data_dir and takes its lock, before anything else
// of it is written or opened: a second daemon leaves the first one's
// files alone. logExisted: the log directory was there before (see
// dropPrivileges).
func lockDataDir(cfg *config.Config) (lock *pidfile.Lock, logExisted bool, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("creating data_dir: %w", err)
	}
	if lock, err = pidfile.Acquire(cfg.DataDir); err != nil {
		return nil, false, err
	}
	_, statErr := os.Stat(cfg.Log.Dir)
	return lock, !os.IsNotExist(statErr), nil
}

func closeBus(bus *event.Bus, log *mainlog.Logger) {
	if err := bus.Close(); err != nil {
		log.Panic(fmt.Sprintf("closing the event sinks: %v", err))
	}
}

func closeState(store state.Store, log *mainlog.Logger) {
	if err := store.Close(); err != nil {
		log.Panic(fmt.Sprintf("closing the state store: %v", err))
	}
}

// announce is serve's start line on stderr: where it listens, which
// config it read, where it logs; verbose adds the rest an admin may ask.
func announce(e *env, cfg *config.Config, addrs []net.Addr, verbose bool) {
	var ls []string
	for i, a := range addrs {
		kind := "smtp" // the listen entries come first, then listen_tls, then listen_submission
		switch {
		case i >= len(cfg.Listen)+len(cfg.ListenTLS):
			kind = "submission"
		case i >= len(cfg.Listen):
			kind = "smtps"
		}
		ls = append(ls, a.String()+" ("+kind+")")
	}
	listening := "nothing"
	if len(ls) > 0 {
		listening = strings.Join(ls, ", ")
	}
	src := "embedded default"
	if cfg.File != "" {
		src = absPath(cfg.File)
	}
	fmt.Fprintf(e.stderr, "mxgate: listening on %s; config %s; logging to %s\n", listening, src, absPath(cfg.Log.Dir))
	if verbose {
		b := readBuildInfo()
		fmt.Fprintf(e.stderr, "mxgate: version %s (commit %s, %s), pid %d, spool %s, pid file %s\n",
			b.version, b.commit, b.goVersion, os.Getpid(), absPath(filepath.Join(cfg.DataDir, "spool")), absPath(pidPath(cfg)))
	}
}

// absPath is p made absolute for a person to find, p itself if that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// mayServe refuses to run as root unless the config names a user to
// switch to or says run_as_root, and a user to switch to that only root
// could.
func mayServe(cfg *config.Config) error {
	euid := os.Geteuid()
	switch {
	case euid == 0 && cfg.UID <= 0 && !cfg.RunAsRoot:
		return fmt.Errorf("refusing to run as root: set user = \"mxgate\" (or run_as_root = true) in %s", cfg.File)
	case euid != 0 && cfg.UID >= 0 && cfg.UID != euid:
		return fmt.Errorf("user = %q in %s, and only root can switch to it (running as %s)", cfg.User, cfg.File, userName())
	}
	return nil
}

// dropPrivileges gives data_dir, and the log directory, to cfg's user and
// switches to it, when started as root with a user set. A log directory
// outside data_dir that existed before (logExisted) may be shared, as
// /var/log is: only mxgate's own log files in it are given.
func dropPrivileges(cfg *config.Config, logExisted bool) error {
	if os.Geteuid() != 0 || cfg.UID <= 0 {
		return nil
	}
	own := []string{cfg.DataDir}
	if rel, err := filepath.Rel(cfg.DataDir, cfg.Log.Dir); err != nil || !filepath.IsLocal(rel) {
		if logExisted {
			for _, f := range []string{mainlog.MainFile, mainlog.RejectFile, mainlog.PanicFile, mainlog.JSONFile} {
				own = append(own, filepath.Join(cfg.Log.Dir, f))
			}
		} else {
			own = append(own, cfg.Log.Dir)
		}
	}
	if err := privdrop.Own(cfg.UID, cfg.GID, own...); err != nil {
		return err
	}
	if err := privdrop.To(cfg.UID, cfg.GID, cfg.Groups); err != nil {
		return fmt.Errorf("switching to user %s: %w", cfg.User, err)
	}
	return nil
}

// reloadable loads the config again as the user the daemon now runs as,
// as every reload will: a file only root may read (a TLS key of mode
// 0600, a DKIM key, the smarthost's password) loads at start and then
// makes each reload fail. Said at start, in paniclog and on stderr,
// rather than at the first certificate renewal.
func reloadable(e *env, user string, log *mainlog.Logger) {
	if _, err := loadConfig(e.configPath); err != nil {
		msg := fmt.Sprintf("warning: a reload will be refused: as user %s, %s (files the config names must be readable by that user)", user, oneLine(err))
		log.Panic(msg)
		fmt.Fprintf(e.stderr, "mxgate: %s\n", msg)
	}
}

// submitSocket is where the daemon takes local submissions.
func submitSocket(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "submit.sock") }

// notify reports a failed sd_notify on stderr, which systemd puts in the
// journal beside its own "start operation timed out".
func notify(e *env, err error) {
	if err != nil {
		fmt.Fprintf(e.stderr, "mxgate: %v\n", err)
	}
}

// pidPath is where a running daemon records its process ID.
func pidPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "mxgate.pid") }

// stop lets deliveries in flight finish up to the shutdown deadline; any
// cut short stay deferred in the spool and are retried at the next start.
func stop(runner *queue.Runner, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
	defer cancel()
	runner.Stop(ctx)
}
