package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// eximBaseDir is where scripts/install-test-deps.sh unpacks Debian's
// exim4-base (eximstats, exigrep) without installing it: installing Exim
// would remove Postfix, whose smtp-sink the tests use.
const eximBaseDir = "/opt/mxgate-test/exim4-base"

// eximTool returns the path of the exim4-base Perl script name, failing
// the test when it has not been unpacked.
func eximTool(t *testing.T, name string) string {
	t.Helper()
	requirePrograms(t, "perl")
	p := filepath.Join(eximBaseDir, "usr", "sbin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s (Debian exim4-base) is missing: run scripts/install-test-deps.sh (as root) first: %v", name, err)
	}
	return p
}

// runPerl runs one exim4-base script, bounded by cliTimeout, and returns
// its stdout; anything on stderr fails the test, because eximstats warns
// there about lines it cannot parse.
func runPerl(t *testing.T, tool string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "perl", append([]string{eximTool(t, tool)}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\nstderr:\n%s\nstdout:\n%s", tool, strings.Join(args, " "), err, stderr.String(), out)
	}
	return string(out)
}

// grandTotal is the message counts of eximstats' "Grand total summary".
type grandTotal struct {
	Received, Delivered, Rejects, TempRejects int
	Delayed, Failed                           int // received messages with at least one such address
}

// eximstats runs `eximstats -txt` on a log file and returns its grand
// totals, with the whole report for failure messages.
func eximstats(t *testing.T, logFile string) (grandTotal, string) {
	t.Helper()
	report := runPerl(t, "eximstats", "-txt", logFile)
	var g grandTotal
	_, summary, ok := strings.Cut(report, "Grand total summary\n")
	if !ok {
		t.Fatalf("eximstats report has no Grand total summary:\n%s", report)
	}
	summary, _, _ = strings.Cut(summary, "\n\n")
	num := func(row, field string) int {
		n, err := strconv.Atoi(field)
		if err != nil {
			t.Fatalf("eximstats Grand total row %q: %q is not a count:\n%s", row, field, report)
		}
		return n
	}
	for _, line := range strings.Split(summary, "\n") {
		f := strings.Fields(line)
		switch {
		// Received: Volume Messages Hosts Delayed % Failed %
		case len(f) == 8 && f[0] == "Received":
			g.Received, g.Delayed, g.Failed = num(line, f[2]), num(line, f[4]), num(line, f[6])
		// Delivered: Volume Messages Addresses Hosts
		case len(f) == 5 && f[0] == "Delivered":
			g.Delivered = num(line, f[2])
		// Rejects and Temp Rejects: Messages Hosts
		case len(f) == 3 && f[0] == "Rejects":
			g.Rejects = num(line, f[1])
		case len(f) == 4 && f[0] == "Temp" && f[1] == "Rejects":
			g.TempRejects = num(line, f[2])
		}
	}
	return g, report
}

// exigrep runs `exigrep ARGS...` and returns the log lines it printed,
// without its "+++ ID has not completed +++" notes and the blank lines
// between messages.
func exigrep(t *testing.T, args ...string) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(runPerl(t, "exigrep", args...), "\n") {
		if l == "" || strings.HasPrefix(l, "+++ ") {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}
