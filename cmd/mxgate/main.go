// Command mxgate is the mail-security gateway: `mxgate serve` runs it, the
// other subcommands and Exim-style flags administer it. This package only
// parses the command line and wires the packages together.
package main

import (
	"errors"
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

// command is one verb or Exim flag, and everything said about it: the
// usage list, its --help, the man page and the bash completion are all
// made from this, so they cannot disagree.
type command struct {
	name    string
	args    string // "ID...", "[ADDR...]": the synopsis after the name
	summary string // one line, for the usage list
	doc     string // paragraphs (blank-line separated) for --help and the man page
	flags   []flagDoc
	// examples are command lines with what they do, "mxgate -Mg ID\tbounce it".
	examples []string
	hidden   bool // left out of the usage list; still in the man page
	run      func(e *env) error
}

// flagDoc is one flag a command takes.
type flagDoc struct{ name, arg, help string }

// commands maps the first argument to its command; each file of this
// package registers its own from init, so adding one touches one file.
var commands = map[string]*command{}

// register adds a command. help is "ARGS\tone-line summary"; opts add the
// longer description, flags and examples (withDoc, withFlag, withExample,
// hidden).
func register(name, help string, run func(e *env) error, opts ...func(*command)) {
	if _, dup := commands[name]; dup {
		panic("mxgate: command registered twice: " + name)
	}
	c := &command{name: name, run: run}
	c.args, c.summary, _ = strings.Cut(help, "\t")
	if !strings.Contains(help, "\t") {
		c.args, c.summary = "", help
	}
	for _, o := range opts {
		o(c)
	}
	commands[name] = c
}

// withDoc sets a command's longer description: paragraphs separated by blank
// lines, without the summary.
func withDoc(text string) func(*command) { return func(c *command) { c.doc = strings.TrimSpace(text) } }

// withFlag documents one of a command's flags; arg names its value ("" for none).
func withFlag(name, arg, help string) func(*command) {
	return func(c *command) { c.flags = append(c.flags, flagDoc{name, arg, help}) }
}

// withExample adds "COMMAND LINE\twhat it does".
func withExample(line string) func(*command) {
	return func(c *command) { c.examples = append(c.examples, line) }
}

// hidden leaves a command out of the usage list (an alias of another).
func hidden(c *command) { c.hidden = true }

// programAliases are Exim's: a link named mailq lists the queue, runq runs
// it, and sendmail submits a message unless its first argument is a
// command (`sendmail -bp` lists the queue, as Exim does).
var programAliases = map[string]string{"mailq": "-bp", "runq": "-q", "sendmail": "-bm"}

// errUsage marks a command-line mistake: usage is printed, exit status 2.
var errUsage = errors.New("usage")

// errHelp asks for the usage on stdout, exit status 0 (mxgate --help).
var errHelp = errors.New("help requested")

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line (argv including the program name) and
// returns the process exit status.
func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(argv, stdin, stdout, stderr)
	var ex exitError
	var help helpOutput
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		fmt.Fprint(stdout, help)
		return 0
	case errors.As(err, &ex):
		return ex.code
	case errors.Is(err, errUsage):
		if msg := strings.TrimSuffix(err.Error(), ": "+errUsage.Error()); msg != errUsage.Error() {
			fmt.Fprintf(stderr, "mxgate: %s\n", msg)
		}
		var cu commandUsage
		if errors.As(err, &cu) {
			fmt.Fprintf(stderr, "usage: mxgate [-config FILE] %s\n(mxgate help %s for more)\n", cu.c.synopsis(), cu.c.name)
			return 2
		}
		fmt.Fprint(stderr, usage())
		return 2
	case errors.Is(err, errHelp):
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
	c := commands[cl.name]
	if wantsHelp(c, cl.args) {
		fmt.Fprint(stdout, c.help())
		return nil
	}
	err = c.run(e)
	if errors.Is(err, errUsage) {
		return commandUsage{err: err, c: c}
	}
	return err
}

// commandUsage is a command's own usage error: its synopsis is printed,
// not the list of every command.
type commandUsage struct {
	err error
	c   *command
}

func (u commandUsage) Error() string { return u.err.Error() }
func (u commandUsage) Unwrap() error { return u.err }

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
	case "-h", "-help", "--help":
		return cl, errHelp
	case "help":
		// help COMMAND is COMMAND --help; help --help is help.
		if len(rest) == 1 || helpFlags[rest[1]] {
			return cl, errHelp
		}
		rest = append(rest[1:], "--help")
	}
	cl.name, cl.args = rest[0], rest[1:]
	if len(cl.args) > 0 {
		if _, ok := commands[cl.name+" "+cl.args[0]]; ok {
			cl.name, cl.args = cl.name+" "+cl.args[0], cl.args[1:]
			return cl, nil
		}
	}
	if _, ok := commands[cl.name]; !ok {
		if g := groupUsage(cl.name); g != "" && len(cl.args) > 0 && helpFlags[cl.args[len(cl.args)-1]] {
			return cl, helpOutput(g)
		}
		return cl, fmt.Errorf("unknown command %q: %w", cl.name, errUsage)
	}
	return cl, nil
}

// helpOutput is help asked of a group of commands (mxgate quarantine
// --help): printed on stdout, exit status 0.
type helpOutput string

func (h helpOutput) Error() string { return string(h) }

// groupUsage lists the commands whose first word is word; "" when none.
func groupUsage(word string) string {
	var b strings.Builder
	for _, c := range sortedCommands() {
		if strings.HasPrefix(c.name, word+" ") {
			fmt.Fprintf(&b, "  %-28s %s\n", c.synopsis(), c.summary)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "usage: mxgate [-config FILE] " + word + " COMMAND [ARGS]\n\n" + b.String()
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: mxgate [-config FILE] COMMAND [ARGS]\n\n")
	for _, c := range sortedCommands() {
		switch syn := c.synopsis(); {
		case c.hidden:
		case len(syn) > 28:
			fmt.Fprintf(&b, "  %s\n  %-28s %s\n", syn, "", c.summary)
		default:
			fmt.Fprintf(&b, "  %-28s %s\n", syn, c.summary)
		}
	}
	if systemConfig != "" {
		fmt.Fprintf(&b, "\n-config FILE may appear anywhere; without it $MXGATE_CONFIG is used, and\nwithout that %s.\n", systemConfig)
	} else {
		b.WriteString(`
-config FILE may appear anywhere; without it $MXGATE_CONFIG is used, and
without that the embedded default: listen 127.0.0.1:2525, accept mail for
localhost, deliver into a Maildir under ./var.
`)
	}
	b.WriteString("mxgate help COMMAND (or COMMAND --help) describes one command.\n")
	return b.String()
}

// sortedCommands is every command in name order, words before flags.
func sortedCommands() []*command {
	cs := make([]*command, 0, len(commands))
	for _, c := range commands {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i].name, cs[j].name
		if da, db := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-"); da != db {
			return db
		}
		return a < b
	})
	return cs
}

// synopsis is the command with its arguments: "-Mar ID ADDR...".
func (c *command) synopsis() string {
	if c.args == "" {
		return c.name
	}
	return c.name + " " + c.args
}

// helpFlags are the words that ask a command for its help.
var helpFlags = map[string]bool{"-h": true, "-help": true, "--help": true}

// wantsHelp reports whether args ask for c's help. Submission takes only
// --help: sendmail's -h is a hop count that scripts still pass.
func wantsHelp(c *command, args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--help" || helpFlags[a] && c.name != "-bm" && c.name != "-t" {
			return true
		}
	}
	return false
}

// help is a command's --help: its synopsis, summary, description, flags
// and examples.
func (c *command) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: mxgate [-config FILE] %s\n\n%s\n", c.synopsis(), sentence(c.summary))
	if c.doc != "" {
		fmt.Fprintf(&b, "\n%s\n", c.doc)
	}
	if len(c.flags) > 0 {
		b.WriteString("\nflags:\n")
		for _, f := range c.flags {
			fmt.Fprintf(&b, "  %-20s %s\n", strings.TrimSpace(f.name+" "+f.arg), f.help)
		}
	}
	if len(c.examples) > 0 {
		b.WriteString("\nexamples:\n")
		for _, ex := range c.examples {
			line, what, _ := strings.Cut(ex, "\t")
			fmt.Fprintf(&b, "  %s\n      %s\n", line, what)
		}
	}
	return b.String()
}

// sentence capitalises a summary and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	if s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
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
