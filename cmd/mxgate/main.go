// Command mxgate is the mail-security gateway: `mxgate serve` runs it, the
// other subcommands and Exim-style flags administer it. This file only
// parses the command line and wires the packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// usage is printed for -h and for an unknown command.
const usage = `usage:
  mxgate serve [-config FILE]          run the gateway in the foreground
  mxgate config check [-config FILE]   validate and print the effective config
  mxgate -bV [-config FILE]            same as config check

Without -config the embedded default is used: listen 127.0.0.1:2525,
accept mail for localhost, deliver into a Maildir under ./var.
`

// errUsage marks a command-line mistake: usage is printed, exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprint(stderr, usage)
		return 2
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mxgate: %v\n", err)
		return 1
	}
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			return errUsage
		}
		return configCheck(args[2:], stdout, stderr)
	case "-bV":
		return configCheck(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		return flag.ErrHelp
	}
	return errUsage
}

// configFlag parses the flags every command shares: -config FILE.
func configFlag(name string, args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config `FILE` (default: the embedded default)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", errUsage
	}
	if fs.NArg() != 0 {
		return "", fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	return *path, nil
}
