package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mxgate/admin"
	"mxgate/config"
	"mxgate/queue"
	"mxgate/spool"
)

func init() {
	register("-bp", "[ID...]\tlist the queue (Exim format; also mailq)", listQueue(false),
		withDoc(`Each message: its age on the queue, its size, its ID, its sender and
"*** frozen ***" when it is frozen; then its recipients, "D" before those
delivered (or failed for good), and a blank line. The layout is Exim
4.96's byte for byte, so exiqgrep, exiqsumm and other scripts read it.
With IDs, only those messages.`),
		withExample("mxgate -bp\tthe whole queue"),
		withExample("mxgate -bp | exiqsumm\tcount, volume and ages per domain"))
	register("mailq", "[ID...]\tsame as -bp", listQueue(false))
	register("-bpa", "[ID...]\tsame as -bp: Exim adds generated addresses (+D), and mxgate generates none", listQueue(false))
	register("-bpi", "\tlist the message IDs only, one a line, in arrival order", listIDs)
	register("-bpr", "[ID...]\tsame as -bp (Exim does not sort it; arrival order costs mxgate nothing extra)", listQueue(false))
	register("-bpu", "[ID...]\tlist the queue, undelivered recipients only", listQueue(true))
	register("-bpru", "[ID...]\tsame as -bpu", listQueue(true))
	register("-bpc", "\tcount the messages in the queue", countQueue)
	register("-Mvl", "ID\tshow the message's log", viewFile(spool.MsglogFile))
	register("-Mvh", "ID\tshow the message's -H (envelope and headers) file", viewFile(spool.HeaderFile))
	register("-Mvb", "ID\tshow the message's -D (body) file", viewFile(spool.DataFile))
	register("-Mrm", "ID...\tremove messages, without bouncing them", eachMessage((*admin.Queue).Remove))
	register("-Mf", "ID...\tfreeze messages", eachMessage((*admin.Queue).Freeze))
	register("-Mt", "ID...\tthaw messages", eachMessage((*admin.Queue).Thaw))
	register("-M", "ID...\tdeliver messages now, thawing frozen ones, ignoring retry times", deliverNow)
	register("-q", "\trun the queue once: the messages due for a retry", runQueue(false, false))
	register("runq", "\tsame as -q", runQueue(false, false))
	register("-qf", "\trun the queue once: every message not frozen, ignoring retry times", runQueue(true, false))
	register("-qff", "\trun the queue once: every message, frozen ones too", runQueue(true, true))
	register("-Mg", "ID...\tgive up: fail every undelivered recipient and bounce the message to its sender", giveUp,
		withDoc(`As Exim's: the mainlog says "cancelled by USER" and "** ADDR: delivery
cancelled by administrator" for each undelivered recipient; one bounce
(RFC 3464, like the queue's) tells the sender, and is delivered at once;
then "Completed" and the message is gone. A bounce that is given up is
discarded, not bounced. A frozen message is given up like any other; one
another process is delivering is refused ("Message ID is locked").`),
		withExample("mxgate -Mg 1tXyZa-000AbC-Qr\tbounce it to its sender now"))
	register("-Mar", "ID ADDR...\tadd recipients to a message", addRecipients,
		withDoc(`Each address is logged "recipient <ADDR> added by USER" and the -H file
rewritten once, under the message's lock, as Exim does; the next delivery
attempt includes them. A malformed address, or one already a recipient,
is refused and nothing changes.`))
	register("-Mes", "ID ADDR\tedit the envelope sender of a message (<> makes it a bounce)", editSender,
		withDoc(`Logged as Exim logs it: "sender address changed to <ADDR> by USER". The
-H file is rewritten under the message's lock.`))
	for _, name := range []string{"-R", "-qR"} {
		register(name, "STRING\tdeliver now the messages with an undelivered recipient containing STRING", deliverMatching,
			withDoc(`STRING is matched as Exim matches it: a substring of the address, in
any case, so "-R example.com" also selects user@sub.example.com and
user@example.community. Each message selected that is not frozen gets a
delivery attempt now, whatever its retry time. Exim forces only the first
and lets its per-host retry data decide the others; mxgate keeps retry
times per message, so it forces each one.`),
			withExample("mxgate "+name+" @example.com\tdeliver what waits for example.com"))
	}
	register("exinext", "ID|ADDR|DOMAIN\tshow the retry times of deferred recipients", exinext,
		withDoc(`Like Exim's exinext, for each deferred recipient of the message, or
equal to the address, or in the domain: the last error (the msglog's
"==" line), when its message first failed, when it was last tried and
when it is tried next. Prints "No retry information for X" and exits 1
when nothing matches.`),
		withExample("mxgate exinext example.com\twhat waits for example.com and why"))
}

// clock is the time the listing measures ages against; tests pin it.
var clock = time.Now

// withQueue runs an admin command on the spool and logs of the
// configured gateway, and releases them when it returns. The config is
// loaded without the files it names (TLS and DKIM keys): listing and
// editing the queue needs none, so a user the spool refuses hears that,
// not that a key is unreadable.
func withQueue(e *env, run func(q *admin.Queue, cfg *config.Config) error) error {
	return queueWith(e, loadClientConfig, run)
}

// withDeliveringQueue is withQueue for the commands that also deliver
// (-M, -q, -Mg, -R): their transports need every file the config names
// (a smarthost's password, a CA file), read before openSpool switches
// root to the daemon's user, who may not read them.
func withDeliveringQueue(e *env, run func(q *admin.Queue, cfg *config.Config) error) error {
	return queueWith(e, loadConfig, run)
}

func queueWith(e *env, load func(string) (*config.Config, error), run func(q *admin.Queue, cfg *config.Config) error) error {
	cfg, err := load(e.configPath)
	if err != nil {
		return err
	}
	log, sp, bus, err := openSpool(cfg)
	if err != nil {
		return err
	}
	defer log.Close()
	defer sp.Close()
	defer bus.Close()
	return run(&admin.Queue{
		Spool:    sp,
		Log:      log,
		User:     userName(),
		Hostname: cfg.Hostname,
		Now:      clock,
		Bus:      bus,
	}, cfg)
}

// userName is who the mainlog says acted: the login name, or "uid N" as
// Exim writes when the uid has no passwd entry.
func userName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

// failures reports each failed message on its own line, Exim's refusals
// on stdout and everything else as "mxgate: ..." on stderr; any failure
// makes the exit status 1.
type failures struct {
	e      *env
	failed bool
}

func (f *failures) add(err error) {
	f.failed = true
	var ref *admin.Refusal
	if errors.As(err, &ref) {
		fmt.Fprintln(f.e.stdout, ref.Error())
		return
	}
	fmt.Fprintf(f.e.stderr, "mxgate: %v\n", err)
}

func (f *failures) result() error {
	if f.failed {
		return exitError{1}
	}
	return nil
}

func listQueue(undelivered bool) func(e *env) error {
	return func(e *env) error {
		return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
			if len(e.args) == 0 {
				if err := q.List(e.stdout, undelivered); err != nil {
					return err
				}
				// After the listing, which sets aside what it finds corrupt;
				// on stderr, as -bp's output is Exim's.
				if note, err := q.CorruptNote(); note != "" {
					fmt.Fprintln(e.stderr, "mxgate: "+note)
				} else if err != nil {
					return err
				}
				return nil
			}
			f := failures{e: e}
			for _, arg := range e.args {
				if err := q.ListMessage(e.stdout, arg, undelivered); err != nil {
					f.add(err)
				}
			}
			return f.result()
		})
	}
}

func countQueue(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		n, err := q.Count()
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, n)
		return nil
	})
}

func viewFile(which spool.File) func(e *env) error {
	return func(e *env) error {
		if len(e.args) != 1 {
			return fmt.Errorf("give exactly one message ID: %w", errUsage)
		}
		return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
			return q.View(e.stdout, e.args[0], which)
		})
	}
}

// eachMessage runs op on every ID given, printing Exim's line for each.
func eachMessage(op func(q *admin.Queue, id string) (string, error)) func(e *env) error {
	return func(e *env) error {
		if len(e.args) == 0 {
			return fmt.Errorf("give one or more message IDs: %w", errUsage)
		}
		return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
			f := failures{e: e}
			for _, arg := range e.args {
				line, err := op(q, arg)
				if err != nil {
					f.add(err)
					continue
				}
				fmt.Fprintln(e.stdout, line)
			}
			return f.result()
		})
	}
}

// deliverNow is -M: each message in turn gets one delivery attempt now,
// whatever its retry time, thawed first if frozen. Like Exim's, it prints
// nothing for a message it could attempt; the mainlog has the outcome.
func deliverNow(e *env) error {
	return prepareAndDeliver(e, func(q *admin.Queue, arg string) (spool.ID, error) {
		return q.MakeDue(arg)
	})
}

// prepareAndDeliver runs prepare on each message ID argument and makes one
// delivery attempt at each it prepared; a failed prepare is reported and
// the others still go ahead (exit status 1 at the end).
func prepareAndDeliver(e *env, prepare func(q *admin.Queue, arg string) (spool.ID, error)) error {
	if len(e.args) == 0 {
		return fmt.Errorf("give one or more message IDs: %w", errUsage)
	}
	return withDeliveries(e, func(_ context.Context, q *admin.Queue, _ *config.Config, deliver func(spool.ID)) error {
		f := failures{e: e}
		for _, arg := range e.args {
			id, err := prepare(q, arg)
			if err != nil {
				f.add(err)
				continue
			}
			deliver(id)
		}
		return f.result()
	})
}

// withDeliveries is withDeliveringQueue for the commands that attempt
// deliveries from this process: deliver makes one attempt at a message
// made due, by cfg's router, closed at the end; ctx ends on SIGINT or
// SIGTERM.
func withDeliveries(e *env, run func(ctx context.Context, q *admin.Queue, cfg *config.Config, deliver func(spool.ID)) error) error {
	return withDeliveringQueue(e, func(q *admin.Queue, cfg *config.Config) error {
		router, err := newRouter(cfg, q.Log, q.Bus)
		if err != nil {
			return err
		}
		defer closeRouter(router, cfg)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return run(ctx, q, cfg, func(id spool.ID) { attemptNow(ctx, newRunner(cfg, q.Spool, q.Log, router, q.Bus), id) })
	})
}

// attemptNow makes one delivery attempt at id, which MakeDue has made due,
// with runner, which must be fresh, and waits for it to end. A daemon that
// takes the message first delivers it instead; the spool's lock keeps the
// two apart.
func attemptNow(ctx context.Context, runner *queue.Runner, id spool.ID) {
	// A fresh runner has every delivery slot free, so Enqueue starts
	// the attempt; Stop waits for it, cutting it short only on a signal.
	runner.Enqueue(id)
	runner.Stop(ctx)
}

func runQueue(force, frozenToo bool) func(e *env) error {
	return func(e *env) error {
		if err := noArgs(e); err != nil {
			return err
		}
		return withDeliveringQueue(e, func(q *admin.Queue, cfg *config.Config) error {
			router, err := newRouter(cfg, q.Log, q.Bus)
			if err != nil {
				return err
			}
			defer closeRouter(router, cfg)
			runner := newRunner(cfg, q.Spool, q.Log, router, q.Bus)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			runner.RunOnce(ctx, force, frozenToo)
			runner.Stop(ctx)
			return nil
		})
	}
}

func listIDs(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		ids, err := q.Spool.List()
		if err != nil {
			return err
		}
		var b []byte
		for _, id := range ids {
			b = append(append(b, id...), '\n')
		}
		_, err = e.stdout.Write(b)
		return err
	})
}

// giveUp is -Mg: each message given up, its bounce delivered now.
func giveUp(e *env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("give one or more message IDs: %w", errUsage)
	}
	return withDeliveringQueue(e, func(q *admin.Queue, cfg *config.Config) error {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		f := failures{e: e}
		var bounces []spool.ID
		for _, arg := range e.args {
			bounce, err := q.GiveUp(ctx, arg)
			if err != nil {
				f.add(err)
			}
			if bounce != "" {
				bounces = append(bounces, bounce)
			}
		}
		if err := deliverIDs(ctx, q, cfg, bounces); err != nil {
			f.add(err)
		}
		return f.result()
	})
}

// deliverIDs makes one delivery attempt at each of ids from this process;
// a daemon that takes one first delivers it instead.
func deliverIDs(ctx context.Context, q *admin.Queue, cfg *config.Config, ids []spool.ID) error {
	if len(ids) == 0 {
		return nil
	}
	router, err := newRouter(cfg, q.Log, q.Bus)
	if err != nil {
		return err
	}
	defer closeRouter(router, cfg)
	for _, id := range ids {
		attemptNow(ctx, newRunner(cfg, q.Spool, q.Log, router, q.Bus), id)
	}
	return nil
}

func addRecipients(e *env) error {
	if len(e.args) < 2 {
		return fmt.Errorf("give a message ID and one or more addresses: %w", errUsage)
	}
	return oneMessage(e, func(q *admin.Queue) (string, error) { return q.AddRecipients(e.args[0], e.args[1:]) })
}

func editSender(e *env) error {
	switch len(e.args) {
	case 2:
	case 3:
		// Exim's words for the mistake, on stdout.
		if spool.ValidID(e.args[0]) {
			fmt.Fprintf(e.stdout, "Message %s - only one sender address can be specified\n", e.args[0])
			return exitError{1}
		}
		fallthrough
	default:
		return fmt.Errorf("give a message ID and one address: %w", errUsage)
	}
	return oneMessage(e, func(q *admin.Queue) (string, error) { return q.EditSender(e.args[0], e.args[1]) })
}

// oneMessage runs op on the admin queue and prints its line.
func oneMessage(e *env, op func(q *admin.Queue) (string, error)) error {
	return withQueue(e, func(q *admin.Queue, _ *config.Config) error {
		line, err := op(q)
		if err != nil {
			f := failures{e: e}
			f.add(err)
			return f.result()
		}
		fmt.Fprintln(e.stdout, line)
		return nil
	})
}

// deliverMatching is -R and -qR: like Exim's, silent; the mainlog has
// the outcome.
func deliverMatching(e *env) error {
	if len(e.args) != 1 || e.args[0] == "" {
		return fmt.Errorf("give one STRING to match in recipient addresses: %w", errUsage)
	}
	return withDeliveringQueue(e, func(q *admin.Queue, cfg *config.Config) error {
		ids, err := q.MatchRecipient(e.args[0])
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		var due []spool.ID
		for _, id := range ids {
			// A message delivered or locked since it was selected is left
			// to whoever has it.
			if _, err := q.MakeDue(string(id)); err == nil {
				due = append(due, id)
			}
		}
		return deliverIDs(ctx, q, cfg, due)
	})
}

func exinext(e *env) error {
	if len(e.args) != 1 || e.args[0] == "" {
		return fmt.Errorf("give one message ID, address or domain: %w", errUsage)
	}
	var rs []admin.Retry
	err := withQueue(e, func(q *admin.Queue, _ *config.Config) (err error) {
		rs, err = q.Retries(e.args[0])
		return err
	})
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		fmt.Fprintf(e.stdout, "No retry information for %s\n", e.args[0])
		return exitError{1}
	}
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s <%s>", r.ID, r.Rcpt)
		if r.LastError != "" {
			fmt.Fprintf(&b, ": %s", r.LastError)
		}
		fmt.Fprintf(&b, "\n  first failed: %s\n", admin.FormatRetryTime(r.FirstFailed))
		if !r.LastTried.IsZero() {
			fmt.Fprintf(&b, "  last tried:   %s\n", admin.FormatRetryTime(r.LastTried))
		}
		switch {
		case !r.Frozen.IsZero():
			fmt.Fprintf(&b, "  frozen since: %s (not tried until thawed)\n", admin.FormatRetryTime(r.Frozen))
		case r.NextTry.IsZero():
			b.WriteString("  next try at:  due now\n")
		default:
			fmt.Fprintf(&b, "  next try at:  %s\n", admin.FormatRetryTime(r.NextTry))
		}
	}
	_, err = io.WriteString(e.stdout, b.String())
	return err
}
