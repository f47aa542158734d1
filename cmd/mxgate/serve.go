package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"mxgate/config"
	"mxgate/deliver"
	"mxgate/gateway"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/retry"
	"mxgate/spool"
)

// loadConfig reads FILE, or the embedded default when path is "".
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func configCheck(args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("config check", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	src := "embedded default"
	if cfg.File != "" {
		src = cfg.File
	}
	fmt.Fprintf(stdout, "# mxgate configuration (from %s): OK\n%s", src, cfg.String())
	return nil
}

func serve(args []string, stderr io.Writer) error {
	path, err := configFlag("serve", args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	log, err := mainlog.Open(cfg.Log.Dir, cfg.Log.Format == "json")
	if err != nil {
		return err
	}
	defer log.Close()
	sp, err := spool.Open(filepath.Join(cfg.DataDir, "spool"))
	if err != nil {
		log.Panic(fmt.Sprintf("cannot open spool: %v", err))
		return err
	}
	defer sp.Close()
	tr, err := deliver.New(cfg.Downstream.URL, deliver.Options{
		Hostname:       cfg.Hostname,
		ConnectTimeout: time.Duration(cfg.Downstream.ConnectTimeout),
		CommandTimeout: time.Duration(cfg.Downstream.CommandTimeout),
		DataTimeout:    time.Duration(cfg.Downstream.DataTimeout),
		StartTLS:       cfg.Downstream.StartTLS,
		TLSVerify:      cfg.Downstream.TLSVerify,
	})
	if err != nil {
		return err
	}
	sched, err := retry.Parse(cfg.Queue.Retry)
	if err != nil {
		return err // config.Load checked it already
	}
	runner := queue.New(queue.Options{
		Spool:       sp,
		Transport:   tr,
		Log:         log,
		Schedule:    sched,
		RunInterval: time.Duration(cfg.Queue.RunInterval),
		MaxParallel: cfg.Queue.MaxParallel,
	})
	gw, err := gateway.New(gateway.Options{Config: cfg, Spool: sp, Log: log, OnCommit: runner.Enqueue})
	if err != nil {
		return err
	}

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
					fmt.Fprintf(stderr, "mxgate: reopening logs: %v\n", err)
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

// stop lets deliveries in flight finish up to the shutdown deadline; any
// cut short stay deferred in the spool and are retried at the next start.
func stop(runner *queue.Runner, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
	defer cancel()
	runner.Stop(ctx)
}
