package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/gateway"
	"mxgate/policysrv"
	"mxgate/route"
)

// policyTest is `mxgate policy -bh`: Postfix's policy requests read from
// stdin, each answered on stdout as the policy server would, and every
// check's decision traced on stderr (">>> " lines, "LOG: " for what
// would be logged), as -bh does for an SMTP session. Nothing is logged
// or counted: the rate limits and greylisting count in memory only.
func policyTest(e *env, cfg *config.Config) error {
	tr := gateway.NewTracer(e.stderr)
	pl, err := checks.BuildPolicyTest(cfg, tr, route.New(checks.RouteOptions(cfg)))
	if err != nil {
		return err
	}
	defer pl.Close()
	srv := policysrv.New(policysrv.Options{
		Pipeline:           func() *filters.Pipeline { return pl.Pipeline },
		Log:                tr,
		Trace:              tr.Trace,
		DryRun:             cfg.PolicyServer.DryRun,
		Timeout:            time.Duration(cfg.PolicyServer.Timeout),
		TransactionTimeout: time.Duration(cfg.PolicyServer.TransactionTimeout),
	})
	defer srv.Close()
	r := policysrv.NewReader(e.stdin)
	for {
		req, err := policysrv.ReadRequest(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		fmt.Fprintf(e.stdout, "action=%s\n\n", srv.Answer(req))
	}
}
