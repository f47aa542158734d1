package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/gateway"
	"mxgate/pidfile"
	"mxgate/queue"
)

// loadConfig reads FILE, or the embedded default when path is "".
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func init() {
	register("serve", "\trun the gateway in the foreground (SIGTERM drains, SIGHUP reopens logs)", serve)
	register("config check", "\tvalidate the config and print the effective configuration", configCheck)
	register("-bV", "\tsame as config check", configCheck)
}

func configCheck(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	src := "embedded default"
	if cfg.File != "" {
		src = cfg.File
	}
	fmt.Fprintf(e.stdout, "# mxgate configuration (from %s): OK\n%s", src, cfg.String())
	return nil
}

func serve(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	log, sp, err := openSpool(cfg)
	if err != nil {
		return err
	}
	defer log.Close()
	defer sp.Close()
	if addr, err := pprofFromEnv(); err != nil {
		return err
	} else if addr != nil {
		log.Main("", fmt.Sprintf("profiling on http://%v/debug/pprof/ (%s)", addr, pprofEnv))
	}
	router, err := newRouter(cfg, log)
	if err != nil {
		return err
	}
	// After the runner's stop below: no delivery uses a session any more.
	defer closeRouter(router, cfg)
	runner := newRunner(cfg, sp, log, router)
	pl, err := checks.Build(cfg, log, router, false)
	if err != nil {
		return err
	}
	// Closed once every session has ended (the deferred calls run in
	// reverse order, after the drain below).
	defer func() {
		if err := pl.Close(); err != nil {
			log.Panic(fmt.Sprintf("closing the checks: %v", err))
		}
	}()
	hosts, err := newHostLookup(cfg)
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Options{Config: cfg, Spool: sp, Log: log, OnCommit: runner.Enqueue, Pipeline: pl.Pipeline, HostLookup: hosts})
	if err != nil {
		return err
	}

	// The pid file lets `mxgate log reopen` find the daemon.
	pidFile := pidPath(cfg)
	if err := pidfile.Write(pidFile); err != nil {
		return err
	}
	defer pidfile.Remove(pidFile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runner.Start(ctx)

	served := make(chan error, 1)
	go func() { served <- gw.Serve() }()
	log.Main("", fmt.Sprintf("mxgate daemon started: pid=%d, listening for SMTP on %v", os.Getpid(), gw.Addrs()))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-served:
			// The listeners died on their own: nothing more will arrive, so
			// let deliveries in flight finish before reporting.
			stop(runner, cfg)
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if err := log.Reopen(); err != nil {
					fmt.Fprintf(e.stderr, "mxgate: reopening logs: %v\n", err)
				}
				continue
			}
			log.Main("", fmt.Sprintf("mxgate daemon stopping on %v: draining sessions (up to %v)", sig, time.Duration(cfg.SMTP.ShutdownTimeout)))
			dctx, dcancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
			err := gw.Shutdown(dctx)
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

// pidPath is where a running daemon records its process ID.
func pidPath(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "mxgate.pid") }

// stop lets deliveries in flight finish up to the shutdown deadline; any
// cut short stay deferred in the spool and are retried at the next start.
func stop(runner *queue.Runner, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
	defer cancel()
	runner.Stop(ctx)
}
