package bench

import (
	"testing"

	"mxgate/config"
	"mxgate/gateway"
	"mxgate/mainlog"
	"mxgate/spool"
)

// newGateway builds the gateway under test from cfg, with every check the
// config turns on (here: two IP lists and one sender-domain list, the
// sender callout, spamd and clamd), listening on cfg.Listen.
//
// This is the only function of the benchmark that knows how the checks
// are wired, so the check-pipeline refactor (issue 10) changes this file
// and nothing else: today gateway.New builds every check from the config;
// after it, the wiring cmd/mxgate does (the configured checks into a
// pipeline, the pipeline into gateway.New) goes here. Whatever that wiring
// must release besides the gateway (the callout's cache, say) is released
// with tb.Cleanup; the caller only runs Serve and Shutdown.
func newGateway(tb testing.TB, cfg *config.Config, sp *spool.Spool, log *mainlog.Logger) *gateway.Server {
	tb.Helper()
	srv, err := gateway.New(gateway.Options{Config: cfg, Spool: sp, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}
