package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"mxgate/adminweb"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters/clamd"
	"mxgate/filters/milter"
	"mxgate/filters/spamd"
	"mxgate/mainlog"
	"mxgate/metrics"
	"mxgate/spool"
)

// newMetrics is the Prometheus sink of the daemon's events, nil when the
// admin listener that would serve it is off.
func newMetrics(cfg *config.Config) *metrics.Metrics {
	if cfg.Admin.Listen == "" {
		return nil
	}
	return metrics.New(metrics.Options{Version: readBuildInfo().version})
}

// metricsSinks is what the admin listener's parts add to the event bus:
// the metrics sink when there is one.
func metricsSinks(m *metrics.Metrics) []event.Sink {
	if m == nil {
		return nil
	}
	return []event.Sink{m}
}

// queueReader reads the queue gauges from the spool: a walk of the -H
// files, which holds a few hundred names at a time whatever the queue's
// size, and the oldest message's -H for its arrival time. The metrics
// sink caches the answer, so scrapes do not walk the spool each time.
func queueReader(sp *spool.Spool) metrics.QueueFunc {
	return func() (int, time.Time, error) {
		n := 0
		var oldest spool.ID
		err := sp.Walk("", func(id spool.ID) bool {
			n++
			if oldest == "" || id.Compare(oldest) < 0 {
				oldest = id
			}
			return true
		})
		if err != nil || n == 0 {
			return n, time.Time{}, err
		}
		env, err := sp.Load(oldest)
		switch {
		case errors.Is(err, spool.ErrNotFound):
			// Delivered since the walk: the count stands, the age waits
			// for the next reading.
			return n, time.Time{}, nil
		case err != nil:
			return 0, time.Time{}, err
		}
		return n, env.Received, nil
	}
}

// adminListener is the [admin] listener of a running daemon.
type adminListener struct {
	srv *adminweb.Server
	log *mainlog.Logger
	// up is true while the mail listeners serve (serve's SMTP ones, or
	// the milter and policy servers without them): from their start
	// until the drain begins, when /readyz turns 503 so a load balancer
	// stops sending before the listeners close.
	up      atomic.Bool
	started bool
	served  chan error
}

// startAdmin binds the admin listener of cfg (nil when it is off), with
// console at "/" (nil: none), before the daemon drops root: the port may
// be privileged and the key root's. /readyz asks that listeners (what
// they are, for its answer) serve, then the probes of more, asked at
// each reading so a reload that turns a scanner's on_error to tempfail,
// or adds a milter, makes it required at once.
func startAdmin(cfg *config.Config, log *mainlog.Logger, m *metrics.Metrics, console, links http.Handler, listeners string, more func() []adminweb.Probe) (*adminListener, error) {
	if cfg.Admin.Listen == "" {
		return nil, nil
	}
	var tc *tls.Config
	if certFile, keyFile := cfg.AdminTLS(); certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("admin listener: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	a := &adminListener{log: log, served: make(chan error, 1)}
	up := adminweb.Probe{Name: "listeners", Check: func(context.Context) error {
		if !a.up.Load() {
			return errors.New(listeners + " are not serving")
		}
		return nil
	}}
	srv, err := adminweb.New(adminweb.Options{
		Listen:  cfg.Admin.Listen,
		TLS:     tc,
		Metrics: m.Handler(),
		Console: console,
		Links:   links,
		Ready: func(ctx context.Context) error {
			return adminweb.Probes(append([]adminweb.Probe{up}, more()...)...)(ctx)
		},
		ReadTimeout:  time.Duration(cfg.Admin.Timeout),
		WriteTimeout: time.Duration(cfg.Admin.Timeout),
		Log:          func(s string) { log.Main("", s) },
	})
	if err != nil {
		return nil, err
	}
	a.srv = srv
	return a, nil
}

// serveProbes are serve's parts of readiness beside its listeners: the
// spool, and the scanners and milters of the serving generation.
func serveProbes(cfg *config.Config, d *daemon, sp *spool.Spool) func() []adminweb.Probe {
	spoolProbe := adminweb.Probe{Name: "spool", Check: spoolReady(sp, adminweb.Writable(filepath.Join(cfg.DataDir, "spool")))}
	return func() []adminweb.Probe {
		return append([]adminweb.Probe{spoolProbe}, checkProbes(d.now.Load().cfg)...)
	}
}

// checkProbes are the probes of the scanners and milters of cfg whose
// failure refuses mail.
func checkProbes(cfg *config.Config) []adminweb.Probe {
	s, c := cfg.Spamd, cfg.Clamd
	return append([]adminweb.Probe{
		{Name: "spamd", Check: func(ctx context.Context) error {
			return requiredScanner(ctx, s.Enabled() && s.OnError == "tempfail", s.Address, s.Timeout, spamd.Ping)
		}},
		{Name: "clamd", Check: func(ctx context.Context) error {
			return requiredScanner(ctx, c.Enabled() && c.OnError == "tempfail", c.Address, c.Timeout, clamd.Ping)
		}},
	}, milterProbes(cfg.Milters)...)
}

// milterProbes are the probes of the required milters, "milter NAME":
// each connects and negotiates options as a session's first stage does,
// within its connect_timeout. A milter whose failure refuses mail
// (on_error "tempfail", the default, or "reject") is required; one with
// "accept" is skipped when it fails and is not.
func milterProbes(ms []config.Milter) []adminweb.Probe {
	var ps []adminweb.Probe
	for _, m := range ms {
		if m.OnError == "accept" {
			continue
		}
		o := milter.Options{Address: m.Address, Name: m.Name, OnError: m.OnError,
			ConnectTimeout: time.Duration(m.ConnectTimeout), CommandTimeout: time.Duration(m.CommandTimeout), EOMTimeout: time.Duration(m.EOMTimeout)}
		ps = append(ps, adminweb.Probe{Name: "milter " + m.Name, Check: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
			defer cancel()
			_, err := milter.Negotiate(ctx, o)
			return err
		}})
	}
	return ps
}

// spoolReady is the spool's probe: writable, and above its reserve
// (spool.min_free_space and min_free_inodes), below which every MAIL is
// answered 452 and the gateway takes no mail.
func spoolReady(sp *spool.Spool, writable func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := writable(ctx); err != nil {
			return err
		}
		if short := sp.CheckSpace(0); short != nil {
			return short
		}
		return nil
	}
}

// requiredScanner pings a scanner whose failure refuses mail (on_error =
// "tempfail"), within its timeout; one that is off or only stamps mail
// when it fails is not required and passes.
func requiredScanner(ctx context.Context, required bool, addrs config.StringList, timeout config.Duration, ping func(context.Context, string) (string, error)) error {
	if !required {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(timeout))
	defer cancel()
	return adminweb.AnyOf(addrs, func(ctx context.Context, addr string) error {
		_, err := ping(ctx, addr)
		return err
	})(ctx)
}

// serve answers requests in the background; a listener that dies is a
// paniclog line, the mail goes on.
func (a *adminListener) serve() {
	if a == nil {
		return
	}
	a.log.Main("", fmt.Sprintf("admin listener on %v: /metrics, /healthz, /readyz", a.srv.Addr()))
	a.started = true
	go func() {
		err := a.srv.Serve()
		if err != nil {
			a.log.Panic(err.Error())
		}
		a.served <- err
	}()
}

// listening says whether the mail listeners serve, for /readyz.
func (a *adminListener) listening(up bool) {
	if a != nil {
		a.up.Store(up)
	}
}

// stop closes the listener, letting requests in flight end within
// timeout.
func (a *adminListener) stop(timeout time.Duration) {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.log.Main("", fmt.Sprintf("admin listener: %v", err))
	}
	if a.started {
		<-a.served
	}
}
