package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/deliver"
	"mxgate/dsn"
	"mxgate/mainlog"
	"mxgate/retry"
	"mxgate/route"
	"mxgate/spool"
)

// now is the pinned clock of every runner under test: whole seconds, as
// the -H file keeps times.
var now = time.Date(2024, 5, 1, 10, 0, 0, 0, time.Local)

const (
	testHost  = "mx.down.test [127.0.0.1]"
	testReply = `250 2.0.0 Ok: queued as "4Xyz"`
	// testC is testReply as the => line quotes it.
	testC = `C="250 2.0.0 Ok: queued as \"4Xyz\""`
)

// fakeTransport answers each recipient as told by outcome (Delivered when
// absent); with hold set, it waits in Deliver for a value on hold or for
// ctx, and reports each call on entered first; delay is the time every
// call takes (a slow downstream).
type fakeTransport struct {
	name    string // T=; "fake" when empty
	outcome map[string]deliver.Result
	hold    chan struct{}
	entered chan []string
	delay   time.Duration

	mu       sync.Mutex
	calls    [][]string // recipients of each Deliver call
	messages []string   // what Open gave, per call
}

func (f *fakeTransport) Name() string {
	if f.name == "" {
		return "fake"
	}
	return f.name
}

func (f *fakeTransport) Deliver(ctx context.Context, m *deliver.Message) []deliver.Result {
	data := "open failed"
	if rc, err := m.Open(); err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		data = string(b)
		if int64(len(b)) != m.Size {
			data = fmt.Sprintf("size %d but %d bytes: %s", m.Size, len(b), b)
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, slices.Clone(m.Recipients))
	f.messages = append(f.messages, data)
	f.mu.Unlock()
	time.Sleep(f.delay)
	if f.hold != nil {
		f.entered <- slices.Clone(m.Recipients)
		select {
		case <-f.hold:
		case <-ctx.Done():
			res := make([]deliver.Result, len(m.Recipients))
			for i, r := range m.Recipients {
				res[i] = deliver.Result{Rcpt: r, Status: deliver.Deferred, Host: testHost, Err: "delivery cancelled: " + ctx.Err().Error()}
			}
			return res
		}
	}
	res := make([]deliver.Result, len(m.Recipients))
	for i, r := range m.Recipients {
		res[i] = deliver.Result{Rcpt: r, Status: deliver.Delivered, Host: testHost, Reply: testReply}
		if o, ok := f.outcome[r]; ok {
			o.Rcpt = r
			res[i] = o
		}
	}
	return res
}

func (f *fakeTransport) Calls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type env struct {
	t      testing.TB
	dir    string
	sp     *spool.Spool
	r      *Runner
	logged int // mainlog lines already looked at

	mu    sync.Mutex // runners read the clock from their goroutines
	clock time.Time
}

func newEnv(t testing.TB, tr deliver.Transport, o Options) *env {
	t.Helper()
	dir := t.TempDir()
	log, err := mainlog.Open(filepath.Join(dir, "log"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Sync: spool.SyncFdatasync, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	o.Spool, o.Log = sp, log
	if o.Router == nil {
		o.Router = storeRouter(tr)
	}
	// What config fills.
	if o.Schedule == nil {
		o.Schedule = defaultSchedule(t)
	}
	if o.MaxParallel == 0 {
		o.MaxParallel = 1
	}
	if o.ReadyMax == 0 {
		o.ReadyMax = 4096
	}
	if o.Hostname == "" {
		o.Hostname = "mx.example.test"
	}
	e := &env{t: t, dir: dir, sp: sp, clock: now}
	e.r = New(o)
	e.r.now = e.now
	t.Cleanup(func() { e.r.Stop(context.Background()) })
	return e
}

// storeRouter routes the tests' domains, down.test and up.test (the
// senders', which their bounces go to), to tr as [downstream].
func storeRouter(tr deliver.Transport) *route.Router {
	return route.New(route.Options{
		RelayDomains: []string{"down.test", "up.test"},
		Default:      route.StoreRoute{Name: "downstream", Transport: tr, OverQuota: "defer"},
	})
}

// defaultSchedule is config's default retry rule.
func defaultSchedule(t testing.TB) *retry.Schedule {
	t.Helper()
	s, err := retry.Parse(retry.Default)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// restart replaces the (stopped) runner by a new one, as a new process.
func (e *env) restart() {
	e.r = New(e.r.o)
	e.r.now = e.now
}

func (e *env) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clock
}

func (e *env) setClock(t time.Time) {
	e.mu.Lock()
	e.clock = t
	e.mu.Unlock()
}

// waitEntered is the recipients of the next Deliver call to reach tr's
// hold, failing the test if none comes in a long while (a hung runner).
func waitEntered(t *testing.T, tr *fakeTransport) []string {
	t.Helper()
	select {
	case got := <-tr.entered:
		return got
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery started within 30s")
		return nil
	}
}

// submit commits a message as the gateway would; edit adjusts its
// envelope before the commit.
func (e *env) submit(rcpts []string, edit func(*spool.Envelope)) spool.ID {
	e.t.Helper()
	id, err := e.commit(rcpts, edit)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// commit is submit for goroutines other than the test's.
func (e *env) commit(rcpts []string, edit func(*spool.Envelope)) (spool.ID, error) {
	w, err := e.sp.Create()
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(w, "Hello.\n"); err != nil {
		w.Abort()
		return "", err
	}
	ev := &spool.Envelope{
		ID:               w.ID(),
		Sender:           "alice@up.test",
		Recipients:       rcpts,
		Received:         e.now(),
		ReceivedProtocol: "esmtp",
		BodyLinecount:    1,
		DeliverFirstTime: true,
		Headers: []spool.Header{
			{Type: 'F', Text: "From: alice@up.test\n"},
			{Type: ' ', Text: "Subject: test\n"},
		},
	}
	if edit != nil {
		edit(ev)
	}
	if err := w.Commit(context.Background(), ev); err != nil {
		return "", err
	}
	return w.ID(), nil
}

// newLines returns the mainlog lines written since the last call, without
// their timestamps, with the queue-run pid replaced by PID.
func (e *env) newLines() []string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "log", "mainlog"))
	if err != nil {
		e.t.Fatal(err)
	}
	all := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) == 0 {
		all = nil
	}
	var out []string
	for _, l := range all[e.logged:] {
		if _, err := time.Parse("2006-01-02 15:04:05", l[:19]); err != nil || l[19] != ' ' {
			e.t.Fatalf("mainlog line without a timestamp: %q", l)
		}
		out = append(out, strings.ReplaceAll(l[20:], fmt.Sprintf("pid=%d", os.Getpid()), "pid=PID"))
	}
	e.logged = len(all)
	return out
}

func (e *env) expectLines(want ...string) {
	e.t.Helper()
	if got := e.newLines(); !slices.Equal(got, want) {
		e.t.Fatalf("mainlog:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

// msglog returns the message's msglog lines without their timestamps.
func (e *env) msglog(id spool.ID) []string {
	e.t.Helper()
	b, err := os.ReadFile(e.sp.MsglogPath(id))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		out = append(out, l[20:])
	}
	return out
}

// spoolFiles lists what the spool holds for id.
func (e *env) spoolFiles(id spool.ID) []string {
	e.t.Helper()
	x := string(id[5])
	var have []string
	for _, p := range []string{
		filepath.Join("input", x, string(id)+"-H"),
		filepath.Join("input", x, string(id)+"-D"),
		filepath.Join("input", x, string(id)+"-J"),
		filepath.Join("msglog", x, string(id)),
	} {
		if _, err := os.Stat(filepath.Join(e.dir, "spool", p)); err == nil {
			have = append(have, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			e.t.Fatal(err)
		}
	}
	return have
}

func (e *env) load(id spool.ID) *spool.Envelope {
	e.t.Helper()
	ev, err := e.sp.Load(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

func TestAllDelivered(t *testing.T) {
	tr := &fakeTransport{}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"bob@down.test", "carol@down.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)

	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => bob@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s -> carol@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s Completed", id),
		"End queue run: pid=PID",
	)
	if got := e.spoolFiles(id); len(got) != 0 {
		t.Errorf("spool still holds %v after Completed", got)
	}
	if got, want := tr.Calls(), [][]string{{"bob@down.test", "carol@down.test"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Deliver calls %v, want %v", got, want)
	}
	if want := "From: alice@up.test\nSubject: test\n\nHello.\n"; tr.messages[0] != want {
		t.Errorf("transport got message %q, want %q", tr.messages[0], want)
	}
}

// A mixed attempt, then the second attempt at the next try time, which
// sends only to the recipient still pending.
func TestMixedThenRetry(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"dave@down.test": {Status: deliver.Failed, Host: testHost, Err: "SMTP error from remote mail server after RCPT TO:<dave@down.test>: 550 5.1.1 no such user"},
		"erin@down.test": {Status: deliver.Deferred, Reason: deliver.RemoteTemp, Host: testHost, Reply: "451 4.7.1 greylisted", Err: "SMTP error from remote mail server after RCPT TO:<erin@down.test>: 451 4.7.1 greylisted"},
	}}
	e := newEnv(t, tr, Options{})
	rcpts := []string{"bob@down.test", "carol@down.test", "dave@down.test", "erin@down.test"}
	id := e.submit(rcpts, nil)
	e.newLines()
	e.r.Enqueue(id)
	e.r.Stop(context.Background())

	lines := []string{
		"=> bob@down.test R=downstream T=fake H=" + testHost + " " + testC,
		"-> carol@down.test R=downstream T=fake H=" + testHost + " " + testC,
		"** dave@down.test R=downstream T=fake H=" + testHost + ": SMTP error from remote mail server after RCPT TO:<dave@down.test>: 550 5.1.1 no such user",
		"== erin@down.test R=downstream T=fake defer (-44) H=" + testHost + ": SMTP error from remote mail server after RCPT TO:<erin@down.test>: 451 4.7.1 greylisted",
	}
	var want []string
	for _, l := range lines {
		want = append(want, string(id)+" "+l)
	}
	// dave's bounce, left in the spool: the only delivery slot was taken.
	bounce := e.bounce(id, "dave@down.test")
	want = append(want, fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", bounce, id, dsn.User(), e.size(bounce)))
	e.expectLines(want...)
	if got := e.msglog(id); !slices.Equal(got, lines) {
		t.Errorf("msglog:\n got %q\nwant %q", got, lines)
	}
	if err := e.sp.Remove(bounce); err != nil {
		t.Fatal(err)
	}
	x := string(id[5])
	if got, want := e.spoolFiles(id), []string{"input/" + x + "/" + string(id) + "-H", "input/" + x + "/" + string(id) + "-D", "msglog/" + x + "/" + string(id)}; !slices.Equal(got, want) {
		t.Errorf("spool files %v, want %v (the -J is folded into -H)", got, want)
	}
	ev := e.load(id)
	if want := []string{"bob@down.test", "carol@down.test", "dave@down.test"}; !slices.Equal(ev.Done, want) {
		t.Errorf("Done = %v, want %v", ev.Done, want)
	}
	if !ev.FirstFailed.Equal(now) || !ev.NextTry.Equal(now.Add(15*time.Minute)) || ev.Attempts != 1 || ev.DeliverFirstTime {
		t.Errorf("after the first deferral: FirstFailed %v NextTry %v Attempts %d DeliverFirstTime %v; want %v, %v, 1, false",
			ev.FirstFailed, ev.NextTry, ev.Attempts, ev.DeliverFirstTime, now, now.Add(15*time.Minute))
	}

	// Not yet due: a queue run leaves it alone.
	e.restart()
	e.setClock(now.Add(14 * time.Minute))
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines("Start queue run: pid=PID", "End queue run: pid=PID")

	// Due, and the downstream now takes erin.
	delete(tr.outcome, "erin@down.test")
	e.setClock(now.Add(15 * time.Minute))
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => erin@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s Completed", id),
		"End queue run: pid=PID",
	)
	if got, want := tr.Calls(), [][]string{rcpts, {"erin@down.test"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Deliver calls %v, want %v", got, want)
	}
	if got := e.spoolFiles(id); len(got) != 0 {
		t.Errorf("spool still holds %v after Completed", got)
	}
}

// A second deferral keeps FirstFailed and moves NextTry by the schedule.
func TestDeferAgain(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"bob@down.test": {Status: deliver.Deferred, Reason: deliver.Refused, Host: "", Err: "Connection refused"},
	}}
	e := newEnv(t, tr, Options{})
	first := now.Add(-3 * time.Hour)
	id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) {
		ev.DeliverFirstTime = false
		ev.FirstFailed = first
		ev.NextTry = now.Add(-time.Minute)
		ev.Attempts = 10
	})
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		string(id)+" == bob@down.test R=downstream T=fake defer (111): Connection refused",
		"End queue run: pid=PID",
	)
	ev := e.load(id)
	// 3h after the first failure, the G,16h,1h,1.5 rule is one step in.
	if !ev.FirstFailed.Equal(first) || !ev.NextTry.Equal(now.Add(90*time.Minute)) || ev.Attempts != 11 {
		t.Errorf("FirstFailed %v NextTry %v Attempts %d; want %v, %v, 11", ev.FirstFailed, ev.NextTry, ev.Attempts, first, now.Add(90*time.Minute))
	}
}

func TestGiveUp(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"bob@down.test":   {Status: deliver.Deferred, Reason: deliver.Timeout, Host: testHost, Err: "Connection timed out"},
		"carol@down.test": {Status: deliver.Deferred, Reason: deliver.Timeout, Host: testHost, Err: "Connection timed out"},
	}}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"alice@down.test", "bob@down.test", "carol@down.test"}, func(ev *spool.Envelope) {
		ev.DeliverFirstTime = false
		ev.FirstFailed = now.Add(-4*24*time.Hour - time.Second)
		ev.NextTry = now
		ev.Attempts = 27
	})
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	bounce := e.bounce(id, "bob@down.test", "carol@down.test")
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => alice@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s == bob@down.test R=downstream T=fake defer (110) H=%s: Connection timed out", id, testHost),
		fmt.Sprintf("%s == carol@down.test R=downstream T=fake defer (110) H=%s: Connection timed out", id, testHost),
		fmt.Sprintf("%s ** bob@down.test R=downstream T=fake: retry timeout exceeded", id),
		fmt.Sprintf("%s ** carol@down.test R=downstream T=fake: retry timeout exceeded", id),
		fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", bounce, id, dsn.User(), e.size(bounce)),
		fmt.Sprintf("%s Completed", id),
		"End queue run: pid=PID",
	)
	if got := e.spoolFiles(id); len(got) != 0 {
		t.Errorf("spool still holds %v after giving up", got)
	}
}

// A recipient in the journal (a crash after its delivery, before the -H
// rewrite) is not sent again.
func TestJournalledNotResent(t *testing.T) {
	tr := &fakeTransport{}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"bob@down.test", "carol@down.test"}, nil)
	if err := e.sp.Journal(id, "bob@down.test"); err != nil {
		t.Fatal(err)
	}
	e.newLines()
	e.r.Enqueue(id)
	e.r.Stop(context.Background())
	e.expectLines(
		fmt.Sprintf("%s => carol@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s Completed", id),
	)
	if got, want := tr.Calls(), [][]string{{"carol@down.test"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Deliver calls %v, want %v", got, want)
	}
}

func TestEnqueueTwiceDeliversOnce(t *testing.T) {
	tr := &fakeTransport{hold: make(chan struct{}), entered: make(chan []string, 4)}
	e := newEnv(t, tr, Options{MaxParallel: 4})
	id := e.submit([]string{"bob@down.test"}, nil)
	e.newLines()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { e.r.Enqueue(id) })
	}
	wg.Wait()
	waitEntered(t, tr)
	e.r.Enqueue(id) // while the first is in Deliver

	// Another runner (another process) on the same spool: the lock stops it.
	other := New(Options{Spool: e.sp, Router: storeRouter(tr), Schedule: defaultSchedule(t), MaxParallel: 1, ReadyMax: 1, Hostname: "mx.example.test"})
	other.RunOnce(context.Background(), true, false)
	other.Stop(context.Background())

	close(tr.hold)
	e.r.Stop(context.Background())
	if got := tr.Calls(); len(got) != 1 {
		t.Fatalf("Deliver called %d times (%v), want once", len(got), got)
	}
	e.expectLines(
		fmt.Sprintf("%s => bob@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s Completed", id),
	)
}

// Only a forced run goes ahead of the retry schedule; Enqueue does not.
func TestEnqueueNotDue(t *testing.T) {
	tr := &fakeTransport{}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) {
		ev.FirstFailed, ev.NextTry, ev.Attempts = now.Add(-time.Hour), now.Add(time.Minute), 4
	})
	e.newLines()
	e.r.Enqueue(id)
	e.r.Stop(context.Background())
	e.expectLines()
	if got := len(tr.Calls()); got != 0 {
		t.Fatalf("Deliver called %d times before the next try time", got)
	}
	e.restart()
	e.r.RunOnce(context.Background(), true, false)
	e.expectLines(
		"Start queue run: pid=PID -qf",
		fmt.Sprintf("%s => bob@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		string(id)+" Completed",
		"End queue run: pid=PID -qf",
	)
}

// Enqueue never waits for a slot: with the only one taken, the message
// stays in the spool for the next queue run.
func TestEnqueueSaturated(t *testing.T) {
	tr := &fakeTransport{hold: make(chan struct{}), entered: make(chan []string, 4)}
	e := newEnv(t, tr, Options{MaxParallel: 1})
	busy := e.submit([]string{"bob@down.test"}, nil)
	later := e.submit([]string{"carol@down.test"}, nil)
	e.r.Enqueue(busy)
	waitEntered(t, tr)
	e.r.Enqueue(later)
	close(tr.hold)
	e.r.Stop(context.Background())
	if got, want := tr.Calls(), [][]string{{"bob@down.test"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Deliver calls %v, want %v", got, want)
	}
	if ev := e.load(later); len(ev.Done) != 0 || !ev.DeliverFirstTime {
		t.Errorf("the message left for the queue run: Done %v DeliverFirstTime %v; want untouched", ev.Done, ev.DeliverFirstTime)
	}
}

// Start takes what is due in the spool (not the frozen, not the one
// waiting for its next try), then keeps running the queue.
func TestStartPicksUpSpool(t *testing.T) {
	tr := &fakeTransport{hold: make(chan struct{}), entered: make(chan []string, 4)}
	e := newEnv(t, tr, Options{RunInterval: time.Millisecond})
	due := e.submit([]string{"due@down.test"}, nil)
	e.submit([]string{"frozen@down.test"}, func(ev *spool.Envelope) { ev.Frozen = now.Add(-time.Hour) })
	waiting := e.submit([]string{"waiting@down.test"}, func(ev *spool.Envelope) {
		ev.FirstFailed, ev.NextTry, ev.Attempts = now.Add(-time.Hour), now.Add(time.Minute), 4
	})
	e.newLines()
	e.r.Start(context.Background())
	if got := waitEntered(t, tr); !slices.Equal(got, []string{"due@down.test"}) {
		t.Fatalf("first delivery to %v, want due@down.test", got)
	}
	tr.hold <- struct{}{}

	// A later run takes the waiting one once its time has come.
	e.setClock(now.Add(time.Minute))
	if got := waitEntered(t, tr); !slices.Equal(got, []string{"waiting@down.test"}) {
		t.Fatalf("second delivery to %v, want waiting@down.test", got)
	}
	close(tr.hold)
	e.r.Stop(context.Background())
	if got := len(tr.Calls()); got != 2 {
		t.Errorf("Deliver called %d times (%v), want 2", got, tr.Calls())
	}
	for _, id := range []spool.ID{due, waiting} {
		if got := e.spoolFiles(id); len(got) != 0 {
			t.Errorf("spool still holds %v", got)
		}
	}
	var completed []string
	for _, l := range e.newLines() {
		if strings.HasSuffix(l, " Completed") {
			completed = append(completed, l)
		}
	}
	if want := []string{string(due) + " Completed", string(waiting) + " Completed"}; !slices.Equal(completed, want) {
		t.Errorf("Completed lines %v, want %v", completed, want)
	}
}

// Stop past its deadline cancels the attempt; the message stays queued,
// due again at once, its retry clock not started.
func TestStopCancelsInFlight(t *testing.T) {
	tr := &fakeTransport{hold: make(chan struct{}), entered: make(chan []string, 1)}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"bob@down.test", "carol@down.test"}, nil)
	e.newLines()
	e.r.Enqueue(id)
	waitEntered(t, tr)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.r.Stop(ctx)

	e.expectLines(
		fmt.Sprintf("%s == bob@down.test R=downstream T=fake defer (-1) H=%s: delivery cancelled: context canceled", id, testHost),
		fmt.Sprintf("%s == carol@down.test R=downstream T=fake defer (-1) H=%s: delivery cancelled: context canceled", id, testHost),
	)
	ev := e.load(id)
	if len(ev.Done) != 0 || !ev.FirstFailed.IsZero() || !ev.NextTry.IsZero() || ev.Attempts != 0 || ev.DeliverFirstTime {
		t.Errorf("after a cancelled attempt: Done %v FirstFailed %v NextTry %v Attempts %d DeliverFirstTime %v; want none, zero, zero, 0, false",
			ev.Done, ev.FirstFailed, ev.NextTry, ev.Attempts, ev.DeliverFirstTime)
	}
	// Stopped: no more work is taken.
	e.r.Enqueue(id)
	e.r.RunOnce(context.Background(), true, true)
	if got := len(tr.Calls()); got != 1 {
		t.Errorf("Deliver called %d times, want 1 (nothing after Stop)", got)
	}
}

// A permanent answer that comes with a cancelled attempt is not trusted.
func TestCancelledFailureDefers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	e := newEnv(t, &cancellingTransport{cancel: cancel}, Options{})
	id := e.submit([]string{"bob@down.test"}, nil)
	e.newLines()
	e.r.RunOnce(ctx, false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s == bob@down.test R=downstream T=cancelling defer (-1): 554 5.0.0 connection lost", id),
		"End queue run: pid=PID",
	)
	if ev := e.load(id); len(ev.Done) != 0 {
		t.Errorf("Done = %v, want nothing", ev.Done)
	}
}

// cancellingTransport cancels its attempt and then reports a failure.
type cancellingTransport struct{ cancel context.CancelFunc }

func (c *cancellingTransport) Name() string { return "cancelling" }

func (c *cancellingTransport) Deliver(ctx context.Context, m *deliver.Message) []deliver.Result {
	c.cancel()
	return []deliver.Result{{Rcpt: m.Recipients[0], Status: deliver.Failed, Err: "554 5.0.0 connection lost"}}
}

func TestFrozen(t *testing.T) {
	tr := &fakeTransport{}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) { ev.Frozen = now.Add(-time.Hour) })
	e.newLines()

	e.r.RunOnce(context.Background(), false, false)
	e.r.RunOnce(context.Background(), true, false)
	e.expectLines(
		"Start queue run: pid=PID", "End queue run: pid=PID",
		"Start queue run: pid=PID -qf", "End queue run: pid=PID -qf",
	)
	e.r.Enqueue(id)
	e.r.Stop(context.Background())
	e.expectLines(string(id) + " Message is frozen")
	if got := len(tr.Calls()); got != 0 {
		t.Fatalf("frozen message delivered %d times without -qff", got)
	}

	e.restart()
	e.r.RunOnce(context.Background(), false, true)
	e.expectLines(
		"Start queue run: pid=PID -qff",
		string(id)+" Unfrozen by forced delivery",
		fmt.Sprintf("%s => bob@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		string(id)+" Completed",
		"End queue run: pid=PID -qff",
	)
}

// A thawed message that is deferred again stays thawed.
func TestThawedDeferralIsSaved(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{"bob@down.test": {Status: deliver.Deferred, Err: "no route"}}}
	e := newEnv(t, tr, Options{})
	id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) { ev.Frozen = now.Add(-time.Hour) })
	e.r.RunOnce(context.Background(), true, true)
	if ev := e.load(id); !ev.Frozen.IsZero() || ev.Attempts != 1 {
		t.Errorf("Frozen %v Attempts %d, want thawed after 1 attempt", ev.Frozen, ev.Attempts)
	}
}

// A transport that breaks its one-result-per-recipient contract defers
// the recipients it did not answer for.
func TestMissingResultDefers(t *testing.T) {
	e := newEnv(t, shortTransport{}, Options{})
	id := e.submit([]string{"bob@down.test", "carol@down.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		string(id)+" => bob@down.test R=downstream T=short",
		string(id)+" == carol@down.test R=downstream T=short defer (-1): transport returned no result for this recipient",
		"End queue run: pid=PID",
	)
}

type shortTransport struct{}

func (shortTransport) Name() string { return "short" }

func (shortTransport) Deliver(ctx context.Context, m *deliver.Message) []deliver.Result {
	return []deliver.Result{{Rcpt: m.Recipients[0], Status: deliver.Delivered}}
}

func TestDeferErrno(t *testing.T) {
	tests := []struct {
		res  deliver.Result
		want int
	}{
		{deliver.Result{Reason: deliver.RemoteTemp, Reply: "451 4.7.1 greylisted", Err: "SMTP error from remote mail server after RCPT TO:<a@b>: 451 4.7.1 greylisted"}, -44},
		{deliver.Result{Reply: "421-4.3.2 shutting down"}, -44},
		{deliver.Result{Reason: deliver.TLSRequired, Reply: "454 4.7.0 TLS not available", Err: "a TLS session is required, but STARTTLS was refused: 454 4.7.0 TLS not available"}, -44},
		{deliver.Result{Reason: deliver.RemoteTemp, Err: "LMTP error from remote mail server after end of data: 452 4.2.2 quota"}, -44},
		{deliver.Result{Reason: deliver.Refused, Err: "Connection refused"}, 111},
		{deliver.Result{Reason: deliver.Timeout, Err: "Connection timed out"}, 110},
		{deliver.Result{Reason: deliver.Timeout, Err: "SMTP timeout after RCPT TO:<a@b>"}, 110},
		// The words no longer count, the reason does.
		{deliver.Result{Reason: deliver.ConnectionLost, Err: "Remote host closed connection in response to DATA (timeout)"}, -1},
		{deliver.Result{Err: "Connection refused"}, -1},
		{deliver.Result{Reason: deliver.LocalError, Reply: "4", Err: "maildir: write tmp/x: no space left on device"}, -1},
		{deliver.Result{Reply: "4xx odd"}, -1},
		{deliver.Result{}, -1},
	}
	for _, tc := range tests {
		if got := deferErrno(tc.res); got != tc.want {
			t.Errorf("deferErrno(%+v) = %d, want %d", tc.res, got, tc.want)
		}
	}
}

func TestConfirmation(t *testing.T) {
	tests := []struct{ reply, want string }{
		{"", ""},
		{"250 2.0.0 Ok: queued as 4Xyz", ` C="250 2.0.0 Ok: queued as 4Xyz"`},
		{`250 ok "quoted"`, ` C="250 ok \"quoted\""`},
		{`250 back\slash`, ` C="250 back\\slash"`},
	}
	for _, tc := range tests {
		if got := confirmation(tc.reply); got != tc.want {
			t.Errorf("confirmation(%q) = %s, want %s", tc.reply, got, tc.want)
		}
	}
}
