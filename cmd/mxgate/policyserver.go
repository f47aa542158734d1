package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/mainlog"
	"mxgate/policysrv"
	"mxgate/route"
	"mxgate/state"
)

func init() {
	register("policy", "[-bh]\trun only the Postfix policy delegation server of [policy_server] in the foreground (SIGTERM stops it)", policyCmd,
		withFlag("-bh", "", "answer policy requests read from stdin on stdout, the checks' decisions traced on stderr; nothing logged or counted"),
		withDoc(`The policy server answers Postfix's check_policy_service at RCPT with
mxgate's MAIL and RCPT stage checks (DNS lists, recipient verification,
rate limits, greylisting, callouts) and logs as serve does. serve runs
it too, beside SMTP, when policy_server.listen is set, and alone when
listen = [].`))
}

// policyServer is [policy_server] bound: its listener, the pipeline it
// answers with and that pipeline's router, all closed by close.
type policyServer struct {
	srv    *policysrv.Server
	ln     net.Listener
	checks *checks.Pipeline
	router *route.Router
	cfg    *config.Config
	log    *mainlog.Logger
	closed sync.Once
}

// listenPolicy binds [policy_server] (root may be needed for the address;
// the caller drops privileges after) with the MAIL and RCPT checks of
// cfg; nil when it is off. A unix socket left by an earlier run is
// replaced; the new one is 0666, as Postfix's smtpd asks from its own user.
func listenPolicy(cfg *config.Config, log *mainlog.Logger, bus *event.Bus, store state.Store) (*policyServer, error) {
	pc := cfg.PolicyServer
	if pc.Listen == "" {
		return nil, nil
	}
	router, err := newRouter(cfg, log, bus)
	if err != nil {
		return nil, err
	}
	p, err := checks.BuildPolicy(cfg, log, router, store, bus)
	if err != nil {
		closeRouter(router, cfg)
		return nil, err
	}
	// fail closes what is built when the listener cannot be had.
	fail := func(err error) (*policyServer, error) {
		p.Close()
		closeRouter(router, cfg)
		return nil, err
	}
	network, addr := pc.PolicyNetwork()
	if network == "unix" {
		if err := os.MkdirAll(filepath.Dir(addr), 0o755); err != nil {
			return fail(fmt.Errorf("policy_server.listen: %w", err))
		}
		if err := os.Remove(addr); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("policy_server.listen: removing the old socket: %w", err))
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fail(fmt.Errorf("policy_server.listen: %w", err))
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o666); err != nil {
			ln.Close()
			return fail(fmt.Errorf("policy_server.listen: %w", err))
		}
		if cfg.UID > 0 {
			os.Chown(addr, cfg.UID, cfg.GID) // the daemon removes it at its next start
		}
	}
	srv := policysrv.New(policysrv.Options{
		Pipeline: func() *filters.Pipeline { return p.Pipeline },
		Log:      log, Bus: bus, DryRun: pc.DryRun,
		Timeout: time.Duration(pc.Timeout), TransactionTimeout: time.Duration(pc.TransactionTimeout),
	})
	return &policyServer{srv: srv, ln: ln, checks: p, router: router, cfg: cfg, log: log}, nil
}

// serve answers until close; a listener that fails is logged.
func (ps *policyServer) serve() {
	if ps == nil {
		return
	}
	go func() {
		if err := ps.srv.Serve(ps.ln); err != nil {
			ps.log.Panic(err.Error())
		}
	}()
}

// close stops the server, then its checks, then their router; once.
func (ps *policyServer) close() {
	if ps == nil {
		return
	}
	ps.closed.Do(func() {
		ps.srv.Close()
		if err := ps.checks.Close(); err != nil {
			ps.log.Panic(fmt.Sprintf("closing the policy server's checks: %v", err))
		}
		closeRouter(ps.router, ps.cfg)
	})
}

// addr is where it listens, for the start lines.
func (ps *policyServer) addr() string {
	if ps == nil {
		return ""
	}
	return ps.ln.Addr().String()
}

// policyCmd is `mxgate policy`: the policy server alone.
func policyCmd(e *env) error {
	test := len(e.args) == 1 && e.args[0] == "-bh"
	if !test {
		if err := noArgs(e); err != nil {
			return err
		}
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	if test {
		return policyTest(e, cfg)
	}
	if cfg.PolicyServer.Listen == "" {
		return fmt.Errorf("policy_server.listen is not set in %s", configName(e.configPath))
	}
	return serveForMTA(e, cfg)
}
