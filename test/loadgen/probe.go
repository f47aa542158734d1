package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Bounds: one message through an idle gateway, the big one, one session's
// opening. A gateway slower than these fails the probe instead of hanging it.
const (
	messageTimeout = 60 * time.Second
	bigTimeout     = 5 * time.Minute
	openTimeout    = 30 * time.Second
	// openers is how many sessions are being opened at once in -idle.
	openers = 64
	// settle is the pause before an RSS is read, for the gateway to finish
	// what the last step started.
	settle = time.Second
)

type probeOpts struct {
	to, sink string
	latency  int
	size     int
	pid      int
	big      int64
	idle     int
	perIP    int
}

func probe(args []string) error {
	var o probeOpts
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	fs.StringVar(&o.to, "to", "", "the gateway's SMTP `ADDR`")
	fs.StringVar(&o.sink, "sink", "", "`ADDR` to serve the gateway's downstream on")
	fs.IntVar(&o.latency, "latency", 0, "messages to send one at a time")
	fs.IntVar(&o.size, "size", 4096, "bytes of each latency message")
	fs.IntVar(&o.pid, "pid", 0, "the gateway's process, for -big and -idle")
	fs.Int64Var(&o.big, "big", 0, "bytes of the one big message")
	fs.IntVar(&o.idle, "idle", 0, "idle sessions to open")
	fs.IntVar(&o.perIP, "per-ip", 500, "idle sessions per source address 127.0.0.x")
	fs.Parse(args)
	if o.to == "" || o.sink == "" || fs.NArg() > 0 || (o.big > 0 || o.idle > 0) && o.pid <= 0 {
		usage()
	}
	s, err := startSink(o.sink)
	if err != nil {
		return err
	}
	defer s.close()
	if o.latency > 0 {
		if err := latency(o, s); err != nil {
			return err
		}
	}
	if o.big > 0 {
		if err := bigMessage(o, s); err != nil {
			return err
		}
	}
	if o.idle > 0 {
		if err := idleSessions(o); err != nil {
			return err
		}
	}
	return nil
}

// latency sends o.latency messages one after the other on a new session
// each, and prints the percentiles of two spans: from the connect to the
// sink's having the message (what a sender's user waits), and from the
// gateway's 250 to the sink (the queue's share).
func latency(o probeOpts, s *sink) error {
	body := message(o.size)
	total := make([]time.Duration, 0, o.latency)
	queued := make([]time.Duration, 0, o.latency)
	for i := range o.latency {
		rcpt := fmt.Sprintf("lat-%d@example.test", i)
		t0 := time.Now()
		t1, err := send(o.to, "lat.load.test", rcpt, strings.NewReader(body), messageTimeout)
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		t2, ok := s.await(rcpt, messageTimeout)
		if !ok {
			return fmt.Errorf("message %d (%s) not at the sink %v after its 250", i, rcpt, messageTimeout)
		}
		total = append(total, t2.Sub(t0))
		queued = append(queued, t2.Sub(t1))
	}
	slices.Sort(total)
	slices.Sort(queued)
	fmt.Printf("latency messages=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f queue_p50_ms=%.2f queue_p99_ms=%.2f\n",
		o.latency, ms(pct(total, 50)), ms(pct(total, 99)), ms(total[len(total)-1]), ms(pct(queued, 50)), ms(pct(queued, 99)))
	return nil
}

// bigMessage sends one message of o.big bytes and prints the gateway's
// RSS before it and its peak from the first byte until the sink had it:
// VmHWM after resetting it (clear_refs), or the highest of samples taken
// every few milliseconds when the reset is not allowed.
func bigMessage(o probeOpts, s *sink) error {
	time.Sleep(settle)
	before, err := rssKiB(o.pid, "VmRSS")
	if err != nil {
		return err
	}
	hwmReset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", o.pid), []byte("5"), 0) == nil
	var sampled atomic.Int64
	sampled.Store(before)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if v, err := rssKiB(o.pid, "VmRSS"); err == nil && v > sampled.Load() {
					sampled.Store(v)
				}
			}
		}
	})
	rcpt := "big@example.test"
	t0 := time.Now()
	_, err = send(o.to, "big.load.test", rcpt, bigBody(o.big), bigTimeout)
	var arrived time.Time
	if err == nil {
		var ok bool
		if arrived, ok = s.await(rcpt, bigTimeout); !ok {
			err = fmt.Errorf("the %d-byte message is not at the sink %v after its 250", o.big, bigTimeout)
		}
	}
	close(stop)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("big message: %w", err)
	}
	elapsed := arrived.Sub(t0)
	peak, how := sampled.Load(), "sampled"
	if hwmReset {
		if hwm, err := rssKiB(o.pid, "VmHWM"); err == nil {
			peak, how = max(hwm, peak), "vmhwm"
		}
	}
	fmt.Printf("bigmsg bytes=%d seconds=%.2f rss_before_kib=%d rss_peak_kib=%d added_kib=%d peak_from=%s\n",
		o.big, elapsed.Seconds(), before, peak, peak-before, how)
	return nil
}

// idleSessions opens o.idle sessions from 127.0.0.1, .2, ... (o.perIP
// each), greeted and EHLO'd, then reads the gateway's RSS with all of
// them open, and closes them.
func idleSessions(o probeOpts) error {
	time.Sleep(settle)
	before, err := rssKiB(o.pid, "VmRSS")
	if err != nil {
		return err
	}
	conns := make([]net.Conn, o.idle)
	next := atomic.Int64{}
	var failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	for range openers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= o.idle {
					return
				}
				c, err := openSession(o.to, 1+i/o.perIP)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("session %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	opened := time.Since(t0)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		return fmt.Errorf("%d of %d sessions failed to open, first: %w", failed.Load(), o.idle, firstErr)
	}
	time.Sleep(settle)
	rss, err := rssKiB(o.pid, "VmRSS")
	if err != nil {
		return err
	}
	fmt.Printf("idle sessions=%d open_s=%.2f rss_before_kib=%d rss_kib=%d per_session_kib=%.1f\n",
		o.idle, opened.Seconds(), before, rss, float64(rss-before)/float64(o.idle))
	return nil
}

// openSession connects from 127.0.0.host, reads the greeting and EHLOs.
func openSession(to string, host int) (net.Conn, error) {
	if host > 254 {
		return nil, errors.New("more sessions than 254 source addresses x -per-ip")
	}
	d := net.Dialer{Timeout: openTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(host))}}
	c, err := d.Dial("tcp", to)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(openTimeout))
	r := bufio.NewReader(c)
	if err := expect(r, "220"); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := io.WriteString(c, "EHLO idle.load.test\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	if err := expect(r, "250"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// expect reads one (multi-line) reply and checks its code.
func expect(r *bufio.Reader, code string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

// send delivers one message to the gateway on a new session and returns
// when the gateway's 250 after the data came.
func send(to, helo, rcpt string, body io.Reader, timeout time.Duration) (time.Time, error) {
	conn, err := net.DialTimeout("tcp", to, timeout)
	if err != nil {
		return time.Time{}, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return time.Time{}, err
	}
	if err := c.Mail("sender@load.test", nil); err != nil {
		return time.Time{}, err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return time.Time{}, err
	}
	w, err := c.Data()
	if err != nil {
		return time.Time{}, err
	}
	if _, err := io.Copy(w, body); err != nil {
		return time.Time{}, err
	}
	if err := w.Close(); err != nil {
		return time.Time{}, err
	}
	accepted := time.Now()
	return accepted, c.Quit()
}

// message is a small message of about size bytes, in lines of 76.
func message(size int) string {
	var b strings.Builder
	b.WriteString("From: sender@load.test\r\nTo: user@example.test\r\nSubject: load\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return b.String()
}

// bigBody is a message of size bytes, streamed, never held.
func bigBody(size int64) io.Reader {
	const h = "From: sender@load.test\r\nTo: big@example.test\r\nSubject: big\r\n\r\n"
	return io.MultiReader(strings.NewReader(h),
		io.LimitReader(&repeat{s: strings.Repeat("x", 76) + "\r\n"}, size-int64(len(h))))
}

// repeat reads s over and over.
type repeat struct {
	s   string
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

// rssKiB reads one of the Vm* lines of /proc/PID/status, in KiB.
func rssKiB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

func pct(sorted []time.Duration, p int) time.Duration {
	return sorted[(len(sorted)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
