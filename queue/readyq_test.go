package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mxgate/deliver"
)

// A burst committed faster than a slow downstream takes it is delivered
// by the workers alone, each message once, long before the queue run an
// hour away; past ReadyMax the IDs wait in the spool, not in memory.
func TestReadyQueueBacklog(t *testing.T) {
	const messages, parallel = 500, 2
	for _, readyMax := range []int{4096, 16} {
		t.Run(fmt.Sprintf("ready_max=%d", readyMax), func(t *testing.T) {
			// Held until the whole burst is committed, so that the queue
			// is as full as it gets, then 5ms a message.
			tr := &fakeTransport{hold: make(chan struct{}), entered: make(chan []string, messages), delay: 5 * time.Millisecond}
			e := newEnv(t, tr, Options{MaxParallel: parallel, ReadyMax: readyMax, RunInterval: time.Hour})
			e.r.Start(context.Background())

			var peakActive, peakReady atomic.Int64
			sampled := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					e.r.mu.Lock()
					active, ready := len(e.r.active), len(e.r.ready)
					e.r.mu.Unlock()
					peakActive.Store(max(peakActive.Load(), int64(active)))
					peakReady.Store(max(peakReady.Load(), int64(ready)))
					select {
					case <-done:
						return
					case <-time.After(100 * time.Microsecond):
					}
				}
			}()

			// Committed as fast as 10 sessions can, each handed to
			// Enqueue as the gateway does after its 250.
			var wg sync.WaitGroup
			errs := make(chan error, messages)
			for s := range 10 {
				wg.Go(func() {
					for i := s; i < messages; i += 10 {
						id, err := e.commit([]string{fmt.Sprintf("u%d@down.test", i)}, nil)
						if err != nil {
							errs <- err
							return
						}
						e.r.Enqueue(id)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			start := time.Now()
			close(tr.hold)
			if n := e.waitEmpty(t, 10*time.Millisecond, time.Minute); n > 0 {
				t.Fatalf("%d of %d messages still in the spool after a minute (the next queue run is an hour away)", n, messages)
			}
			t.Logf("%d messages delivered in %v after the downstream's release", messages, time.Since(start).Round(time.Millisecond))
			close(done)
			<-sampled

			sent := make(map[string]int)
			for _, call := range tr.Calls() {
				for _, rcpt := range call {
					sent[rcpt]++
				}
			}
			for i := range messages {
				if rcpt := fmt.Sprintf("u%d@down.test", i); sent[rcpt] != 1 {
					t.Errorf("%s sent %d times, want once", rcpt, sent[rcpt])
				}
			}
			if got, bound := peakActive.Load(), int64(readyMax+parallel); got > bound {
				t.Errorf("up to %d IDs in memory, want at most ReadyMax+MaxParallel = %d", got, bound)
			}
			if readyMax < messages {
				// The bound was reached: the rest came from the spool.
				if got := peakReady.Load(); got != int64(readyMax) {
					t.Errorf("ready queue peaked at %d, want it full at %d", got, readyMax)
				}
			}
		})
	}
}

// A message whose every recipient is delivered at the first attempt is
// removed without a -J journal or a rewritten -H (nor a msglog line: it
// is removed with the message); any other outcome keeps the journal. An
// inotify watch on the spool sees every file the attempt touches.
func TestFirstAttemptNoJournal(t *testing.T) {
	tests := []struct {
		name      string
		rcpts     []string
		outcome   map[string]deliver.Result
		twoRoutes bool // partner.test by its own route, a second transport call
		// events is what the attempt does to the message's files in
		// input/X and msglog/X; ID stands for its ID, msglog for its
		// msglog file.
		events []string
		lines  []string
	}{
		{
			name:   "one recipient",
			rcpts:  []string{"bob@down.test"},
			events: []string{"delete ID-H", "delete ID-D"},
			lines:  []string{"=> bob@down.test R=downstream T=fake H=" + testHost + " " + testC, "Completed"},
		},
		{
			name:   "three recipients in one transport call",
			rcpts:  []string{"bob@down.test", "carol@down.test", "dave@down.test"},
			events: []string{"delete ID-H", "delete ID-D"},
			lines: []string{
				"=> bob@down.test R=downstream T=fake H=" + testHost + " " + testC,
				"-> carol@down.test R=downstream T=fake H=" + testHost + " " + testC,
				"-> dave@down.test R=downstream T=fake H=" + testHost + " " + testC,
				"Completed",
			},
		},
		{
			// The first call's recipient is journalled: a crash during
			// the second must not send it again. The last one's is not.
			name:      "two transport calls",
			rcpts:     []string{"bob@down.test", "p@partner.test"},
			twoRoutes: true,
			events:    []string{"create ID-J", "create msglog", "delete ID-H", "delete ID-D", "delete ID-J", "delete msglog"},
			lines: []string{
				"=> bob@down.test R=downstream T=fake H=" + testHost + " " + testC,
				"=> p@partner.test R=partner T=fake H=" + testHost + " " + testC,
				"Completed",
			},
		},
		{
			// The watch's control: here the journal is needed.
			name:    "one of two deferred",
			rcpts:   []string{"bob@down.test", "carol@down.test"},
			outcome: map[string]deliver.Result{"carol@down.test": {Status: deliver.Deferred, Reason: deliver.RemoteTemp, Reply: "451 4.3.0 try later"}},
			events: []string{
				"create ID-J", "create msglog", "create hdr.ID", "moved_to ID-H", "delete ID-J",
			},
			lines: []string{
				"=> bob@down.test R=downstream T=fake H=" + testHost + " " + testC,
				"== carol@down.test R=downstream T=fake defer (-44): 451 4.3.0 try later",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &fakeTransport{outcome: tt.outcome}
			var o Options
			if tt.twoRoutes {
				o.Router = routes(tr, tr, nil)
			}
			e := newEnv(t, tr, o)
			id := e.submit(tt.rcpts, nil)
			e.newLines()
			x := string(id[5])
			w := watch(t, filepath.Join(e.dir, "spool", "input", x), filepath.Join(e.dir, "spool", "msglog", x))
			e.r.Enqueue(id)
			e.r.Stop(context.Background())
			var got []string
			for _, ev := range w() {
				kind, name, _ := strings.Cut(ev, " ")
				switch {
				case name == string(id):
					got = append(got, kind+" msglog")
				case strings.Contains(name, string(id)):
					got = append(got, kind+" "+strings.ReplaceAll(name, string(id), "ID"))
				}
			}
			if !slices.Equal(got, tt.events) {
				t.Errorf("spool events:\n got %q\nwant %q", got, tt.events)
			}
			var want []string
			for _, l := range tt.lines {
				want = append(want, string(id)+" "+l)
			}
			e.expectLines(want...)
		})
	}
}

// watch starts an inotify watch on dirs; the function it returns lists
// what happened there since, "create NAME", "moved_to NAME" and "delete
// NAME", in order. (Writes are not watched: the kernel merges repeated
// ones. A file's rewrite is a create and a moved_to, as spool does it.)
func watch(t *testing.T, dirs ...string) func() []string {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE); err != nil {
			t.Fatal(err)
		}
	}
	kinds := []struct {
		mask uint32
		name string
	}{{unix.IN_CREATE, "create"}, {unix.IN_MOVED_TO, "moved_to"}, {unix.IN_DELETE, "delete"}}
	return func() []string {
		var events []string
		buf := make([]byte, 1<<16)
		for {
			n, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return events
			}
			if err != nil {
				t.Fatal(err)
			}
			for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
				mask := binary.NativeEndian.Uint32(b[4:8])
				nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
				name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+nameLen]), "\x00")
				b = b[unix.SizeofInotifyEvent+nameLen:]
				for _, k := range kinds {
					if mask&k.mask != 0 {
						events = append(events, k.name+" "+name)
					}
				}
			}
		}
	}
}

// waitEmpty polls the spool every poll until it holds no message and
// returns 0, or gives up after limit (0: never) and returns how many are
// left.
func (e *env) waitEmpty(tb testing.TB, poll, limit time.Duration) int {
	tb.Helper()
	start := time.Now()
	for {
		n, err := e.sp.Count()
		if err != nil {
			tb.Fatal(err)
		}
		if n == 0 || limit > 0 && time.Since(start) > limit {
			return n
		}
		time.Sleep(poll)
	}
}

// downRcpts is n recipients at down.test: u0, u1, ...
func downRcpts(n int) []string {
	to := make([]string, n)
	for i := range to {
		to[i] = fmt.Sprintf("u%d@down.test", i)
	}
	return to
}

// BenchmarkRunner is committed messages per second through a started
// runner (20 workers, as config's default) to an in-process downstream
// that answers at once: 20 goroutines commit and Enqueue, as 20 sessions
// would, and the clock stops when the spool is empty again. drain-ms is
// the time from the last commit to that.
func BenchmarkRunner(b *testing.B) {
	for _, rcpts := range []int{1, 3} {
		b.Run(fmt.Sprintf("rcpts=%d", rcpts), func(b *testing.B) {
			e := newEnv(b, &fakeTransport{}, Options{MaxParallel: 20, RunInterval: time.Second})
			e.r.Start(context.Background())
			to := downRcpts(rcpts)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 20 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						id, err := e.commit(to, nil)
						if err != nil {
							b.Error(err)
							return
						}
						e.r.Enqueue(id)
					}
				})
			}
			wg.Wait()
			committed := time.Now()
			e.waitEmpty(b, 2*time.Millisecond, 0)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			// How long delivery lags behind the last commit.
			b.ReportMetric(float64(time.Since(committed).Milliseconds()), "drain-ms")
		})
	}
}

// BenchmarkRunnerBacklog is the delivery side alone: b.N messages are
// committed first, then a started runner (20 workers) takes them from the
// spool to an in-process downstream that answers at once; the clock runs
// from Start to the empty spool.
func BenchmarkRunnerBacklog(b *testing.B) {
	for _, rcpts := range []int{1, 3} {
		b.Run(fmt.Sprintf("rcpts=%d", rcpts), func(b *testing.B) {
			e := newEnv(b, &fakeTransport{}, Options{MaxParallel: 20, RunInterval: time.Hour})
			to := downRcpts(rcpts)
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 20 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := e.commit(to, nil); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ResetTimer()
			start := time.Now()
			e.r.Start(context.Background())
			e.waitEmpty(b, 2*time.Millisecond, 0)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
