// Package bench measures one whole SMTP session through the gateway with
// the checks of a typical deployment on: two DNS lists on the client's
// IP, one on the sender's domain, the sender callout, spamd and clamd,
// all against in-process fakes on 127.0.0.1. It is the yardstick of the
// check-pipeline refactor (issue 10): run before and after it, unchanged
// but for wire_test.go, the pipeline must add no measurable latency per
// message. scripts/bench-pipeline.sh runs it and compares two runs.
//
//	go test -run '^$' -bench . -benchtime 300x -count 8 ./test/bench/
//
// The queue is not run: a session ends with the message committed to the
// spool, which is what the 250 after DATA promises.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/gateway"
	"mxgate/internal/peertest"
	"mxgate/mainlog"
	"mxgate/spool"
)

const (
	// sessionDeadline bounds one session: a gateway that stops answering
	// fails the run instead of hanging it.
	sessionDeadline = 30 * time.Second
	// messageFile is the message sent, cut to messageSize bytes at a line
	// end (the size scripts/load.sh sends too).
	messageFile = "testdata/messages/exim-basics-ham.eml"
	messageSize = 4096

	senderDomain = "sender.test"
	recipient    = "rcpt@example.test"
)

// configTemplate is the gateway's config: no trusted network holds the
// client (127.0.0.1), so every check applies to it. Filled in with the
// data directory, the fake resolver, the fake MX's port and the fake
// scanners. The RBL answers live the whole run (min_ttl), so the cached
// benchmark sees only cache hits after its first session; the callout's
// politeness limit is lifted so the uncached one probes every session.
const configTemplate = `
hostname = "mx.example.test"
listen   = ["127.0.0.1:0"]
data_dir = %[1]q

[relay]
domains = ["example.test"]

[rbl]
resolver     = %[2]q
reject_score = 1
min_ttl      = "1h"

[[rbl.list]]
zone = "bl1.bench.test"
kind = "ip"

[[rbl.list]]
zone = "bl2.bench.test"
kind = "ip"

[[rbl.list]]
zone = "dbl.bench.test"
kind = "sender_domain"

[callout]
enabled       = true
port          = %[3]d
resolver      = %[2]q
per_host_rate = 1000000

[spamd]
address = %[4]q

[clamd]
address = %[5]q

[downstream]
url = "maildir://%[1]s/maildir"

[log]
dir = "%[1]s/log"
`

// rig is a running gateway and its fake peers.
type rig struct {
	addr  string // the gateway's listener
	spool *spool.Spool
	dns   *fakeDNS
	mx    *fakeMX
	spamd *scanner
	clamd *scanner
	data  []byte // the message as sent after DATA, final dot included
}

// newRig starts the fakes and the gateway, all stopped when tb ends.
func newRig(tb testing.TB) *rig {
	tb.Helper()
	dir := tb.TempDir()
	r := &rig{
		dns: startDNS(tb, map[string]zone{
			senderDomain:         {mx: []string{"mx." + senderDomain}},
			"mx." + senderDomain: {a: []string{"127.0.0.1"}},
		}),
		mx:    startMX(tb),
		spamd: startScanner(tb, readReport, spamdReply),
		clamd: startScanner(tb, readInstream, clamdReply),
		data:  message(tb),
	}
	file := filepath.Join(dir, "mxgate.toml")
	text := fmt.Sprintf(configTemplate, dir, r.dns.addr, r.mx.port, r.spamd.addr, r.clamd.addr)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		tb.Fatal(err)
	}
	if r.spool, err = spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{Sync: spool.SyncFdatasync}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.spool.Close() })
	log, err := mainlog.Open(cfg.Log.Dir, cfg.Log.Format == "json")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { log.Close() })

	srv := newGateway(tb, cfg, r.spool, log)
	r.addr = srv.Addrs()[0].String()
	serve(tb, srv)
	return r
}

// serve runs srv until tb ends, then shuts it down.
func serve(tb testing.TB, srv *gateway.Server) {
	tb.Helper()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sessionDeadline)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
}

// message returns messageFile cut to at most messageSize bytes at a line
// end, with CRLF line ends, dot-stuffed and followed by the final dot.
func message(tb testing.TB) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(peertest.Root(tb), messageFile))
	if err != nil {
		tb.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	var out bytes.Buffer
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSuffix(line, "\n") + "\r\n"
		if strings.HasPrefix(line, ".") {
			line = "." + line
		}
		if out.Len()+len(line) > messageSize {
			break
		}
		out.WriteString(line)
	}
	out.WriteString(".\r\n")
	return out.Bytes()
}

// session sends one message from sender in a session of its own (EHLO,
// MAIL, RCPT, DATA, QUIT) and returns the queue ID of the 250 after DATA.
func (r *rig) session(sender string) (string, error) {
	c, err := net.DialTimeout("tcp", r.addr, sessionDeadline)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(sessionDeadline))
	br := bufio.NewReader(c)
	var reply string
	for _, step := range []struct {
		send []byte
		want string
	}{
		{nil, "220"},
		{[]byte("EHLO client.bench.test\r\n"), "250"},
		{[]byte("MAIL FROM:<" + sender + ">\r\n"), "250"},
		{[]byte("RCPT TO:<" + recipient + ">\r\n"), "250"},
		{[]byte("DATA\r\n"), "354"},
		{r.data, "250"},
		{[]byte("QUIT\r\n"), "221"},
	} {
		if step.send != nil {
			if _, err := c.Write(step.send); err != nil {
				return "", err
			}
		}
		got, err := readReply(br)
		if err != nil {
			return "", fmt.Errorf("after %.20q: %w", step.send, err)
		}
		if !strings.HasPrefix(got, step.want+" ") && !strings.HasPrefix(got, step.want+"-") {
			return "", fmt.Errorf("after %.20q: got %q, want %s", step.send, got, step.want)
		}
		if step.want == "250" && bytes.Equal(step.send, r.data) {
			reply = got
		}
	}
	_, id, ok := strings.Cut(reply, "id=")
	if !ok {
		return "", fmt.Errorf("no queue ID in the reply to DATA: %q", reply)
	}
	id, _, _ = strings.Cut(id, " ")
	return id, nil
}

// readReply reads one whole SMTP reply, its lines joined with "\n".
func readReply(br *bufio.Reader) (string, error) {
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return strings.Join(append(lines, l), "\n"), err
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// checkExercised fails tb unless every check took part in the sessions
// sent so far: each DNS list was asked, spamd and clamd scanned every
// message, the callout probed at least probes times.
func (r *rig) checkExercised(tb testing.TB, sessions, probes int) {
	tb.Helper()
	for _, list := range []string{".bl1.bench.test", ".bl2.bench.test", senderDomain + ".dbl.bench.test"} {
		if r.dns.questions(list, "A") == 0 {
			tb.Errorf("DNS list %s was never asked", list[1:])
		}
	}
	if r.dns.questions(senderDomain, "MX") == 0 {
		tb.Errorf("the callout never asked for the MX of %s", senderDomain)
	}
	if got := r.mx.rcpts.Load(); got < int64(probes) {
		tb.Errorf("the callout probed the MX %d times, want at least %d", got, probes)
	}
	if got := r.spamd.requests.Load(); got != int64(sessions) {
		tb.Errorf("spamd scanned %d messages, want %d", got, sessions)
	}
	if got := r.clamd.requests.Load(); got != int64(sessions) {
		tb.Errorf("clamd scanned %d messages, want %d", got, sessions)
	}
}

// TestBenchSession runs the benchmark's session once, so go test ./...
// keeps its setup working: the 250, the message in the spool, stamped by
// spamd, and every check asked.
func TestBenchSession(t *testing.T) {
	r := newRig(t)
	id, err := r.session("user@" + senderDomain)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := r.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []spool.ID{spool.ID(id)}) {
		t.Fatalf("spool holds %v, want [%s]", ids, id)
	}
	env, err := r.spool.Load(spool.ID(id))
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "user@"+senderDomain || !slices.Equal(env.Recipients, []string{recipient}) {
		t.Errorf("envelope %q -> %q, want %q -> [%q]", env.Sender, env.Recipients, "user@"+senderDomain, recipient)
	}
	stamped := false
	for _, h := range env.Headers {
		stamped = stamped || strings.HasPrefix(h.Text, "X-Spam-Status: No")
	}
	if !stamped {
		t.Errorf("no X-Spam-Status: No header in the spooled message")
	}
	r.checkExercised(t, 1, 1)
}

// BenchmarkSession is the steady state: one sender throughout, so after
// the first session the DNS lists and the callout answer from their
// caches, and what is measured is the session, the checks' plumbing, the
// two scans and the commit.
func BenchmarkSession(b *testing.B) {
	r := newRig(b)
	benchSessions(b, r, func(int) string { return "user@" + senderDomain }, 1)
}

// BenchmarkSessionUncached gives each session a sender of its own, so the
// callout (cached per address) probes the fake MX every time; the DNS
// lists (keyed on the IP and the domain) still answer from their caches.
func BenchmarkSessionUncached(b *testing.B) {
	r := newRig(b)
	benchSessions(b, r, func(i int) string { return "u" + strconv.Itoa(i) + "@" + senderDomain }, -1)
}

// benchSessions runs one warm-up session and then one session per
// iteration, sender(i) sending the i-th (the warm-up is 0). It reports the
// median and 99th percentile latency of a session as p50-ns/msg and
// p99-ns/msg; ns/op is the mean. probes is how many callout probes the
// run must have made at least; -1: one per session.
func benchSessions(b *testing.B, r *rig, sender func(int) string, probes int) {
	b.ReportAllocs()
	if _, err := r.session(sender(0)); err != nil {
		b.Fatal("warm-up session: ", err)
	}
	lat := make([]time.Duration, 0, 1024)
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		if _, err := r.session(sender(n)); err != nil {
			b.Fatalf("session %d: %v", n, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 50)), "p50-ns/msg")
	b.ReportMetric(float64(percentile(lat, 99)), "p99-ns/msg")
	if probes < 0 {
		probes = n + 1
	}
	r.checkExercised(b, n+1, probes)
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}
