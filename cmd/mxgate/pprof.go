package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv names the profiling switch: MXGATE_PPROF=127.0.0.1:6060 makes
// `mxgate serve` answer net/http/pprof's /debug/pprof/ on that address
// (scripts/load.sh takes its CPU and allocation profiles there). It is an
// environment variable, not a config key: a tool for a benchmark run, never
// part of a deployment's configuration.
const pprofEnv = "MXGATE_PPROF"

// startPprof serves the profiles on addr, which must be a loopback
// address: the profiles show the mail passing through, and nothing guards
// them. The listener lives as long as the process.
func startPprof(addr string) (net.Addr, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", pprofEnv, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s=%q: %w", pprofEnv, addr, errNotLoopback)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pprofEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.Serve(l, mux) }()
	return l.Addr(), nil
}

var errNotLoopback = errors.New("not a loopback IP address: the profiles are served to loopback only")

// pprofFromEnv starts the profile server when MXGATE_PPROF is set.
func pprofFromEnv() (net.Addr, error) {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return nil, nil
	}
	return startPprof(addr)
}
