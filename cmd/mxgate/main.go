// Command mxgate is the mail-security gateway: `mxgate serve` runs it, the
// other subcommands and Exim-style flags administer it. This package only
// parses the command line and wires the packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// env is what a command gets: the config path (-config FILE anywhere on
// the command line, else $MXGATE_CONFIG, else "" for the embedded
// default), its own arguments and the standard streams.
type env struct {
	configPath     string
	args           []string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// command is one verb or Exim flag. help is its line in the usage text.
type command struct {
	help string
	run  func(e *env) error
}

// commands maps the first argument to its command; each file of this
// package registers its own from init, so adding one touches one file.
var commands = map[string]command{}

func register(name, help string, run func(e *env) error) {
	if _, dup := commands[name]; dup {
		panic("mxgate: command registered twice: " + name)
	}
	commands[name] = command{help: help, run: run}
}

// programAliases are Exim's: a link named mailq lists the queue, runq runs
// it, and sendmail submits a message unless its first argument is a
// command (`sendmail -bp` lists the queue, as Exim does).
var programAliases = map[string]string{"mailq": "-bp", "runq": "-q", "sendmail": "-bm"}

// errUsage marks a command-line mistake: usage is printed, exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line (argv including the program name) and
// returns the process exit status.
func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(argv, stdin, stdout, stderr)
	var ex exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ex):
		return ex.code
	case errors.Is(err, errUsage):
		if msg := strings.TrimSuffix(err.Error(), ": "+errUsage.Error()); msg != errUsage.Error() {
			fmt.Fprintf(stderr, "mxgate: %s\n", msg)
		}
		fmt.Fprint(stderr, usage())
		return 2
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage())
		return 0
	default:
		fmt.Fprintf(stderr, "mxgate: %v\n", err)
		return 1
	}
}

// exitError ends the process with code after the command has said what it
// had to (Exim's -bt exits 2 for an undeliverable address, say).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func dispatch(argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cl, err := parseCommandLine(argv)
	if err != nil {
		return err
	}
	e := &env{configPath: cl.configPath, args: cl.args, stdin: stdin, stdout: stdout, stderr: stderr}
	if e.configPath == "" {
		e.configPath = os.Getenv("MXGATE_CONFIG")
	}
	return commands[cl.name].run(e)
}

// commandLine is argv resolved: which registered command runs, with what.
type commandLine struct {
	configPath string // "" when -config was not given
	name       string // a key of commands
	args       []string
}

// parseCommandLine takes -config FILE out of argv wherever it stands,
// applies the program-name alias (mailq, runq, sendmail) and finds the
// command, one word or two ("config check").
func parseCommandLine(argv []string) (commandLine, error) {
	var cl commandLine
	var rest []string
	var alias string
	if len(argv) > 0 {
		alias = programAliases[filepath.Base(argv[0])]
		argv = argv[1:]
	}
	for i := 0; i < len(argv); i++ {
		switch a := argv[i]; {
		case a == "-config" || a == "--config":
			if i+1 >= len(argv) {
				return cl, fmt.Errorf("-config needs a FILE: %w", errUsage)
			}
			cl.configPath = argv[i+1]
			i++
		case strings.HasPrefix(a, "-config="), strings.HasPrefix(a, "--config="):
			cl.configPath = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	// An alias supplies the command only when none is given.
	if alias != "" {
		if _, isCommand := commands[first(rest)]; !isCommand {
			rest = append([]string{alias}, rest...)
		}
	}
	if len(rest) == 0 {
		return cl, errUsage
	}
	switch rest[0] {
	case "-h", "-help", "--help", "help":
		return cl, flag.ErrHelp
	}
	cl.name, cl.args = rest[0], rest[1:]
	if len(cl.args) > 0 {
		if _, ok := commands[cl.name+" "+cl.args[0]]; ok {
			cl.name, cl.args = cl.name+" "+cl.args[0], cl.args[1:]
			return cl, nil
		}
	}
	if _, ok := commands[cl.name]; !ok {
		return cl, fmt.Errorf("unknown command %q: %w", cl.name, errUsage)
	}
	return cl, nil
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: mxgate [-config FILE] COMMAND [ARGS]\n\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-28s %s\n", n+" "+strings.SplitN(commands[n].help, "\t", 2)[0], helpText(commands[n].help))
	}
	b.WriteString(`
-config FILE may appear anywhere; without it $MXGATE_CONFIG is used, and
without that the embedded default: listen 127.0.0.1:2525, accept mail for
localhost, deliver into a Maildir under ./var.
`)
	return b.String()
}

// helpText splits a help string "ARGS\tdescription" into its description.
func helpText(h string) string {
	if i := strings.IndexByte(h, '\t'); i >= 0 {
		return h[i+1:]
	}
	return h
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// noArgs refuses arguments for commands that take none.
func noArgs(e *env) error {
	if len(e.args) != 0 {
		return fmt.Errorf("unexpected argument %q: %w", e.args[0], errUsage)
	}
	return nil
}
