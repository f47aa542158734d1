package bench

import (
	"testing"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/gateway"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/spool"
)

// newGateway builds the gateway under test from cfg, with every check the
// config turns on (here: two IP lists and one sender-domain list, the
// sender callout, spamd and clamd), listening on cfg.Listen: the checks
// wired into a pipeline as cmd/mxgate does, the pipeline into the
// gateway. This is the only function of the benchmark that knows how.
func newGateway(tb testing.TB, cfg *config.Config, sp *spool.Spool, log *mainlog.Logger) *gateway.Server {
	tb.Helper()
	pl, err := checks.Build(cfg, log, route.New(checks.RouteOptions(cfg)), false)
	if err != nil {
		tb.Fatal(err)
	}
	// Cleanups run last in, first out: after the caller's Shutdown.
	tb.Cleanup(func() { pl.Close() })
	srv, err := gateway.New(gateway.Options{Config: cfg, Spool: sp, Log: log, Pipeline: pl.Pipeline})
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}
