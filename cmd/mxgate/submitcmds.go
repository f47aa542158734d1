package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"mxgate/spool"
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
// message (and the bounce about recipients it rejected) at once in this
// process unless -odq says to leave it to the queue runner. Each rejected
// recipient is a line on stderr; the exit status is 0 when the message was
// queued for the others, as Exim's is (see doc/contracts.md).
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
		// One router decides the recipients and delivers right after,
		// so the two cannot disagree.
		router, err := newRouter(cfg, log)
		if err != nil {
			return err
		}
		defer closeRouter(router, cfg)
		o.Config, o.Spool, o.Log = cfg, sp, log
		o.Accept = submit.Routable(router)

		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		m, err := submit.Submit(ctx, o, e.stdin)
		var all *submit.RejectedError
		switch {
		case errors.As(err, &all):
			printRejected(e.stderr, all.Rejected)
			return err
		case m == nil:
			return err
		}
		printRejected(e.stderr, m.Rejected)
		if queueOnly {
			return err
		}
		for _, id := range []spool.ID{m.ID, m.Bounce} {
			if id == "" {
				continue
			}
			attemptNow(ctx, newRunner(cfg, sp, log, router), id)
		}
		// The message is queued; err is a bounce that could not be.
		return err
	}
}

// printRejected reports each rejected recipient on stderr, as sendmail
// does.
func printRejected(w io.Writer, rejected []submit.Rejection) {
	for _, r := range rejected {
		fmt.Fprintf(w, "mxgate: %s\n", r)
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
