package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mxgate/adminweb"
	"mxgate/config"
	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/miltersrv"
	"mxgate/sdnotify"
	"mxgate/state"
)

func init() {
	register("milter", "\trun only the milter server of [milter_server] in the foreground (SIGTERM drains, SIGHUP reloads the checks)", milterCmd,
		withDoc(`For a site whose MTA (Postfix, Sendmail) stays in front: mxgate runs
no SMTP listener and no queue, only its checks, which the MTA asks over
the milter protocol at milter_server.listen (see "Milter mode" in the
README). serve runs the same server beside its SMTP listeners when
milter_server.listen is set.`))
}

// newMilterServer binds [milter_server] for the checks of g, nil when it
// is not configured. retired is the checks' end once a reload replaced
// them and no milter session uses them any more.
func newMilterServer(cfg *config.Config, log *mainlog.Logger, bus *event.Bus, g *generation, retired func()) (*miltersrv.Server, error) {
	if cfg.MilterServer.Listen == "" {
		return nil, nil
	}
	return miltersrv.New(miltersrv.Options{Config: cfg, Pipeline: g.checks.Pipeline, Retired: retired, Log: log, Bus: bus})
}

// dropChecks is one server's end of g's checks (the gateway's, the milter
// server's): the last one closes them.
func (g *generation) dropChecks(log *mainlog.Logger) {
	if g.checkUsers.Add(-1) == 0 {
		g.retireChecks(log)
	}
}

// milterCmd is `mxgate milter`: the milter server alone.
func milterCmd(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	if cfg.MilterServer.Listen == "" {
		return errors.New("milter_server.listen is not set: nothing to serve")
	}
	return serveForMTA(e, cfg)
}

// serveForMTA runs the servers for another MTA, the milter server and
// the policy server, whichever cfg sets, without SMTP listeners and
// without a queue: `mxgate milter`, `mxgate policy`, and serve with
// listen = []. SIGTERM or SIGINT drains the milter sessions and stops;
// SIGHUP reloads the milter server's checks (the policy server keeps
// the config of its start) and reopens the logs; SIGUSR1 reopens them.
func serveForMTA(e *env, cfg *config.Config) error {
	if err := mayServe(cfg); err != nil {
		return err
	}
	lock, logExisted, err := lockDataDir(cfg)
	if err != nil {
		return err
	}
	defer lock.Release()
	// No spool: the MTA keeps the mail; the milter server's bodies are
	// temp files in data_dir.
	log, err := mainlog.Open(cfg.Log.Dir, cfg.Log.Format == "json")
	if err != nil {
		return err
	}
	defer log.Close()
	// No queue, so no queue gauges: the MTA's queue is its own.
	metricsSink := newMetrics(cfg)
	bus, _, err := newBus(cfg, log, true, metricsSinks(metricsSink)...)
	if err != nil {
		return err
	}
	defer closeBus(bus, log)
	store, err := state.Open(cfg.StateOptions())
	if err != nil {
		return err
	}
	defer closeState(store, log)
	build := func(cfg *config.Config) (*generation, error) {
		g, err := newGeneration(cfg, log, bus, store)
		if err != nil {
			return nil, err
		}
		g.users.Store(1)
		g.checkUsers.Store(1)
		return g, nil
	}
	var cur *generation
	var srv *miltersrv.Server
	// serving is the milter server's config, for /readyz's probes of the
	// scanners and milters its checks ask (a reload replaces it); nil
	// without a milter server: the policy server asks none.
	var serving atomic.Pointer[config.Config]
	if cfg.MilterServer.Listen != "" {
		if cur, err = build(cfg); err != nil {
			return err
		}
		cur.n = 1
		serving.Store(cfg)
		if srv, err = newMilterServer(cfg, log, bus, cur, func() { cur.dropChecks(log) }); err != nil {
			cur.close(log)
			return err
		}
	}
	// Its own pipeline of the MAIL and RCPT checks, from the config of
	// the start.
	policy, err := listenPolicy(cfg, log, bus, store)
	if err != nil {
		if cur != nil {
			cur.close(log)
		}
		return err
	}
	defer policy.close()
	admin, err := startAdmin(cfg, log, metricsSink, nil, nil, "the milter and policy listeners", func() []adminweb.Probe {
		if c := serving.Load(); c != nil {
			return checkProbes(c)
		}
		return nil
	})
	if err != nil {
		if cur != nil {
			cur.close(log)
		}
		return err
	}
	defer admin.stop(time.Duration(cfg.Admin.Timeout))
	sigs, undo, err := daemonSignals(cfg)
	if err != nil {
		return err
	}
	defer undo()
	// The socket is bound: root is no longer needed.
	if err := dropPrivileges(cfg, logExisted); err != nil {
		return err
	}
	served := make(chan error, 1)
	var parts []string
	if srv != nil {
		go func() { served <- srv.Serve() }()
		parts = append(parts, "milter server on "+cfg.MilterServer.Listen)
	}
	if policy != nil {
		policy.serve()
		parts = append(parts, "policy server on "+policy.addr())
	}
	admin.serve()
	admin.listening(true)
	ready := "no SMTP listener, " + strings.Join(parts, ", ")
	log.Main("", fmt.Sprintf("mxgate daemon started: pid=%d, %s", os.Getpid(), ready))
	fmt.Fprintf(e.stderr, "mxgate: %s (config %s, logs in %s)\n", strings.Join(parts, ", "), configName(e.configPath), cfg.Log.Dir)
	notify(e, sdnotify.Ready(ready))
	for {
		select {
		case err := <-served:
			admin.listening(false)
			return err
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				notify(e, sdnotify.Reloading())
				if err := log.Reopen(); err != nil {
					log.Panic(fmt.Sprintf("reopening the logs: %v", err))
				}
				if srv == nil {
					log.Main("", "reload: the policy server keeps the config of its start; restart to change it")
					notify(e, sdnotify.Ready(ready))
					continue
				}
				next, err := loadConfig(e.configPath)
				var g *generation
				if err == nil {
					g, err = build(next)
				}
				if err != nil {
					log.Panic(fmt.Sprintf("configuration reload refused, generation %d still serving: %s", cur.n, oneLine(err)))
				} else {
					g.n = cur.n + 1
					cur.checks.Retire()
					srv.Reload(next, g.checks.Pipeline, func() { g.dropChecks(log) })
					cur = g
					serving.Store(next)
					log.Main("", fmt.Sprintf("configuration reloaded: generation %d (milter_server itself needs a restart)", g.n))
				}
				notify(e, sdnotify.Ready(ready))
				continue
			case syscall.SIGUSR1:
				if err := log.Reopen(); err != nil {
					fmt.Fprintf(e.stderr, "mxgate: reopening logs: %v\n", err)
				}
				continue
			}
			log.Main("", fmt.Sprintf("mxgate daemon stopping on %v: draining sessions (up to %v)", sig, time.Duration(cfg.SMTP.ShutdownTimeout)))
			admin.listening(false)
			notify(e, sdnotify.Stopping("draining milter sessions"))
			policy.close()
			if srv != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
				err := srv.Shutdown(ctx)
				cancel()
				if err != nil {
					log.Main("", fmt.Sprintf("drain deadline passed, sessions closed: %v", err))
				}
				<-served
				cur.close(log)
			}
			log.Main("", "mxgate daemon stopped")
			return nil
		}
	}
}
