package e2e

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// TestCrashKeepsAcceptedMail runs 10 clients against mxgate, SIGKILLs it
// while they send, restarts it on the same data_dir and waits for the
// spool to drain: every message answered 250 must reach smtp-sink at least
// once. Duplicates (delivered, then crashed before the journal) are
// allowed by the at-least-once contract and only counted.
func TestCrashKeepsAcceptedMail(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	crashRun(t, s, s.URL())
}

// TestCrashReusedConnections is the same crash with the downstream behind
// a counting proxy: the deliveries in flight at the kill, and those after
// the restart, go over connections kept between messages, and the sink
// still gets every message answered 250.
func TestCrashReusedConnections(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	p := peertest.CountingProxy(t, fmt.Sprintf("127.0.0.1:%d", s.port))
	delivered := crashRun(t, s, "smtp://"+p.Addr)
	t.Logf("%d messages reached the sink over %d connections", delivered, p.Conns())
	if p.Conns() >= int64(delivered) {
		t.Errorf("%d connections for %d messages: none was reused", p.Conns(), delivered)
	}
}

// crashRun is the crash test against the sink s, which mxgate reaches at
// downstream; it returns how many messages reached the sink.
func crashRun(t *testing.T, s *sink, downstream string) (delivered int) {
	const (
		clients   = 10
		sendFor   = 3 * time.Second
		killAfter = 1500 * time.Millisecond
	)
	g := startMxgate(t, downstream)
	msg := dataBytes(readTestdata(t, "message.eml"))

	var (
		mu       sync.Mutex
		accepted []string
		phase    = "before the kill"
		perPhase = map[string]int{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Also on a failed start: no client may outlive the test.
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(stopClients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcpt := fmt.Sprintf("client%d@example.test", i)
			var c *client
			for {
				select {
				case <-stop:
					if c != nil {
						c.Close()
					}
					return
				default:
				}
				if c == nil {
					var err error
					c, _, err = dial("127.0.0.1", g.addr)
					if err != nil {
						// mxgate is down: retry until it is back.
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if r, err := c.cmd("EHLO client.test"); err != nil || r.Code != 250 {
						c.Close()
						c = nil
						continue
					}
				}
				r, err := c.transaction("alice@sender.test", []string{rcpt}, msg)
				if err != nil {
					// The crash cut the session: whatever had no 250 yet
					// is the client's to send again, not mxgate's to keep.
					c.Close()
					c = nil
					continue
				}
				if r.Code == 250 && r.ID() != "" {
					mu.Lock()
					accepted = append(accepted, r.ID())
					perPhase[phase]++
					mu.Unlock()
				}
			}
		}()
	}

	time.Sleep(killAfter)
	g.kill()
	mu.Lock()
	phase = "after the restart"
	mu.Unlock()
	g.start()
	time.Sleep(sendFor - killAfter)
	stopClients()

	g.waitSpoolEmpty()
	g.stop()

	t.Logf("accepted %d messages before the kill, %d after the restart", perPhase["before the kill"], perPhase["after the restart"])
	if perPhase["before the kill"] == 0 || perPhase["after the restart"] == 0 {
		t.Fatalf("accepted %v: the crash must fall in the middle of the traffic", perPhase)
	}
	got := map[string]int{}
	msgs := s.messages(t)
	for _, m := range msgs {
		for _, id := range m.ids {
			got[id]++
		}
	}
	duplicates := 0
	for _, id := range accepted {
		switch n := got[id]; {
		case n == 0:
			t.Errorf("message %s was answered 250 but never reached smtp-sink", id)
		case n > 1:
			duplicates += n - 1
		}
	}
	t.Logf("%d messages accepted, %d duplicate deliveries after the crash", len(accepted), duplicates)
	return len(msgs)
}

// TestSigtermDrain sends SIGTERM while a session is in the middle of DATA:
// mxgate stops accepting connections, but the session still gets its 250,
// the process exits 0, and the message is delivered (after a restart if
// the drain cut its delivery short).
func TestSigtermDrain(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	g := startMxgate(t, s.URL())

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	c.expect(t, "MAIL FROM:<alice@sender.test>", 250)
	c.expect(t, "RCPT TO:<user@example.test>", 250)
	c.expect(t, "DATA", 354)
	if err := c.write([]byte("Subject: drain\r\n\r\nfirst half of the body\r\n")); err != nil {
		t.Fatal(err)
	}

	g.signal(syscall.SIGTERM)
	// Refused connections show the signal has been taken in.
	waitFor(t, exitTimeout, func() string {
		c2, _, err := dial("127.0.0.1", g.addr)
		if err != nil {
			return ""
		}
		c2.Close()
		return "mxgate to stop accepting connections after SIGTERM"
	})

	if err := c.write([]byte("second half of the body\r\n.\r\n")); err != nil {
		t.Fatalf("sending the rest of DATA after SIGTERM: %v", err)
	}
	r, err := c.read()
	if err != nil {
		t.Fatalf("end of data after SIGTERM: %v", err)
	}
	if r.Code != 250 || r.ID() == "" {
		t.Fatalf("end of data after SIGTERM -> %v, want 250 with id=", r)
	}
	id := r.ID()
	c.cmd("QUIT")
	c.Close()
	g.waitExit()

	g.start()
	g.waitSpoolEmpty()
	g.stop()
	found := false
	for _, m := range s.messages(t) {
		for _, mid := range m.ids {
			found = found || mid == id
		}
	}
	if !found {
		t.Errorf("message %s, accepted during the drain, never reached smtp-sink", id)
	}
}
