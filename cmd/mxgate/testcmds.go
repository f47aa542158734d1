package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"mxgate/checks"
	"mxgate/gateway"
	"mxgate/route"
)

func init() {
	register("-bt", "ADDR...\tshow how each address would be routed, sending nothing (exit 2: one is undeliverable)", routeTest)
	register("-bh", "IP[.PORT]\tSMTP session on stdin/stdout as if from IP, decisions traced on stderr; nothing queued or logged", hostTest)
}

func routeTest(e *env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("give one or more addresses: %w", errUsage)
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r, err := newRouter(cfg, nil, nil)
	if err != nil {
		return err
	}
	if status := r.Test(ctx, e.stdout, e.args); status != route.TestOK {
		return exitError{status}
	}
	return nil
}

func hostTest(e *env) error {
	if len(e.args) != 1 {
		return fmt.Errorf("give one IP address: %w", errUsage)
	}
	peer, err := parseHostPort(e.args[0])
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	tr := gateway.NewTracer(e.stderr)
	pl, err := checks.Build(cfg, tr, route.New(checks.RouteOptions(cfg)), true)
	if err != nil {
		return err
	}
	defer pl.Close()
	hosts, err := newHostLookup(cfg, nil)
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Options{Config: cfg, Trace: tr, Pipeline: pl.Pipeline, HostLookup: hosts})
	if err != nil {
		return err
	}
	return gw.ServeTest(peer, e.stdin, e.stdout)
}

// parseHostPort reads Exim's -bh argument: an IP address, optionally
// followed by "." and the client's port ("192.0.2.1.4321", "2001:db8::1.4321").
func parseHostPort(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		return netip.AddrPortFrom(ip, 0), nil
	}
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		ip, err := netip.ParseAddr(s[:i])
		port, perr := strconv.ParseUint(s[i+1:], 10, 16)
		if err == nil && perr == nil && ip.Zone() == "" {
			return netip.AddrPortFrom(ip, uint16(port)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("-bh: invalid IP address %q (want IP or IP.PORT)", s)
}
