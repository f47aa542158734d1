// Package queue owns getting spooled messages delivered: the runner that
// hands each message's recipients, grouped by their route, to the routes'
// transports (from a bounded ready queue fed at commit and by queue runs,
// with the spool as the queue past its bound), the bookkeeping of one
// delivery attempt
// (per-recipient journal, Exim's =>, ->, **, == and Completed lines, the
// message's msglog), the retry schedule in Exim's retry rule syntax, and
// what Exim does when delivery goes wrong for good or for long: the bounce
// to the sender, the delay warning, freezing a bounce that cannot be
// delivered, and cancelling frozen messages past timeout_frozen_after.
package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"mxgate/deliver"
	"mxgate/dsn"
	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/retry"
	"mxgate/route"
	"mxgate/spool"
)

// Router says where each recipient goes (*route.Router): the router name
// logged as R=, the transport, the store's over-quota policy, or no route.
type Router interface {
	Route(rcpt string) route.Destination
}

// Options configure a Runner.
type Options struct {
	Spool    *spool.Spool
	Router   Router
	Log      *mainlog.Logger // nil logs nothing
	Schedule *retry.Schedule
	// RunInterval is the time between queue runs; 0 runs the queue only
	// once, at Start.
	RunInterval time.Duration
	// MaxParallel is how many deliveries run at once; 0 means 1.
	MaxParallel int
	// ReadyMax bounds the ready queue of a started Runner: at most this
	// many message IDs wait in memory for a delivery slot. Past it the
	// spool is the queue: IDs are left out and the workers walk the spool
	// for them once they run dry.
	ReadyMax int
	// Hostname names this MTA in the notifications it sends (From:
	// Mailer-Daemon@Hostname, Reporting-MTA, Message-Id); "" is the
	// system host name.
	Hostname string
	// DelayWarning is Exim's delay_warning: a message still undelivered
	// this long after its arrival gets one warning to its sender, at the
	// first deferral past that time; 0 sends none.
	DelayWarning time.Duration
	// TimeoutFrozenAfter is Exim's timeout_frozen_after: a frozen message
	// this long after its arrival is cancelled when next looked at,
	// bounced to its sender, or discarded when it is itself a bounce; 0
	// keeps frozen messages until an admin acts.
	TimeoutFrozenAfter time.Duration
	// Bus gets a Delivery event per recipient's attempt, the Bounce and
	// Accepted (Source "bounce") of each notification, and Completed;
	// nil emits nothing.
	Bus *event.Bus
}

const (
	// frozenInfo is why a bounce that cannot be delivered is frozen, in
	// Exim's words.
	frozenInfo = " (delivery error message)"
	// timedOut is the error of the recipients of a message cancelled by
	// TimeoutFrozenAfter, in Exim's words.
	timedOut = "delivery cancelled; message timed out"
	// expired is RFC 3463's "delivery time expired", the status of a
	// recipient given up on after its retry time.
	expired = "5.4.7"
)

// Runner delivers the messages of one spool through the routes' transports.
//
// Once started, MaxParallel workers take message IDs from the ready queue,
// which Enqueue (at commit, and for the notifications the runner commits)
// and the queue runs (at Start and every RunInterval) feed. It holds at
// most ReadyMax IDs; an ID that finds it full is left out, safe on disk,
// and missed is set: a worker that finds the queue empty while missed is
// set walks the spool (from where the last walk stopped) for due messages
// not in hand, until the queue is full again or the walk has seen every
// subdirectory. So every slot stays busy while there is due work, and
// memory holds ReadyMax+MaxParallel IDs at most, whatever the backlog.
type Runner struct {
	o     Options
	now   func() time.Time // tests pin the clock to check NextTry
	slots chan struct{}    // one token per delivery in flight

	ready chan spool.ID // the ready queue: IDs waiting for a worker
	// wake tells a worker blocked on an empty ready queue that a walk
	// ended with IDs still left out, so that it walks again.
	wake chan struct{}
	walk sync.Mutex // one walk of the spool at a time

	// hard ends every attempt in flight when Stop's grace period is over.
	hard       context.Context
	cancelHard context.CancelFunc
	quit       chan struct{} // closed by Stop: take no more work

	mu       sync.Mutex
	active   map[spool.ID]bool // queued or in delivery in this process
	started  bool
	stopping bool
	// missed is set when an ID due now was left out of the full ready
	// queue (or a walk stopped early): the spool holds due work that
	// memory does not.
	missed bool
	cursor spool.ID // the next walk for missed IDs begins in its subdirectory

	inflight sync.WaitGroup // deliveries
	loop     sync.WaitGroup // Start's queue-run loop and workers

	rules *rules // under mu: what new attempts route and retry by (Swap)
}

// rules are a router and a retry schedule, with the attempts that use
// them: an attempt keeps the rules it began with to its end, so a Swap
// never closes a transport under a delivery.
type rules struct {
	router   Router
	schedule *retry.Schedule
	retired  func() // called once no attempt uses them after a Swap

	// Under Runner.mu.
	users    int
	replaced bool
}

// New makes a Runner. Its Options are taken as given (config fills them):
// Spool, Router and Schedule are required, MaxParallel and ReadyMax at
// least 1.
func New(o Options) *Runner {
	if o.Spool == nil || o.Router == nil || o.Schedule == nil || o.MaxParallel < 1 || o.ReadyMax < 1 {
		panic("queue.New: Options.Spool, Router and Schedule are required and MaxParallel and ReadyMax must be at least 1")
	}
	hard, cancel := context.WithCancel(context.Background())
	return &Runner{
		o:          o,
		now:        time.Now,
		slots:      make(chan struct{}, o.MaxParallel),
		ready:      make(chan spool.ID, o.ReadyMax),
		wake:       make(chan struct{}, 1),
		hard:       hard,
		cancelHard: cancel,
		quit:       make(chan struct{}),
		active:     make(map[spool.ID]bool),
		rules:      &rules{router: o.Router, schedule: o.Schedule},
	}
}

// Swap makes router and schedule those of every delivery attempt that
// starts from now on (a reload's new routes, downstream, outbound and
// retry rule); attempts in flight finish with the ones they began with.
// retired is called, in its own goroutine, once no attempt uses the
// replaced router any more: then its transports' sessions may be closed.
func (r *Runner) Swap(router Router, schedule *retry.Schedule, retired func()) {
	r.mu.Lock()
	old := r.rules
	r.rules = &rules{router: router, schedule: schedule}
	old.replaced = true
	old.retired = retired
	idle := old.users == 0
	r.mu.Unlock()
	if idle && retired != nil {
		go retired()
	}
}

// take is the rules an attempt starting now uses, until it calls drop.
func (r *Runner) take() *rules {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rules.users++
	return r.rules
}

func (r *Runner) drop(rs *rules) {
	r.mu.Lock()
	rs.users--
	last := rs.replaced && rs.users == 0
	r.mu.Unlock()
	if last && rs.retired != nil {
		go rs.retired()
	}
}

// Start starts MaxParallel delivery workers and runs the queue now,
// which feeds them what an earlier process left in the spool, and then
// every RunInterval, the safety net for deferred messages, until ctx ends
// or Stop is called. It does not block. ctx ending also cancels the
// attempts in progress; Stop is the graceful way to end.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	if r.started || r.stopping {
		r.mu.Unlock()
		return
	}
	r.started = true
	r.loop.Add(1 + r.o.MaxParallel)
	r.mu.Unlock()
	// Attempts end with ctx or when Stop gives up waiting for them.
	wctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(r.hard, cancel)
	for range r.o.MaxParallel {
		go r.work(wctx)
	}
	go func() {
		defer r.loop.Done()
		r.queueRun(ctx)
		if r.o.RunInterval <= 0 {
			return
		}
		tick := time.NewTicker(r.o.RunInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				r.queueRun(ctx)
			case <-ctx.Done():
				return
			case <-r.quit:
				return
			}
		}
	}()
}

// Enqueue asks for id's delivery now: the first attempt right after its
// commit. It never blocks for longer than a map update. A started runner
// puts id on its ready queue, or, when that is full, leaves it to the
// workers' next walk of the spool. Before Start (a one-off process: -M,
// -q) the attempt starts at once when a delivery slot is free; otherwise
// the message, safe on disk, waits for the next queue run. Either way an
// ID already queued or in delivery is not taken twice.
func (r *Runner) Enqueue(id spool.ID) {
	r.mu.Lock()
	started := r.started
	if started {
		r.push(id)
	}
	r.mu.Unlock()
	if started {
		return
	}
	select {
	case r.slots <- struct{}{}:
	default:
		return
	}
	if !r.claim(id) {
		<-r.slots
		return
	}
	go func() {
		defer r.release(id)
		r.attempt(r.hard, id, false, false)
	}()
}

// push puts id on the ready queue unless it is already in hand; false
// when the queue is full, and id was left out. The caller holds r.mu.
func (r *Runner) push(id spool.ID) bool {
	if r.stopping || r.active[id] {
		return true
	}
	select {
	case r.ready <- id:
		r.active[id] = true
		return true
	default:
		r.missed = true
		return false
	}
}

// work is one delivery worker: it takes IDs from the ready queue, walking
// the spool for those left out when it runs dry, until Stop or ctx.
func (r *Runner) work(ctx context.Context) {
	defer r.loop.Done()
	for {
		id, ok := r.next(ctx)
		if !ok {
			return
		}
		select {
		case r.slots <- struct{}{}:
		case <-r.quit:
			return
		case <-ctx.Done():
			return
		}
		r.mu.Lock()
		if r.stopping {
			r.mu.Unlock()
			<-r.slots
			return
		}
		r.inflight.Add(1)
		r.mu.Unlock()
		r.attempt(ctx, id, false, false)
		r.release(id)
	}
}

// next is the next ID from the ready queue; false when the worker is to
// end.
func (r *Runner) next(ctx context.Context) (spool.ID, bool) {
	for {
		select {
		case id := <-r.ready:
			return id, true
		default:
		}
		// Dry: what the queue could not hold is in the spool.
		r.catchUp(ctx)
		select {
		case id := <-r.ready:
			return id, true
		case <-r.wake:
		case <-r.quit:
			return "", false
		case <-ctx.Done():
			return "", false
		}
	}
}

// catchUp walks the spool for the due messages left out of the ready
// queue, when some were and no other walk is under way (that one feeds
// the queue, and wakes a worker if it too ends with IDs left out).
func (r *Runner) catchUp(ctx context.Context) {
	r.mu.Lock()
	missed, from := r.missed, r.cursor
	r.mu.Unlock()
	if !missed || !r.walk.TryLock() {
		return
	}
	r.feed(ctx, from)
}

// queueRun is a started runner's queue run: every due message in the
// spool goes onto the ready queue, as far as it holds them; its workers
// deliver them.
func (r *Runner) queueRun(ctx context.Context) {
	select {
	case <-r.quit:
		return
	default:
	}
	pid := os.Getpid()
	r.o.Log.Main("", fmt.Sprintf("Start queue run: pid=%d", pid))
	defer r.o.Log.Main("", fmt.Sprintf("End queue run: pid=%d", pid))
	r.walk.Lock()
	r.feed(ctx, "")
}

// feed walks the spool from from's subdirectory and puts every due message
// not already in hand on the ready queue, until the queue is full (the
// walk's end is then where the next one begins) or every subdirectory has
// been seen. The caller holds r.walk, which feed releases.
func (r *Runner) feed(ctx context.Context, from spool.ID) {
	// An ID left out from now on, in a subdirectory this walk has passed,
	// is only found by the next walk: missed set again says so.
	r.mu.Lock()
	r.missed = false
	r.mu.Unlock()
	stopped := false
	err := r.o.Spool.Walk(from, func(id spool.ID) bool {
		select {
		case <-ctx.Done():
			stopped = true
			return false
		case <-r.quit:
			stopped = true
			return false
		default:
		}
		r.mu.Lock()
		inHand, full := r.active[id], len(r.ready) == cap(r.ready)
		r.mu.Unlock()
		switch {
		case inHand:
			return true
		case full:
			// Checked before due, which reads the -H file.
		case !r.due(id, false, false):
			return true
		}
		r.mu.Lock()
		queued := r.push(id)
		if !queued {
			r.missed, r.cursor = true, id
		}
		r.mu.Unlock()
		return queued
	})
	if err != nil {
		// Not marked missed: walking again at once would fail again; the
		// next queue run tries.
		r.o.Log.Panic(fmt.Sprintf("queue: cannot walk the spool: %v", err))
	}
	r.mu.Lock()
	if stopped {
		r.missed = true
	}
	missed := r.missed
	r.mu.Unlock()
	r.walk.Unlock()
	if missed {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// RunOnce is one queue run (Exim's -q): every message whose next try time
// has passed and that is not frozen gets a delivery attempt. force (-qf)
// ignores the next try times; frozenToo (-qff, which implies force) also
// thaws and tries the frozen messages. It returns when the attempts it
// started are over; ctx ends it early, cancelling those attempts, which
// leaves their messages deferred.
func (r *Runner) RunOnce(ctx context.Context, force, frozenToo bool) {
	flag := ""
	switch {
	case frozenToo:
		flag, force = " -qff", true
	case force:
		flag = " -qf"
	}
	select {
	case <-r.quit:
		return
	default:
	}
	pid := os.Getpid()
	r.o.Log.Main("", fmt.Sprintf("Start queue run: pid=%d%s", pid, flag))
	defer r.o.Log.Main("", fmt.Sprintf("End queue run: pid=%d%s", pid, flag))

	ids, err := r.o.Spool.List()
	if err != nil {
		r.o.Log.Panic(fmt.Sprintf("queue run: cannot list the spool: %v", err))
		return
	}
	// Attempts end with ctx (an interrupted -q) or when Stop gives up
	// waiting for them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.hard, cancel)()

	var run sync.WaitGroup
	defer run.Wait()
	for _, id := range ids {
		select {
		case <-ctx.Done():
			return
		case <-r.quit:
			return
		default:
		}
		if !r.due(id, force, frozenToo) {
			continue
		}
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return
		case <-r.quit:
			return
		}
		if !r.claim(id) {
			<-r.slots
			continue
		}
		run.Add(1)
		go func() {
			defer run.Done()
			defer r.release(id)
			r.attempt(ctx, id, force, frozenToo)
		}()
	}
}

// Stop makes the runner take no more work and waits for the deliveries in
// flight until ctx ends; then it cancels them and waits for them to record
// their outcome (a cancelled attempt leaves its message deferred on disk).
func (r *Runner) Stop(ctx context.Context) {
	r.mu.Lock()
	if !r.stopping {
		r.stopping = true
		close(r.quit)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.loop.Wait()
		r.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		r.cancelHard()
		// Transports end at once on a cancelled context; waiting for
		// them keeps the spool consistent for the caller, who may close
		// it next.
		<-done
	}
	r.cancelHard()
}

// claim marks id as handled by this process; false when it already is, or
// when the runner is stopping.
func (r *Runner) claim(id spool.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping || r.active[id] {
		return false
	}
	r.active[id] = true
	r.inflight.Add(1)
	return true
}

func (r *Runner) release(id spool.ID) {
	r.mu.Lock()
	delete(r.active, id)
	r.mu.Unlock()
	<-r.slots
	r.inflight.Done()
}

// due tells a queue run whether id is worth a delivery slot. The attempt
// checks again under the message's lock; a message that cannot be read is
// let through so that the attempt logs why.
func (r *Runner) due(id spool.ID, force, frozenToo bool) bool {
	env, err := r.o.Spool.Load(id)
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return false
	case err != nil:
		return true
	case !env.Frozen.IsZero() && !frozenToo:
		return r.frozenTooLong(env)
	}
	return force || !r.now().Before(env.NextTry)
}

// attempt is one delivery attempt of id. force ignores the next try time;
// thaw unfreezes a frozen message and tries it.
func (r *Runner) attempt(ctx context.Context, id spool.ID, force, thaw bool) {
	unlock, err := r.o.Spool.Lock(id)
	switch {
	case errors.Is(err, spool.ErrLocked), errors.Is(err, spool.ErrNotFound):
		// Another process or goroutine is delivering it, or it was
		// delivered and removed since it was listed.
		return
	case err != nil:
		r.o.Log.Main(string(id), fmt.Sprintf("spool lock error: %v", err))
		return
	}
	defer unlock()
	env, err := r.o.Spool.Load(id)
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return
	case err != nil:
		r.o.Log.Main(string(id), fmt.Sprintf("spool read error: %v", err))
		return
	}
	if !env.Frozen.IsZero() {
		// Before any thaw, as in Exim: -qff does not revive a message
		// that is past its time.
		if r.frozenTooLong(env) {
			r.cancelFrozen(env)
			return
		}
		if !thaw {
			r.log(id, "Message is frozen")
			return
		}
		// Saved by the Update or gone with the Remove that ends the attempt.
		env.Frozen = time.Time{}
		r.log(id, "Unfrozen by forced delivery")
	}
	if !force && r.now().Before(env.NextTry) {
		return
	}
	if r.truncated(env) {
		return
	}
	r.deliver(ctx, env)
}

// truncated checks env's -D against its -H before an attempt sends it,
// and freezes a message whose body is shorter than recorded: sent, it
// would arrive cut off, and no retry brings the missing bytes back. A
// thaw (-Mt, -qff) checks again.
func (r *Runner) truncated(env *spool.Envelope) bool {
	var te *spool.TruncatedError
	if err := r.o.Spool.VerifyData(env); !errors.As(err, &te) {
		// A -D that cannot be read fails the attempt's open instead.
		return false
	}
	id := env.ID
	r.o.Log.Panic(fmt.Sprintf("%s %v", id, te))
	env.Frozen = r.now()
	info := " (" + te.Error() + ")"
	r.o.Log.Main(string(id), "Frozen"+info)
	r.msglogRaw(id, "*** Frozen"+info)
	r.update(env)
	return true
}

// deliver routes env's pending recipients, hands each route's group to
// its transport, one group after the other, and records the outcome:
// journal, log lines, one bounce for the recipients that failed for good,
// a delay warning when one is due, then the message's removal or its new
// retry state.
func (r *Runner) deliver(ctx context.Context, env *spool.Envelope) {
	id := env.ID
	rs := r.take()
	defer r.drop(rs)
	o := &outcome{via: make(map[string]string)}
	if pending := env.Pending(); len(pending) > 0 {
		rc, size, err := r.o.Spool.OpenEnvelope(env)
		if err != nil {
			r.o.Log.Main(string(id), fmt.Sprintf("spool read error: %v", err))
			return
		}
		rc.Close()
		groups := groups(rs.router, pending)
		for i, g := range groups {
			if o.cancelled {
				// Shutdown: the groups not tried stay pending, untouched.
				break
			}
			if g.dest.Kind == route.Unroutable {
				r.unroutable(env, g.rcpts, o)
				continue
			}
			r.deliverGroup(ctx, env, g, size, o, i == len(groups)-1)
		}
	}

	now := r.now()
	giveUp := false
	// Stopped is not failed: after a cancelled attempt the retry clock
	// does not start and the message stays due for the next start.
	if len(o.deferred) > 0 && !o.cancelled {
		if env.FirstFailed.IsZero() {
			env.FirstFailed = now
		}
		env.Attempts++
		var next time.Time
		next, giveUp = rs.schedule.Next(env.FirstFailed, now, env.Attempts)
		if !giveUp {
			env.NextTry = next
		}
	}
	if giveUp {
		for _, d := range o.deferred {
			r.log(id, fmt.Sprintf("** %s %s: retry timeout exceeded", d.Addr, o.via[d.Addr]))
			r.delivery(env, d.Addr, event.Failed, "", "", "", "retry timeout exceeded", 0)
			if env.Sender == "" {
				// Exim discards a bounce past its retry time.
				r.log(id, d.Addr+": error ignored")
				r.done(env, d.Addr)
				continue
			}
			d.Err, d.Status = "retry timeout exceeded", expired
			o.failed = append(o.failed, d)
		}
	}

	if len(o.failed) > 0 {
		if err := r.notify(env, dsn.Failure, o.failed, 0); err != nil {
			// The recipients stay pending and are tried (and bounced)
			// again; with nothing else to retry the message is frozen
			// so that this does not repeat at every queue run.
			frozen := ""
			if len(o.deferred) == 0 || giveUp {
				env.Frozen, frozen = now, " (frozen)"
			}
			r.o.Log.Panic(fmt.Sprintf("%s error message to <%s> not written%s: %v", id, env.Sender, frozen, err))
		} else {
			for _, f := range o.failed {
				r.done(env, f.Addr)
			}
		}
	}

	if len(o.deferred) > 0 && !o.cancelled && !giveUp && r.warningDue(env, now) {
		if err := r.notify(env, dsn.Delay, o.deferred, now.Sub(env.Received)); err != nil {
			// Not marked: the next deferral tries again.
			r.o.Log.Panic(fmt.Sprintf("%s delay warning to <%s> not written: %v", id, env.Sender, err))
		} else {
			env.WarningCount++
		}
	}

	if o.freeze {
		env.Frozen = now
		r.o.Log.Main(string(id), "Frozen"+frozenInfo)
		r.msglogRaw(id, "*** Frozen"+frozenInfo)
	}

	if len(env.Pending()) > 0 {
		env.DeliverFirstTime = false
		r.update(env)
		return
	}
	if o.unrecorded != nil {
		r.completeUnrecorded(id, o.unrecorded)
		return
	}
	r.complete(id)
}

// outcome is what the groups of one attempt did, for its end.
type outcome struct {
	// failed are the permanent failures, bounced together at the end;
	// deferred the temporary ones, and via their R= and T=.
	failed, deferred []dsn.Recipient
	via              map[string]string
	freeze           bool // a bounce failed: freeze the message
	cancelled        bool // the attempt's context ended (shutdown)
	// unrecorded are the lines of the recipients that the message's
	// removal, not the journal, records as done (see deliverGroup); they
	// are logged once it has.
	unrecorded []string
}

// unroutable fails recipients that no route takes, in Exim's words; a
// bounce's are left pending and the bounce frozen for an admin: never
// bounced (no loop), never written into a store.
func (r *Runner) unroutable(env *spool.Envelope, rcpts []string, o *outcome) {
	for _, rcpt := range rcpts {
		if env.Sender == "" {
			r.log(env.ID, fmt.Sprintf("** %s: %s: %s", rcpt, unrouteable, unroutableWhy(rcpt)))
			o.freeze = true
			continue
		}
		r.log(env.ID, fmt.Sprintf("** %s: %s", rcpt, unrouteable))
		r.delivery(env, rcpt, event.Failed, "", "", "", unrouteable, 0)
		o.failed = append(o.failed, dsn.Recipient{Addr: rcpt, Err: unrouteable, Status: "5.1.2"})
	}
}

// deliverGroup hands one route's recipients to its transport and records
// each result, the route's over_quota policy applied. last says no group
// follows in this attempt.
func (r *Runner) deliverGroup(ctx context.Context, env *spool.Envelope, g *group, size int64, o *outcome, last bool) {
	id := env.ID
	transport := g.dest.Transport.Name()
	start := time.Now()
	results := g.dest.Transport.Deliver(ctx, &deliver.Message{
		ID:         string(id),
		Sender:     env.Sender,
		Recipients: g.rcpts,
		Size:       size,
		Open: func() (io.ReadCloser, error) {
			rc, _, err := r.o.Spool.OpenEnvelope(env)
			return rc, err
		},
	})
	took := time.Since(start)
	o.cancelled = ctx.Err() != nil
	res := make([]deliver.Result, len(g.rcpts))
	// byRemoval: this transport call settles the message: every recipient
	// done, none owed a bounce, no earlier group of the attempt left
	// anything pending, none follows. The journal only protects done
	// recipients while their message stays in the spool; this one is
	// removed right after, and that removal records them all at once.
	// Crash windows, all "at least once, never lost": from the
	// downstream's 250 until Remove's unlink of the -H is durable, the
	// message is on disk with these recipients pending, and the next
	// attempt sends them again; the journal's window was the same up to
	// its first fdatasync and then grew with each recipient's write.
	// Once the -H is gone, a crash leaves -D/-J/msglog orphans, which
	// spool.Open removes.
	byRemoval := last && len(o.failed) == 0 && len(o.deferred) == 0 && !o.freeze
	for i, rcpt := range g.rcpts {
		res[i] = overQuota(resultFor(results, i, rcpt), g.dest.OverQuota)
		if o.cancelled && res[i].Status == deliver.Failed {
			// Shutdown may have cut the conversation short: a
			// permanent verdict now is not trusted, the next attempt
			// asks again.
			res[i].Status = deliver.Deferred
		}
		if res[i].Status != deliver.Delivered && !discarded(res[i], g.dest.OverQuota) {
			byRemoval = false
		}
	}
	first := true
	for i, rcpt := range g.rcpts {
		res := res[i]
		switch {
		case discarded(res, g.dest.OverQuota):
			// Exim's line for a blackholed recipient, with the store's
			// reply: eximstats counts a "=>" without T= as discarded.
			r.settled(env, rcpt, byRemoval, o, fmt.Sprintf("=> :blackhole: <%s> R=%s%s", rcpt, g.dest.Router, confirmation(res.Reply)))
			r.delivery(env, rcpt, event.Blackhole, g.dest.Router, transport, res.Host, res.Reply, took)
		case res.Status == deliver.Delivered:
			// The downstream said 250 inside Deliver; a crash from then
			// until the journal write (or the removal) is durable sends
			// rcpt again on the next attempt (at least once, never
			// lost). Once it is, rcpt is never sent again, and only then
			// is it logged.
			flag := "=>"
			if !first {
				flag = "->"
			}
			first = false
			r.settled(env, rcpt, byRemoval, o, fmt.Sprintf("%s %s R=%s T=%s%s%s", flag, rcpt, g.dest.Router, transport, hostField(res.Host), confirmation(res.Reply)))
			r.delivery(env, rcpt, event.Delivered, g.dest.Router, transport, res.Host, res.Reply, took)
		case res.Status == deliver.Failed:
			r.log(id, fmt.Sprintf("** %s R=%s T=%s%s: %s", rcpt, g.dest.Router, transport, hostField(res.Host), reason(res)))
			r.delivery(env, rcpt, event.Failed, g.dest.Router, transport, res.Host, reason(res), took)
			if env.Sender == "" {
				// A bounce is never bounced (no loop can start); as in
				// Exim it is frozen, its recipient left pending, for an
				// admin to see.
				o.freeze = true
			} else {
				// Journalled once the bounce is in the spool: a crash
				// before that tries rcpt again rather than losing its
				// bounce.
				o.failed = append(o.failed, recipient(res, g.dest))
			}
		default:
			r.log(id, fmt.Sprintf("== %s R=%s T=%s defer (%d)%s: %s", rcpt, g.dest.Router, transport, deferErrno(res), hostField(res.Host), reason(res)))
			r.delivery(env, rcpt, event.Deferred, g.dest.Router, transport, res.Host, reason(res), took)
			o.deferred = append(o.deferred, recipient(res, g.dest))
			o.via[rcpt] = fmt.Sprintf("R=%s T=%s", g.dest.Router, transport)
		}
	}
}

// discarded reports a full mailbox whose route's over_quota policy drops
// the message for that recipient.
func discarded(res deliver.Result, policy string) bool {
	return res.Status == deliver.Failed && res.Reason == deliver.OverQuota && policy == "discard"
}

// settled records rcpt as done and logs line: journalled and logged now,
// or, byRemoval, left for the message's removal to record and its line
// logged after that.
func (r *Runner) settled(env *spool.Envelope, rcpt string, byRemoval bool, o *outcome, line string) {
	if !byRemoval {
		r.done(env, rcpt)
		r.log(env.ID, line)
		return
	}
	env.Done = append(env.Done, rcpt)
	o.unrecorded = append(o.unrecorded, line)
}

// completeUnrecorded removes a message whose last recipients only the
// removal records (deliverGroup's byRemoval), then logs their lines and
// Completed. They go to the mainlog only: the msglog they would be
// appended to is gone with the message, so writing it is not needed.
func (r *Runner) completeUnrecorded(id spool.ID, lines []string) {
	err := r.o.Spool.Remove(id)
	for _, l := range lines {
		r.o.Log.Main(string(id), l)
	}
	r.o.Log.Main(string(id), "Completed")
	r.o.Bus.Emit(event.Event{Kind: event.Completed, ID: string(id)})
	if err != nil {
		r.o.Log.Panic(fmt.Sprintf("%s completed but not removed from the spool (its recipients are sent again if it stays): %v", id, err))
	}
}

func (r *Runner) complete(id spool.ID) {
	r.log(id, "Completed")
	r.o.Bus.Emit(event.Event{Kind: event.Completed, ID: string(id)})
	if err := r.o.Spool.Remove(id); err != nil {
		r.o.Log.Panic(fmt.Sprintf("%s completed but not removed from the spool: %v", id, err))
	}
}

// frozenTooLong reports a frozen message past TimeoutFrozenAfter, counted
// from its arrival as Exim does. A message a rate limit holds is not: it
// waits for `mxgate hold release` or `drop`, as nothing a held sender
// sent may be lost by the clock.
func (r *Runner) frozenTooLong(env *spool.Envelope) bool {
	return r.o.TimeoutFrozenAfter > 0 && !env.Frozen.IsZero() && env.Hold == "" &&
		!r.now().Before(env.Received.Add(r.o.TimeoutFrozenAfter))
}

// cancelFrozen ends a message frozen for too long: its pending recipients
// are bounced to its sender, or, for a bounce, discarded.
func (r *Runner) cancelFrozen(env *spool.Envelope) {
	id := env.ID
	r.log(id, "cancelled by timeout_frozen_after")
	pending := env.Pending()
	if env.Sender != "" && len(pending) > 0 {
		var failed []dsn.Recipient
		for _, rcpt := range pending {
			failed = append(failed, dsn.Recipient{Addr: rcpt, Err: timedOut, Status: expired})
		}
		if err := r.notify(env, dsn.Failure, failed, 0); err != nil {
			// Left frozen as it is: the next queue run tries again.
			r.o.Log.Panic(fmt.Sprintf("%s error message to <%s> not written: %v", id, env.Sender, err))
			return
		}
	}
	for _, rcpt := range pending {
		r.done(env, rcpt)
	}
	r.complete(id)
}

// warningDue reports whether env's sender is owed its delay warning now.
func (r *Runner) warningDue(env *spool.Envelope, now time.Time) bool {
	// One warning per message: Exim's delay_warning list with a single
	// interval, counted in the -H file like Exim's.
	return r.o.DelayWarning > 0 && env.WarningCount == 0 && env.Sender != "" && env.Frozen.IsZero() &&
		now.Sub(env.Received) >= r.o.DelayWarning && dsn.WantsDelayWarning(env.Headers)
}

// notify commits a notification about env to its sender (dsn.Commit: a
// new message from the null sender, whose arrival names env as R=) and
// hands it to Enqueue. queued is how long env has been on the queue, for a
// delay warning.
func (r *Runner) notify(env *spool.Envelope, build func(*dsn.Report) (*dsn.Message, error), rcpts []dsn.Recipient, queued time.Duration) error {
	// The attempt's context may end with a shutdown; the notification is
	// written all the same, or the recipients it is about are left as
	// they were.
	rep := &dsn.Report{
		Hostname:   r.o.Hostname,
		ID:         env.ID,
		Sender:     env.Sender,
		Arrival:    env.Received,
		Headers:    env.Headers,
		Recipients: rcpts,
		Date:       r.now(),
		Delay:      r.o.DelayWarning,
		Queued:     queued,
	}
	id, err := dsn.Commit(context.Background(), r.o.Spool, r.o.Log, build, rep)
	if err != nil {
		return err
	}
	if r.o.Bus.Enabled() {
		// Its arrival, then what it is: a notification about env.
		r.o.Bus.Emit(event.Event{Kind: event.Accepted, ID: string(id), Recipients: []string{env.Sender},
			MessageID: rep.MessageID, Action: "accept", Source: event.SourceBounce})
		r.o.Bus.Emit(event.Event{Kind: event.Bounce, ID: string(id), Parent: string(env.ID), Recipient: env.Sender})
	}
	r.Enqueue(id)
	return nil
}

// delivery emits the Delivery event of one recipient's attempt, beside
// its log line; reply is the peer's reply or the error.
func (r *Runner) delivery(env *spool.Envelope, rcpt, outcome, router, transport, host, reply string, took time.Duration) {
	if !r.o.Bus.Enabled() {
		return
	}
	r.o.Bus.Emit(event.Event{Kind: event.Delivery, ID: string(env.ID), Sender: env.Sender, Recipient: rcpt, Outcome: outcome,
		Router: router, Transport: transport, Host: host, Reply: reply, Duration: took, Delay: r.now().Sub(env.Received)})
}

// recipient is what a notification tells the sender about a transport's
// result: the remote server's reply when there is one, else a fixed
// phrase for the result's Reason. Res.Err stays in the mainlog: it may
// name a Maildir or socket path, an internal address or Go's error text.
// A store's host is internal (smtp://10.0.0.5): only a host on the
// Internet, an MX or the smarthost, is named to the sender.
func recipient(res deliver.Result, d route.Destination) dsn.Recipient {
	rc := dsn.Recipient{Addr: res.Rcpt, Reply: res.Reply}
	if d.Kind == route.Outbound {
		rc.Host = res.Host
	}
	if res.Reply == "" {
		rc.Err = senderReason(res.Reason)
	}
	return rc
}

// senderReason words a Reason for the sender of the message.
func senderReason(why deliver.Reason) string {
	switch why {
	case deliver.RemoteTemp, deliver.RemotePerm:
		return "the receiving mail server refused the message"
	case deliver.Refused, deliver.ConnectFailed:
		return "the receiving mail server could not be reached"
	case deliver.Timeout:
		return "the receiving mail server did not answer in time"
	case deliver.ConnectionLost:
		return "the receiving mail server closed the connection"
	case deliver.ProtocolError:
		return "the receiving mail server gave an answer that could not be understood"
	case deliver.TLSRequired:
		return "an encrypted (TLS) connection is required, and the receiving mail server does not offer one"
	case deliver.TLSFailure:
		return "an encrypted (TLS) connection to the receiving mail server could not be set up"
	case deliver.BadAddress:
		return "the address cannot be delivered as it is written"
	case deliver.MaildirUnsafePath:
		return "the mailbox name is not acceptable to the mail store"
	case deliver.LocalError:
		return "local delivery failed"
	case deliver.Abandoned:
		return "delivery was interrupted and will be tried again"
	case deliver.AuthFailed:
		return "the relay server did not accept this server's login"
	case deliver.Unroutable:
		return "the recipient's domain does not exist or accepts no mail"
	case deliver.PolicyRefused:
		return "the recipient domain's security policy (MTA-STS) allows none of its mail servers"
	}
	return "the message could not be delivered"
}

// done records rcpt as finished for good, in the journal (fsynced) and in
// env, whose -H rewrite at the end of the attempt is the second record
// should the journal write fail.
func (r *Runner) done(env *spool.Envelope, rcpt string) {
	env.Done = append(env.Done, rcpt)
	if err := r.o.Spool.Journal(env.ID, rcpt); err != nil {
		r.o.Log.Panic(fmt.Sprintf("%s journal write for %s failed (it is sent again if the process dies before the spool header is rewritten): %v", env.ID, rcpt, err))
	}
}

func (r *Runner) update(env *spool.Envelope) {
	if err := r.o.Spool.Update(env); err != nil {
		r.o.Log.Panic(fmt.Sprintf("%s spool header rewrite failed (recipients done are in its journal): %v", env.ID, err))
	}
}

// log writes a message's line to the mainlog and, without the ID, to its
// msglog, as Exim does.
func (r *Runner) log(id spool.ID, text string) {
	r.o.Log.Main(string(id), text)
	if err := r.o.Spool.Msglog(id, text); err != nil {
		r.o.Log.Panic(fmt.Sprintf("%s msglog write failed: %v", id, err))
	}
}

// msglogRaw appends a line without a timestamp to id's msglog, as Exim
// writes its "*** Frozen" line there.
func (r *Runner) msglogRaw(id spool.ID, line string) {
	if err := r.o.Spool.MsglogRaw(id, line); err != nil {
		r.o.Log.Panic(fmt.Sprintf("%s msglog write failed: %v", id, err))
	}
}

// unrouteable is Exim's word for a recipient no router takes.
const unrouteable = "Unrouteable address"

// unroutableWhy is the mainlog's explanation of a bounce frozen for want
// of a route.
func unroutableWhy(rcpt string) string {
	domain := rcpt[strings.LastIndexByte(rcpt, '@')+1:]
	if domain == rcpt {
		return "an address without a domain has no route"
	}
	return domain + ` is not a relay domain and outbound.mode is "none": nothing sends mail there`
}

// group is the pending recipients that share a route, in spool order.
type group struct {
	dest  route.Destination
	rcpts []string
}

// groups routes rcpts, one group per router, in the order the routes are
// first needed.
func groups(router Router, rcpts []string) []*group {
	var gs []*group
	byRouter := make(map[string]*group)
	for _, rcpt := range rcpts {
		d := router.Route(rcpt)
		g := byRouter[d.Router]
		if g == nil {
			g = &group{dest: d}
			byRouter[d.Router] = g
			gs = append(gs, g)
		}
		g.rcpts = append(g.rcpts, rcpt)
	}
	return gs
}

// overQuota applies a store's over_quota policy to a mailbox-full result:
// "defer" tries again later whatever the reply's class, "bounce" fails
// now, "discard" fails now for the caller to drop. Outbound routes have
// no policy (""): a remote 552 bounces and a 452 waits, as the reply says.
func overQuota(res deliver.Result, policy string) deliver.Result {
	if policy == "" || res.Reason != deliver.OverQuota || res.Status == deliver.Delivered {
		return res
	}
	if policy == "defer" {
		res.Status = deliver.Deferred
	} else {
		res.Status = deliver.Failed
	}
	return res
}

// resultFor is the transport's result for the i-th pending recipient. A
// transport that breaks its contract (a missing or misplaced result)
// defers the recipient rather than losing it.
func resultFor(results []deliver.Result, i int, rcpt string) deliver.Result {
	if i < len(results) && results[i].Rcpt == rcpt {
		return results[i]
	}
	return deliver.Result{Rcpt: rcpt, Status: deliver.Deferred, Reason: deliver.NoResult, Err: "transport returned no result for this recipient"}
}

func hostField(host string) string {
	if host == "" {
		return ""
	}
	return " H=" + host
}

// confirmation is the C= field: the reply quoted, with backslashes and
// quotes escaped so that the field's end stays unambiguous.
func confirmation(reply string) string {
	if reply == "" {
		return ""
	}
	return ` C="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(reply) + `"`
}

func reason(res deliver.Result) string {
	if res.Err != "" {
		return res.Err
	}
	if res.Reply != "" {
		return res.Reply
	}
	return "no reason given"
}

// deferErrno is the number Exim writes in "defer (N)", from the result's
// reason: -22 for a full mailbox (ERRNO_EXIMQUOTA), -44 for an SMTP 4xx reply (ERRNO_SMTPTEMP), the errno of a
// refused (ECONNREFUSED) or timed-out (ETIMEDOUT) connection, -1 for
// anything else. A 4xx reply on record is -44 whatever the reason (a
// refused STARTTLS).
func deferErrno(res deliver.Result) int {
	switch {
	case res.Reason == deliver.OverQuota:
		// ERRNO_EXIMQUOTA, Exim's errno of a full mailbox.
		return -22
	case res.Reason == deliver.RemoteTemp, isTempReply(res.Reply):
		return -44
	case res.Reason == deliver.Refused:
		return 111
	case res.Reason == deliver.Timeout:
		return 110
	}
	return -1
}

// isTempReply reports an SMTP reply of the form "4xy ...".
func isTempReply(reply string) bool {
	return len(reply) >= 3 && reply[0] == '4' &&
		reply[1] >= '0' && reply[1] <= '9' && reply[2] >= '0' && reply[2] <= '9' &&
		(len(reply) == 3 || reply[3] == ' ' || reply[3] == '-')
}
