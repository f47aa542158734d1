package main

import (
	"fmt"
	"path/filepath"
	"time"

	"mxgate/config"
	"mxgate/deliver"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/spool"
)

// openSpool opens the logs and the spool of cfg, for serve and for the
// commands that work on a live spool beside a running daemon. The caller
// closes both.
func openSpool(cfg *config.Config) (*mainlog.Logger, *spool.Spool, error) {
	log, err := mainlog.Open(cfg.Log.Dir, cfg.Log.Format == "json")
	if err != nil {
		return nil, nil, err
	}
	sp, err := spool.Open(filepath.Join(cfg.DataDir, "spool"))
	if err != nil {
		log.Panic(fmt.Sprintf("cannot open spool: %v", err))
		log.Close()
		return nil, nil, err
	}
	return log, sp, nil
}

// newRunner builds the queue runner that delivers to cfg's downstream.
// serve runs it as the daemon's queue runner; -M, -qf and submission run
// it once in their own process, and the spool's locks keep the two from
// ever handling one message at the same time.
func newRunner(cfg *config.Config, sp *spool.Spool, log *mainlog.Logger) (*queue.Runner, error) {
	tr, err := deliver.New(deliver.Target(cfg.Downstream.Target), deliver.Options{
		Hostname:       cfg.Hostname,
		ConnectTimeout: time.Duration(cfg.Downstream.ConnectTimeout),
		CommandTimeout: time.Duration(cfg.Downstream.CommandTimeout),
		DataTimeout:    time.Duration(cfg.Downstream.DataTimeout),
		StartTLS:       cfg.Downstream.StartTLS,
		TLSVerify:      cfg.Downstream.TLSVerify,
	})
	if err != nil {
		return nil, err
	}
	return queue.New(queue.Options{
		Spool:              sp,
		Transport:          tr,
		Log:                log,
		Schedule:           cfg.Queue.Schedule,
		RunInterval:        time.Duration(cfg.Queue.RunInterval),
		MaxParallel:        cfg.Queue.MaxParallel,
		Hostname:           cfg.Hostname,
		DelayWarning:       time.Duration(cfg.Queue.DelayWarning),
		TimeoutFrozenAfter: time.Duration(cfg.Queue.TimeoutFrozenAfter),
	}), nil
}
