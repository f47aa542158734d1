package main

import (
	"net/http"
	"time"

	"mxgate/admin"
	"mxgate/config"
	"mxgate/console"
	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/spool"
	"mxgate/tracking"
)

// newConsole is serve's web console, for the admin listener to mount at
// "/": nil when [admin] users is not set. Its actions go through package
// admin on the daemon's spool, their events on the daemon's bus, and
// "deliver now" and a release hand the message to the daemon's queue
// runner. store may be nil (tracking off).
func newConsole(cfg *config.Config, log *mainlog.Logger, sp *spool.Spool, bus *event.Bus, runner *queue.Runner, store *tracking.Store) (http.Handler, error) {
	if cfg.Admin.Users == "" {
		return nil, nil
	}
	c, err := console.New(console.Options{
		Users:          cfg.Admin.Users,
		SessionTimeout: time.Duration(cfg.Admin.SessionTimeout),
		Queue:          &admin.Queue{Spool: sp, Log: log, Hostname: cfg.Hostname, Bus: bus},
		Tracking:       store,
		Deliver:        runner.Enqueue,
		Log:            log,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}
