package main

import (
	"context"
	"fmt"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"mxgate/submit"
)

func init() {
	register("-bm", "[-t] [-i] [-f ADDR] [-F NAME] [-odi|-odq] [RCPT...]\tsendmail: submit the message on stdin and deliver it now", submitMessage(false))
	register("-t", "[-i] [-f ADDR] [-F NAME] [-odi|-odq] [RCPT...]\tsendmail -t: recipients from To:, Cc:, Bcc: (Bcc: removed), minus RCPTs", submitMessage(true))
}

// submitMessage parses sendmail's flags, submits stdin, and delivers the
// message at once in this process unless -odq says to leave it to the
// queue runner.
func submitMessage(extract bool) func(e *env) error {
	return func(e *env) error {
		login, name := invoker()
		o := submit.Options{User: login, Name: name, ExtractRecipients: extract, DotEnds: true}
		queueOnly := false
		args := e.args
		for len(args) > 0 {
			a := args[0]
			if a == "--" {
				args = args[1:]
				break
			}
			if !strings.HasPrefix(a, "-") || a == "-" {
				break
			}
			args = args[1:]
			// value returns the argument of -f/-F: joined ("-fme@x") or next.
			value := func() (string, error) {
				if len(a) > 2 {
					return a[2:], nil
				}
				if len(args) == 0 {
					return "", fmt.Errorf("%s needs an argument: %w", a, errUsage)
				}
				v := args[0]
				args = args[1:]
				return v, nil
			}
			var err error
			switch {
			case a == "-bm":
			case a == "-t":
				o.ExtractRecipients = true
			case a == "-i", a == "-oi":
				o.DotEnds = false
			case a == "-ti", a == "-it":
				o.ExtractRecipients, o.DotEnds = true, false
			case strings.HasPrefix(a, "-f"), strings.HasPrefix(a, "-r"):
				// -r is sendmail's old spelling of -f.
				if o.Sender, err = value(); err == nil && o.Sender == "" {
					o.Sender = "<>"
				}
			case strings.HasPrefix(a, "-F"):
				o.Name, err = value()
			case a == "-odi", a == "-odf", a == "-odb":
				queueOnly = false
			case a == "-odq", a == "-odqs":
				queueOnly = true
			case len(a) == 4 && strings.HasPrefix(a, "-oe"):
				// Error modes (mutt passes -oem): errors always go to
				// stderr and the exit status, which is -oem's behaviour.
			default:
				return fmt.Errorf("unknown option %q for submission: %w", a, errUsage)
			}
			if err != nil {
				return err
			}
		}
		o.Recipients = args

		cfg, err := loadConfig(e.configPath)
		if err != nil {
			return err
		}
		log, sp, err := openSpool(cfg)
		if err != nil {
			return err
		}
		defer log.Close()
		defer sp.Close()
		o.Config, o.Spool, o.Log = cfg, sp, log

		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		m, err := submit.Submit(ctx, o, e.stdin)
		if err != nil || queueOnly {
			return err
		}
		return attemptNow(ctx, cfg, sp, log, m.ID)
	}
}

// invoker is the calling user's login name and full name (the GECOS
// field up to its first comma).
func invoker() (login, name string) {
	login = userName()
	if u, err := user.Current(); err == nil {
		name, _, _ = strings.Cut(u.Name, ",")
		if name == login {
			name = ""
		}
	}
	return login, name
}
