package main

import (
	"context"
	"errors"
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

// usageError is submit's command-line mistake as this program's: usage is
// printed, exit status 2.
type usageError struct{ error }

func (usageError) Is(target error) bool { return target == errUsage }

// submitMessage parses sendmail's flags, submits stdin, and delivers the
// message at once in this process unless -odq says to leave it to the
// queue runner.
func submitMessage(extract bool) func(e *env) error {
	return func(e *env) error {
		login, name := invoker()
		o := submit.Options{User: login, Name: name, ExtractRecipients: extract, DotEnds: true}
		queueOnly, err := submit.ParseArgs(e.args, &o)
		if errors.Is(err, submit.ErrUsage) {
			return usageError{err}
		}
		if err != nil {
			return err
		}

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
