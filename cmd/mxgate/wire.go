package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/deliver"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/route"
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

// newRunner builds the queue runner that delivers by cfg's routes. serve
// runs it as the daemon's queue runner; -M, -qf and submission run it
// once in their own process, and the spool's locks keep the two from ever
// handling one message at the same time.
func newRunner(cfg *config.Config, sp *spool.Spool, log *mainlog.Logger) (*queue.Runner, error) {
	r, err := newRouter(cfg)
	if err != nil {
		return nil, err
	}
	return queue.New(queue.Options{
		Spool:              sp,
		Router:             r,
		Log:                log,
		Schedule:           cfg.Queue.Schedule,
		RunInterval:        time.Duration(cfg.Queue.RunInterval),
		MaxParallel:        cfg.Queue.MaxParallel,
		Hostname:           cfg.Hostname,
		DelayWarning:       time.Duration(cfg.Queue.DelayWarning),
		TimeoutFrozenAfter: time.Duration(cfg.Queue.TimeoutFrozenAfter),
	}), nil
}

// errNoMX is outbound mode "mx" until the MX transport is wired in.
var errNoMX = errors.New(`outbound.mode = "mx": direct delivery to MX hosts is not available in this build; set outbound.mode = "smarthost" or "none"`)

// newRouter is the router of cfg with every transport built: the one the
// queue delivers by and -bt shows.
func newRouter(cfg *config.Config) (*route.Router, error) {
	o := checks.RouteOptions(cfg)
	var err error
	if o.Default.Transport, err = storeTransport(cfg, cfg.Downstream); err != nil {
		return nil, fmt.Errorf("downstream: %w", err)
	}
	for i, r := range cfg.Routes {
		if o.Routes[i].Transport, err = storeTransport(cfg, r); err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Name, err)
		}
	}
	switch out := cfg.Outbound; out.Mode {
	case "mx":
		return nil, errNoMX
	case "smarthost":
		if out.SmarthostTarget.Scheme != "smtp" {
			return nil, fmt.Errorf("outbound.smarthost %s: only smtp:// is available in this build", out.Smarthost)
		}
		o.Outbound.Transport, err = deliver.New(deliver.Target(out.SmarthostTarget), deliver.Options{
			Hostname:       cfg.Hostname,
			ConnectTimeout: time.Duration(out.ConnectTimeout),
			CommandTimeout: time.Duration(out.CommandTimeout),
			DataTimeout:    time.Duration(out.DataTimeout),
			StartTLS:       out.StartTLS,
		})
		if err != nil {
			return nil, fmt.Errorf("outbound.smarthost: %w", err)
		}
	}
	return route.New(o), nil
}

// storeTransport is the transport of one store: SMTP or LMTP, or the
// Maildirs of its layout.
func storeTransport(cfg *config.Config, d config.Downstream) (deliver.Transport, error) {
	if d.Target.Scheme == "maildir" {
		// config checked the mode: octal, 0700 to 0777.
		mode, _ := strconv.ParseUint(d.MaildirMode, 8, 32)
		return deliver.NewMaildir(deliver.MaildirOptions{
			Root:      d.Target.Path,
			Layout:    d.MaildirLayout,
			Users:     d.MaildirUsers,
			Delimiter: d.RecipientDelimiter,
			Lowercase: d.LowercaseLocal,
			UID:       d.MaildirUID,
			GID:       d.MaildirGID,
			Mode:      os.FileMode(mode),
		}), nil
	}
	return deliver.New(deliver.Target(d.Target), deliver.Options{
		Hostname:       cfg.Hostname,
		ConnectTimeout: time.Duration(d.ConnectTimeout),
		CommandTimeout: time.Duration(d.CommandTimeout),
		DataTimeout:    time.Duration(d.DataTimeout),
		StartTLS:       d.StartTLS,
		TLSVerify:      d.TLSVerify,
	})
}
