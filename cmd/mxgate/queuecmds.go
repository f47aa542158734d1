package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"mxgate/admin"
	"mxgate/config"
	"mxgate/queue"
	"mxgate/spool"
)

func init() {
	register("-bp", "[ID...]\tlist the queue (Exim format; also mailq)", listQueue(false))
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
	register("-qf", "\trun the queue once: every message not frozen, ignoring retry times", runQueue(true, false))
	register("-qff", "\trun the queue once: every message, frozen ones too", runQueue(true, true))
}

// clock is the time the listing measures ages against; tests pin it.
var clock = time.Now

// adminQueue opens the spool and logs of the configured gateway for an
// admin command; close releases them.
func adminQueue(e *env) (q *admin.Queue, cfg *config.Config, closeAll func(), err error) {
	cfg, err = loadConfig(e.configPath)
	if err != nil {
		return nil, nil, nil, err
	}
	log, sp, err := openSpool(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	q = &admin.Queue{
		Spool: sp,
		Log:   log,
		User:  userName(),
		Now:   clock,
	}
	return q, cfg, func() { sp.Close(); log.Close() }, nil
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
		q, _, closeAll, err := adminQueue(e)
		if err != nil {
			return err
		}
		defer closeAll()
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
	}
}

func countQueue(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	q, _, closeAll, err := adminQueue(e)
	if err != nil {
		return err
	}
	defer closeAll()
	n, err := q.Count()
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, n)
	return nil
}

func viewFile(which spool.File) func(e *env) error {
	return func(e *env) error {
		if len(e.args) != 1 {
			return fmt.Errorf("give exactly one message ID: %w", errUsage)
		}
		q, _, closeAll, err := adminQueue(e)
		if err != nil {
			return err
		}
		defer closeAll()
		return q.View(e.stdout, e.args[0], which)
	}
}

// eachMessage runs op on every ID given, printing Exim's line for each.
func eachMessage(op func(q *admin.Queue, id string) (string, error)) func(e *env) error {
	return func(e *env) error {
		if len(e.args) == 0 {
			return fmt.Errorf("give one or more message IDs: %w", errUsage)
		}
		q, _, closeAll, err := adminQueue(e)
		if err != nil {
			return err
		}
		defer closeAll()
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
	q, cfg, closeAll, err := adminQueue(e)
	if err != nil {
		return err
	}
	defer closeAll()
	router, err := newRouter(cfg, q.Log)
	if err != nil {
		return err
	}
	defer closeRouter(router, cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	f := failures{e: e}
	for _, arg := range e.args {
		id, err := prepare(q, arg)
		if err != nil {
			f.add(err)
			continue
		}
		attemptNow(ctx, newRunner(cfg, q.Spool, q.Log, router), id)
	}
	return f.result()
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
		q, cfg, closeAll, err := adminQueue(e)
		if err != nil {
			return err
		}
		defer closeAll()
		router, err := newRouter(cfg, q.Log)
		if err != nil {
			return err
		}
		defer closeRouter(router, cfg)
		runner := newRunner(cfg, q.Spool, q.Log, router)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		runner.RunOnce(ctx, force, frozenToo)
		runner.Stop(ctx)
		return nil
	}
}
