package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"mxgate/config"
	"mxgate/event"
	"mxgate/localsubmit"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/route"
	"mxgate/spool"
	"mxgate/submit"
)

func init() {
	register("-bm", "[-t] [-i] [-f ADDR] [-F NAME] [-odi|-odq] [RCPT...]\tsendmail: submit the message on stdin and deliver it now", submitMessage("-bm"))
	register("-t", "[-i] [-f ADDR] [-F NAME] [-odi|-odq] [RCPT...]\tsendmail -t: recipients from To:, Cc:, Bcc: (Bcc: removed), minus RCPTs", submitMessage("-t"))
}

// usageError is submit's command-line mistake as this program's: usage is
// printed, exit status 2.
type usageError struct{ error }

func (usageError) Is(target error) bool { return target == errUsage }

// submitMessage parses sendmail's flags, submits stdin, and delivers the
// message (and the bounce about recipients it rejected) at once unless
// -odq says to leave it to the queue runner. A running daemon does it,
// through its socket, as the calling user: so no user, root included,
// ever writes the daemon's spool. Without a daemon this process does it,
// when the caller may write the spool. Each rejected recipient is a line
// on stderr; the exit status is 0 when the message was queued for the
// others, as Exim's is (see doc/contracts.md).
func submitMessage(command string) func(e *env) error {
	return func(e *env) error {
		login, name := invoker()
		o := submit.Options{User: login, Name: name, ExtractRecipients: command == "-t", DotEnds: true}
		queueOnly, err := submit.ParseArgs(e.args, &o)
		if errors.Is(err, submit.ErrUsage) {
			return usageError{err}
		}
		if err != nil {
			return err
		}
		// Through the daemon, the config only says where its socket is:
		// the files it names (TLS and DKIM keys) may be the daemon's alone.
		cfg, err := loadClientConfig(e.configPath)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()

		sock := submitSocket(cfg)
		status, err := localsubmit.Submit(ctx, sock, append([]string{command}, e.args...), e.stdin, e.stderr)
		switch {
		case err == nil && status == 0:
			return nil
		case err == nil:
			return exitError{status}
		case !errors.Is(err, localsubmit.ErrNoDaemon):
			return err
		}

		// Without a daemon this process delivers: all of the config, read
		// before openSpool makes root the config's user. A user the spool
		// refuses hears that, rather than which key it may not read.
		full, loadErr := loadConfig(e.configPath)
		if loadErr == nil {
			cfg = full
		}
		log, sp, bus, err := openSpool(cfg)
		var denied *spoolDenied
		if errors.As(err, &denied) {
			return fmt.Errorf("no mxgate daemon answers on %s, and %w", sock, err)
		}
		if err != nil {
			return err
		}
		defer log.Close()
		defer sp.Close()
		defer bus.Close()
		if loadErr != nil {
			return loadErr
		}
		// One router decides the recipients and delivers right after,
		// so the two cannot disagree.
		router, err := newRouter(cfg, log, bus)
		if err != nil {
			return err
		}
		defer closeRouter(router, cfg)
		deliverNow := func(id spool.ID) { attemptNow(ctx, newRunner(cfg, sp, log, router, bus), id) }
		o.Bus = bus
		return submitAndReport(ctx, o, cfg, sp, log, router, queueOnly, e.stdin, e.stderr, deliverNow)
	}
}

// submitAndReport submits the message on in with o, reports each rejected
// recipient on stderr, and hands the message and its bounce to deliver
// unless queueOnly. The error is the command's.
func submitAndReport(ctx context.Context, o submit.Options, cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, router *route.Router,
	queueOnly bool, in io.Reader, stderr io.Writer, deliver func(spool.ID)) error {
	o.Config, o.Spool, o.Log = cfg, sp, log
	o.Accept = submit.Routable(router)
	m, err := submit.Submit(ctx, o, in)
	var all *submit.RejectedError
	switch {
	case errors.As(err, &all):
		printRejected(stderr, all.Rejected)
		return err
	case m == nil:
		return err
	}
	printRejected(stderr, m.Rejected)
	if queueOnly {
		return err
	}
	for _, id := range []spool.ID{m.ID, m.Bounce} {
		if id != "" {
			deliver(id)
		}
	}
	// The message is queued; err is a bounce that could not be.
	return err
}

// submitHandler is the daemon's side of the submission socket: the
// submission `sendmail` would have made in the caller's own process, as
// the user the kernel named, handed to the daemon's runner. It answers
// with what sendmail prints on stderr and its exit status.
func submitHandler(serving func() (*config.Config, *route.Router), sp *spool.Spool, log *mainlog.Logger, runner *queue.Runner, bus *event.Bus) localsubmit.Handler {
	return func(ctx context.Context, req *localsubmit.Request) ([]string, int) {
		// The config serving now: a submission after a reload follows it,
		// as a new SMTP session does.
		cfg, router := serving()
		var stderr bytes.Buffer
		err := func() error {
			if len(req.Args) == 0 || (req.Args[0] != "-bm" && req.Args[0] != "-t") {
				return fmt.Errorf("the socket takes -bm or -t, not %q: %w", first(req.Args), errUsage)
			}
			o := submit.Options{User: req.Caller.Login, Name: req.Caller.Name, ExtractRecipients: req.Args[0] == "-t", DotEnds: true, Bus: bus}
			queueOnly, err := submit.ParseArgs(req.Args[1:], &o)
			if errors.Is(err, submit.ErrUsage) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			return submitAndReport(ctx, o, cfg, sp, log, router, queueOnly, req.Message, &stderr, runner.Enqueue)
		}()
		status := 0
		var ex exitError
		switch {
		case err == nil:
		case errors.As(err, &ex):
			status = ex.code
		case errors.Is(err, errUsage):
			fmt.Fprintf(&stderr, "mxgate: %s\n", strings.TrimSuffix(err.Error(), ": "+errUsage.Error()))
			status = 2
		default:
			fmt.Fprintf(&stderr, "mxgate: %v\n", err)
			status = 1
		}
		var lines []string
		if s := strings.TrimSuffix(stderr.String(), "\n"); s != "" {
			lines = strings.Split(s, "\n")
		}
		return lines, status
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
