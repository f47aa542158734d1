package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestParseCommandLine(t *testing.T) {
	tests := []struct {
		argv       []string
		name, conf string
		args       []string
		err        error
	}{
		{argv: []string{"mxgate", "serve"}, name: "serve"},
		{argv: []string{"mxgate", "-config", "a.toml", "serve"}, name: "serve", conf: "a.toml"},
		{argv: []string{"mxgate", "serve", "--config=b.toml"}, name: "serve", conf: "b.toml"},
		{argv: []string{"mxgate", "config", "check", "-config", "c.toml"}, name: "config check", conf: "c.toml"},
		{argv: []string{"mxgate", "-Mf", "1xWDX2-0Eipyi-Hh", "-config", "d"}, name: "-Mf", conf: "d", args: []string{"1xWDX2-0Eipyi-Hh"}},
		{argv: []string{"/usr/bin/mailq"}, name: "-bp"},
		{argv: []string{"mailq", "-bpc"}, name: "-bpc"},
		{argv: []string{"/usr/sbin/runq"}, name: "-q"},
		{argv: []string{"/usr/sbin/sendmail", "-i", "u@example.test"}, name: "-bm", args: []string{"-i", "u@example.test"}},
		{argv: []string{"sendmail", "-t"}, name: "-t"},
		{argv: []string{"sendmail", "-bp"}, name: "-bp"},
		{argv: []string{"sendmail"}, name: "-bm"},
		{argv: []string{"mxgate"}, err: errUsage},
		{argv: []string{"mxgate", "-config"}, err: errUsage},
		{argv: []string{"mxgate", "frobnicate"}, err: errUsage},
		{argv: []string{"mxgate", "config", "frob"}, err: errUsage},
		{argv: []string{"mxgate", "-h"}, err: errHelp},
		{argv: []string{"mxgate", "help"}, err: errHelp},
		{argv: []string{"mxgate", "help", "--help"}, err: errHelp},
		{argv: []string{"mxgate", "help", "config", "check"}, name: "config check", args: []string{"--help"}},
		{argv: []string{"mxgate", "mailq", "-config", "e"}, name: "mailq", conf: "e"},
		{argv: []string{"mxgate", "runq"}, name: "runq"},
		{argv: []string{"mxgate", "--version"}, name: "--version"},
	}
	for _, tt := range tests {
		cl, err := parseCommandLine(tt.argv)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%q: error %v, want %v", tt.argv, err, tt.err)
			}
			continue
		}
		if err != nil || cl.name != tt.name || cl.configPath != tt.conf || !slices.Equal(cl.args, tt.args) && len(cl.args)+len(tt.args) > 0 {
			t.Errorf("%q = %+v, %v; want name %q config %q args %q", tt.argv, cl, err, tt.name, tt.conf, tt.args)
		}
	}
}

// runArgs runs one command line and returns what it printed.
func runArgs(argv ...string) result {
	var out, errs bytes.Buffer
	code := run(argv, strings.NewReader(""), &out, &errs)
	return result{out.String(), errs.String(), code}
}

// Every command prints its own help on stdout, exit 0, however asked.
func TestCommandHelp(t *testing.T) {
	for _, c := range sortedCommands() {
		words := strings.Fields(c.name)
		want := result{c.help(), "", 0}
		asks := [][]string{
			append(append([]string{"mxgate"}, words...), "--help"),
			append([]string{"mxgate", "help"}, words...),
			append(append([]string{"mxgate", "-config", "/nonexistent.toml"}, words...), "--help"),
		}
		if c.name != "-bm" && c.name != "-t" {
			asks = append(asks, append(append([]string{"mxgate"}, words...), "-h"), append(append([]string{"mxgate"}, words...), "x", "-help"))
		}
		for _, argv := range asks {
			if got := runArgs(argv...); got != want {
				t.Errorf("%q: status %d, stdout %q, stderr %q; want status 0 and its help", argv, got.code, got.stdout, got.stderr)
			}
		}
		if !strings.HasPrefix(want.stdout, "usage: mxgate [-config FILE] "+c.synopsis()+"\n\n") {
			t.Errorf("%s --help starts %q", c.name, strings.SplitN(want.stdout, "\n", 2)[0])
		}
	}
}

func TestHelpText(t *testing.T) {
	got := runArgs("mxgate", "serve", "--help")
	want := `usage: mxgate [-config FILE] serve [-v]

Run the gateway in the foreground (SIGTERM drains, SIGHUP reloads, SIGUSR1 reopens logs).

Once its listeners are up, serve says on stderr where it listens (each
address and its kind, smtp or smtps), which config it read and where it
logs, and nothing else: the mainlog has the rest. Errors still go to
stderr, and so does the warning that reloads will be refused, when the
configured user may not read a file the config names.

flags:
  -v                   also print the version, pid, spool and pid file at start
`
	if got != (result{want, "", 0}) {
		t.Errorf("serve --help:\n%s\nstderr %q status %d; want:\n%s", got.stdout, got.stderr, got.code, want)
	}
	for _, argv := range [][]string{{"mxgate", "--help"}, {"mxgate", "help"}, {"mxgate", "-h"}} {
		got := runArgs(argv...)
		if got.code != 0 || got.stderr != "" || !strings.HasPrefix(got.stdout, "usage: mxgate [-config FILE] COMMAND [ARGS]\n") ||
			!strings.Contains(got.stdout, "\n  -Mg ID...                    give up: fail every undelivered recipient") ||
			strings.Contains(got.stdout, "--version") {
			t.Errorf("%q: status %d, stderr %q, stdout:\n%s", argv, got.code, got.stderr, got.stdout)
		}
	}
	// sendmail's -h is a hop count, not a request for help.
	if got := runArgs("mxgate", "-bm", "-h"); strings.HasPrefix(got.stdout, "usage:") {
		t.Errorf("-bm -h printed the help: %q", got.stdout)
	}
	want = "usage: mxgate [-config FILE] quarantine COMMAND [ARGS]\n\n" +
		"  quarantine delete ID...      delete messages from quarantine\n" +
		"  quarantine list              list quarantined messages: age, size, ID, sender, reason\n" +
		"  quarantine release ID...     move messages from quarantine into the queue and deliver them now\n" +
		"  quarantine show ID           show a quarantined message: its -H file, then its -D file\n"
	for _, argv := range [][]string{{"mxgate", "help", "quarantine"}, {"mxgate", "quarantine", "-h"}} {
		if got := runArgs(argv...); got != (result{want, "", 0}) {
			t.Errorf("%q = %+v, want the quarantine commands", argv, got)
		}
	}
	got = runArgs("mxgate", "help", "frobnicate")
	if got.code != 2 || !strings.HasPrefix(got.stderr, "mxgate: unknown command \"frobnicate\"\nusage:") {
		t.Errorf("help frobnicate: status %d, stderr %q", got.code, got.stderr)
	}
}

func TestVersion(t *testing.T) {
	saved := version
	version = "1.2.3"
	t.Cleanup(func() { version = saved })
	b := readBuildInfo()
	want := "mxgate 1.2.3\ncommit " + b.commit + "\n" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	for _, argv := range [][]string{{"mxgate", "version"}, {"mxgate", "--version"}} {
		if got := runArgs(argv...); got != (result{want, "", 0}) {
			t.Errorf("%q = %+v, want stdout %q", argv, got, want)
		}
	}
	q := newQueueTest(t)
	got := q.mxgate("mxgate", "-bV")
	head := "mxgate version 1.2.3 #" + b.commit + " built with " + b.goVersion + "\nConfiguration file is " + q.cfg + "\n# mxgate configuration (from " + q.cfg + "): OK\n"
	if got.code != 0 || got.stderr != "" || !strings.HasPrefix(got.stdout, head) {
		t.Errorf("-bV: status %d, stderr %q, stdout:\n%s\nwant it to start:\n%s", got.code, got.stderr, got.stdout, head)
	}
	got = runArgs("mxgate", "-bV", "-config", filepath.Join(t.TempDir(), "absent.toml"))
	if got.code != 1 || !strings.HasPrefix(got.stdout, "mxgate version 1.2.3 #") || !strings.Contains(got.stderr, "absent.toml") {
		t.Errorf("-bV of a missing config: %+v", got)
	}
}

// TestCommandUsageError: a command used wrongly prints what is wrong and
// its own synopsis, not the list of every command; exit status 2.
func TestCommandUsageError(t *testing.T) {
	got := runArgs("mxgate", "exinext")
	want := result{"", "mxgate: give one message ID, address or domain\nusage: mxgate [-config FILE] exinext ID|ADDR|DOMAIN\n(mxgate help exinext for more)\n", 2}
	if got != want {
		t.Errorf("mxgate exinext: %+v, want %+v", got, want)
	}
	if got := runArgs("mxgate", "reload", "--wait", "0"); got.code != 2 || !strings.HasPrefix(got.stderr, "mxgate: reload: --wait must be more than 0\nusage: mxgate [-config FILE] reload [--wait DURATION]\n") {
		t.Errorf("mxgate reload --wait 0: %+v, want a usage error, exit 2", got)
	}
	if got := runArgs("mxgate", "bogus"); got.code != 2 || !strings.Contains(got.stderr, "usage: mxgate [-config FILE] COMMAND [ARGS]\n") {
		t.Errorf("mxgate bogus: %+v, want the list of commands, exit 2", got)
	}
}
