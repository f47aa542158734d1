package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"mxgate/config"
	"mxgate/probe"
)

func init() {
	register("config check", "[--probe]\tvalidate the config, load its TLS files and print the effective configuration", configCheck,
		withDoc(`Loads the configuration as serve does (the embedded default without
-config or $MXGATE_CONFIG), TLS certificates and keys included, and prints
the effective configuration: every default filled in, sizes and durations
in the units the file wrote them. Errors name FILE:LINE and exit 1;
warnings (a CIDR with host bits set, a certificate expiring within 14
days) go to stderr as FILE:LINE: warning: ... and leave the status 0.`),
		withFlag("--probe", "", "connect to every peer the configuration names (spamd, clamd, milters, resolvers, DNS lists, stores, smarthost, Dovecot userdb sockets) and print one line each instead; exit 1 when a required peer does not answer"),
		withExample("mxgate -config /etc/mxgate/mxgate.toml config check --probe\tis every peer up?"))
}

// configCheck loads the config as serve would. Its warnings go to stderr
// as "FILE:LINE: warning: ..." and do not change the exit status. Without
// --probe it prints the effective configuration on stdout, what each
// certificate says first, as TOML comments; with --probe one line per peer
// instead, exit status 1 when a required peer does not answer.
func configCheck(e *env) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	probing := fs.Bool("probe", false, "")
	if err := fs.Parse(e.args); err != nil {
		return fmt.Errorf("config check: %v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(e.stderr, w)
	}
	src := "embedded default"
	if cfg.File != "" {
		src = cfg.File
	}
	fmt.Fprintf(e.stdout, "# mxgate configuration (from %s): OK\n", src)
	if *probing {
		results := probe.Run(context.Background(), probe.Plan(cfg))
		for _, r := range results {
			fmt.Fprintln(e.stdout, r)
		}
		if probe.Failed(results) {
			return exitError{1}
		}
		return nil
	}
	for _, f := range cfg.TLSFiles() {
		// Load read them a moment ago; a file replaced since is an error.
		info, err := config.ReadCertificate(f.Cert, f.Key)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "# %s: %s for %s, expires %s\n", f.Section, f.Cert,
			strings.Join(info.Names, ", "), info.NotAfter.UTC().Format(time.DateOnly))
	}
	fmt.Fprint(e.stdout, cfg.String())
	return nil
}
