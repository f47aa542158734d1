package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cliTimeout bounds one admin command; -M and -qf deliver, so it covers a
// downstream transaction too.
const cliTimeout = 20 * time.Second

// cliResult is what an admin command printed and its exit status.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs `mxgate -config CFG ARGS...` beside the running daemon, on its
// config and so on its live spool.
func (g *mxgate) cli(args ...string) cliResult {
	g.t.Helper()
	return runBinary(g.t, append([]string{"-config", g.cfgPath}, args...)...)
}

// mustCLI runs an admin command that must succeed silently on stderr and
// returns its stdout.
func (g *mxgate) mustCLI(args ...string) string {
	g.t.Helper()
	r := g.cli(args...)
	if r.code != 0 || r.stderr != "" {
		g.t.Fatalf("mxgate %s: exit status %d, stderr %q, stdout %q; want status 0 and no stderr",
			strings.Join(args, " "), r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// runBinary runs the built mxgate with args, bounded by cliTimeout.
func runBinary(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runProgram(t, binary, args...)
}

// runProgram runs prog (the built mxgate, or a link to it under another
// name) with args, bounded by cliTimeout.
func runProgram(t *testing.T, prog string, args ...string) cliResult {
	t.Helper()
	return runWith(t, nil, prog, args...)
}

// runWith is runProgram with setup, when not nil, adding to the command
// (its stdin, its user) before it starts.
func runWith(t *testing.T, setup func(*exec.Cmd), prog string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	if setup != nil {
		setup(cmd)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %v; killed", prog, strings.Join(args, " "), cliTimeout)
	}
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running %s %s: %v", prog, strings.Join(args, " "), err)
	}
	return r
}

// requireCommand fails the test when the built binary does not know an
// admin command yet.
func requireCommand(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if !hasCommand(t, name) {
			t.Fatalf("mxgate has no %q command (mxgate -h does not list it)", name)
		}
	}
}

// hasCommand reports whether the built binary has an admin command: its
// usage text lists every registered one.
func hasCommand(t *testing.T, name string) bool {
	t.Helper()
	return strings.Contains(runBinary(t, "-h").stdout, "\n  "+name+" ")
}
