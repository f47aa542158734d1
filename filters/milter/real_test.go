package milter

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/filters/msgauth"
	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
	"mxgate/spool"
)

// The real milters (Debian's rspamd and opendkim) are started by
// scripts/peers.sh once per test binary, on first use, and stopped by
// TestMain: rspamd takes seconds to load its rules.

var peersScript = filepath.Join("..", "..", "scripts", "peers.sh")

// daemon is one program started through peers.sh.
type daemon struct {
	name, dir, addr string
}

var (
	peersMu sync.Mutex
	running []*daemon
)

func TestMain(m *testing.M) {
	code := m.Run()
	peersMu.Lock()
	for _, p := range running {
		if out, err := exec.Command(peersScript, "stop", p.name, p.dir).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "peers.sh stop %s %s: %v\n%s", p.name, p.dir, err, out)
			code = 1
		}
		os.RemoveAll(p.dir)
	}
	peersMu.Unlock()
	os.Exit(code)
}

// startPeer runs peers.sh start name in a fresh directory with the extra
// environment env, and records the peer for TestMain to stop.
func startPeer(tb testing.TB, name string, env ...string) (*daemon, error) {
	dir, err := os.MkdirTemp("", "mxgate-milter-"+name+"-")
	if err != nil {
		return nil, err
	}
	// The daemons drop root and still write their PID files there.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	port := freePort(tb)
	cmd := exec.Command(peersScript, "start", name, dir, fmt.Sprint(port))
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	p := &daemon{name: name, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	peersMu.Lock()
	running = append(running, p)
	peersMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("peers.sh start %s %s %d: %v\n%s", name, dir, port, err, out)
	}
	return p, nil
}

// freePort is peertest.FreePort for milters: rspamd also takes the two
// ports after its own, so no two ports handed out are within 2 of each
// other (two rspamds start in parallel).
func freePort(tb testing.TB) int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		port := peertest.FreePorts(tb, 3)
		if slices.ContainsFunc(handedOut, func(p int) bool { return p-2 <= port && port <= p+2 }) {
			continue
		}
		handedOut = append(handedOut, port)
		return port
	}
}

var (
	portsMu   sync.Mutex
	handedOut []int
)

// shared is a peer started once per test binary, by the first test that
// needs it, and stopped by TestMain.
type shared struct {
	once  sync.Once
	start func(tb testing.TB) (*daemon, error)
	d     *daemon
	err   error
}

var (
	rspamdPeer       = &shared{start: func(tb testing.TB) (*daemon, error) { return startPeer(tb, "rspamd") }}
	rspamdRejectPeer = &shared{start: func(tb testing.TB) (*daemon, error) { return startPeer(tb, "rspamd", "RSPAMD_REJECT_SCORE=1") }}
	opendkimPeer     = &shared{start: func(tb testing.TB) (*daemon, error) { return startPeer(tb, "opendkim") }}
)

// need returns the peer or fails the test: a missing daemon is a broken
// test set-up (scripts/install-test-deps.sh), not a reason to skip.
func need(tb testing.TB, p *shared) *daemon {
	tb.Helper()
	p.once.Do(func() {
		// Left so if start fails the test without returning.
		p.err = fmt.Errorf("starting the peer failed in an earlier test")
		p.d, p.err = p.start(tb)
	})
	if p.err != nil {
		tb.Fatal(p.err)
	}
	return p.d
}

// parseMessage splits raw (LF endings) into spooled headers and body.
func parseMessage(tb testing.TB, raw string) ([]spool.Header, string) {
	tb.Helper()
	head, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		tb.Fatalf("test message without a blank line: %q", raw)
	}
	var hs []spool.Header
	for line := range strings.SplitAfterSeq(head+"\n", "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Text += line
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		hs = append(hs, spool.Header{Type: spool.HeaderType(name), Text: line})
	}
	return hs, body
}

// roundTrip runs one whole SMTP transaction from client through a single
// milter at p.
func roundTrip(tb testing.TB, p *daemon, client, from, rcpt string, headers []spool.Header, body string) (Decision, Modifications) {
	tb.Helper()
	// The modification log helps a failing test; in a benchmark it is noise.
	var logf func(id, text string)
	if _, ok := tb.(*testing.T); ok {
		logf = func(id, text string) { tb.Log(id, text) }
	}
	o := testOptions("inet:"+p.addr, p.name)
	o.EOMTimeout = 30 * time.Second
	h, err := NewHost([]Options{o}, logf)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	s := h.NewSession(ctx, ConnInfo{Hostname: "mx.example.test", DaemonName: "mxgate",
		ClientIP: netip.MustParseAddr(client), ClientPort: 40000})
	defer s.Close()
	for stage, d := range map[string]Decision{
		"HELO": s.Helo(ctx, "client.example.net"),
		"MAIL": s.Mail(ctx, from, "", ""),
		"RCPT": s.Rcpt(ctx, rcpt),
	} {
		if d.Action != Continue {
			tb.Fatalf("%s at %s: %s %s (%s), want continue", p.name, stage, d.Action, d.Reply(), d.Reason)
		}
	}
	return s.Data(ctx, "1abcde-000001-AB", headers, strings.NewReader(body))
}

func readMessage(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "messages", name))
	if err != nil {
		tb.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// headerNames lists the names of the live (not deleted) headers of hs.
func headerNames(hs []spool.Header) []string {
	var names []string
	for _, h := range hs {
		if h.Type != '*' {
			name, _, _ := strings.Cut(h.Text, ":")
			names = append(names, name)
		}
	}
	return names
}

// TestRspamd runs the pharmacy spam through rspamd in milter mode, once with
// the add-header threshold below its score and once with the reject
// threshold below it.
func TestRspamd(t *testing.T) {
	spamHeaders, spamBody := parseMessage(t, readMessage(t, "pharmacy-spam.eml"))
	tests := []struct {
		name   string
		start  *shared
		action Action
		reply  string   // Decision.Reply for a reject
		added  []string // header names the modifications add
	}{
		{"add header", rspamdPeer, Continue, "", []string{"X-Spamd-Result", "X-Spam-Status", "X-Spamd-Bar", "X-Spam"}},
		{"reject", rspamdRejectPeer, Reject, "554 5.7.1 Spam message rejected", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := need(t, tc.start)
			d, mods := roundTrip(t, p, "192.0.2.1", "offers@pharma-deals.test", "user@example.test", spamHeaders, spamBody)
			if d.Action != tc.action {
				t.Fatalf("decision %s %q (%s), want %s", d.Action, d.Reply(), d.Reason, tc.action)
			}
			if tc.action == Reject && d.Reply() != tc.reply {
				t.Errorf("reply %q, want %q", d.Reply(), tc.reply)
			}
			if tc.action == Reject && d.Milter != "rspamd" {
				t.Errorf("decided by %q, want rspamd", d.Milter)
			}
			got := headerNames(mods.ApplyHeaders(spamHeaders))
			want := append(headerNames(spamHeaders), tc.added...)
			if !sameSet(got, want) {
				t.Errorf("headers after rspamd's modifications:\n%q\nwant (any order):\n%q\nmodifications: %+v", got, want, mods)
			}
		})
	}
}

// sameSet reports whether a and b hold the same strings, as multisets.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	n := map[string]int{}
	for _, s := range a {
		n[s]++
	}
	for _, s := range b {
		n[s]--
		if n[s] < 0 {
			return false
		}
	}
	return true
}

const letter = "From: Alice <alice@example.test>\nTo: bob@example.net\nSubject: signed by opendkim\n" +
	"Date: Wed, 25 Nov 2026 12:00:00 +0000\nMessage-ID: <dkim-1@example.test>\n\nPlease sign this.\n\nAlice\n"

// TestOpendkimSign has opendkim in sign mode sign mail from example.test
// coming from 127.0.0.1, then checks its signature with the gateway's own
// DKIM verifier (msgauth, asking a test DNS server for the key).
func TestOpendkimSign(t *testing.T) {
	p := need(t, opendkimPeer)
	headers, body := parseMessage(t, letter)
	d, mods := roundTrip(t, p, "127.0.0.1", "alice@example.test", "bob@example.net", headers, body)
	if d.Action != Continue && d.Action != Accept {
		t.Fatalf("decision %s %q (%s), want continue or accept", d.Action, d.Reply(), d.Reason)
	}
	if len(mods.AddHeaders) != 1 || len(mods.InsertAt) != 1 {
		t.Fatalf("modifications %+v, want one inserted DKIM-Signature", mods)
	}
	sig := strings.Join(strings.Fields(mods.AddHeaders[0].Text), " ")
	const wantSig = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.test; s=sel1;"
	if !strings.HasPrefix(sig, wantSig) || mods.InsertAt[0] != 0 {
		t.Fatalf("opendkim added %q at index %d, want %q... at 0", sig, mods.InsertAt[0], wantSig)
	}
	signed := mods.ApplyHeaders(headers)
	record := peertest.DKIMRecord(t, p.dir)

	t.Run("msgauth", func(t *testing.T) {
		dnsAddr := serveTXT(t, "sel1._domainkey.example.test.", record)
		f := msgauth.New(msgauth.Options{AuthservID: "mx.example.test", Resolvers: []string{dnsAddr}, Timeout: 2 * time.Second})
		v, err := f.Check(context.Background(), &filters.Message{
			ID: "1abcde-000001-AB", Sender: "alice@example.test", Helo: "client.example.net",
			ClientIP: netip.MustParseAddr("192.0.2.1"), Headers: signed,
			OpenBody: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		var ar string
		for _, h := range v.Headers {
			if strings.HasPrefix(h.Text, "Authentication-Results:") {
				ar = strings.Join(strings.Fields(h.Text), " ")
			}
		}
		if !strings.Contains(ar, "dkim=pass header.d=example.test") {
			t.Errorf("Authentication-Results %q, want dkim=pass header.d=example.test", ar)
		}
	})

	t.Run("opendkim verify", func(t *testing.T) {
		// opendkim reads the key from a file: its resolver cannot be
		// pointed at a test DNS port.
		keys := filepath.Join(t.TempDir(), "public.keys")
		if err := os.WriteFile(keys, []byte("sel1._domainkey.example.test "+record+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := startPeer(t, "opendkim", "OPENDKIM_VERIFY_KEYS="+keys)
		if err != nil {
			t.Fatal(err)
		}
		d, mods := roundTrip(t, v, "192.0.2.1", "alice@example.test", "bob@example.net", signed, body)
		if d.Action != Continue && d.Action != Accept {
			t.Fatalf("decision %s %q (%s), want continue or accept", d.Action, d.Reply(), d.Reason)
		}
		var ar []string
		for _, h := range mods.AddHeaders {
			if strings.HasPrefix(h.Text, "Authentication-Results:") {
				ar = append(ar, strings.Join(strings.Fields(h.Text), " "))
			}
		}
		const wantAR = "Authentication-Results: mx.example.test; dkim=pass (2048-bit key) header.d=example.test header.i=@example.test header.a=rsa-sha256 header.s=sel1"
		if len(ar) != 1 || !strings.HasPrefix(ar[0], wantAR) {
			t.Errorf("opendkim added Authentication-Results %q, want one starting %q; modifications %+v", ar, wantAR, mods)
		}
	})
}

// serveTXT answers TXT queries for name with record (internal/dnstest)
// until the test ends; every other name does not exist.
func serveTXT(tb testing.TB, name, record string) string {
	tb.Helper()
	return dnstest.StartZone(tb, dnstest.Zone{name + " TXT": {dnstest.TXT(name, 60, record)}}).Addr
}

// BenchmarkRspamdRoundTrip is the latency one rspamd milter adds to a
// message: a whole session (connect, HELO, MAIL, RCPT, headers, body, end of
// message) for the pharmacy spam.
func BenchmarkRspamdRoundTrip(b *testing.B) {
	p := need(b, rspamdPeer)
	headers, body := parseMessage(b, readMessage(b, "pharmacy-spam.eml"))
	for b.Loop() {
		d, _ := roundTrip(b, p, "192.0.2.1", "offers@pharma-deals.test", "user@example.test", headers, body)
		if d.Action != Continue {
			b.Fatalf("decision %s %q (%s), want continue", d.Action, d.Reply(), d.Reason)
		}
	}
}
