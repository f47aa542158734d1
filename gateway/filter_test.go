package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"mxgate/address"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/spool"
)

// fakeFilter answers every message with a fixed verdict or error and
// keeps the message as it read it.
type fakeFilter struct {
	name      string
	verdict   filters.Verdict
	err       error
	unchecked []spool.Header // stamped on error with on_error = accept

	mu   sync.Mutex
	seen []string
}

func (f *fakeFilter) Name() string { return f.name }

func (f *fakeFilter) Check(_ context.Context, m *filters.Message) (filters.Verdict, error) {
	rc, err := m.Open(false)
	if err != nil {
		return filters.Verdict{}, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return filters.Verdict{}, err
	}
	if int64(len(b)) != m.Size {
		return filters.Verdict{}, errors.New("message size does not match Message.Size")
	}
	f.mu.Lock()
	f.seen = append(f.seen, string(b))
	f.mu.Unlock()
	return f.verdict, f.err
}

func (f *fakeFilter) Unchecked(error) []spool.Header { return f.unchecked }

// Owns X-Spam-* when the fake plays spamd, as the real one does.
func (f *fakeFilter) Owns(name, _ string) bool {
	return f.name == "spamd" && strings.HasPrefix(strings.ToLower(name), "x-spam-")
}

func (f *fakeFilter) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func hdr(text string) spool.Header { return spool.Header{Type: ' ', Text: text} }

// newFilterServer is newTestServer with the content scanners replaced by
// entries.
func newFilterServer(t *testing.T, entries ...filters.Entry) *testServer {
	t.Helper()
	return newTestServerWith(t, nil, scannerPipeline(entries))
}

// scannerPipeline builds the relay policy and entries as the scanners.
func scannerPipeline(entries []filters.Entry) func(*config.Config, filters.Logger) *filters.Pipeline {
	return func(cfg *config.Config, log filters.Logger) *filters.Pipeline {
		policy := address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks)
		return filters.New(filters.Options{Checks: []filters.Step{{Check: address.NewCheck(policy)}}, Scanners: entries, Log: log})
	}
}

// spamMessage arrives with a verdict of its own, which must not survive.
const spamMessage = "X-Spam-Status: No, score=-5.0\n" +
	"From: a@client.test\n" +
	"x-spam-flag: NO\n" +
	"Subject: cheap pills\n" +
	"X-Spam-Report:\n\tall clean,\n\ttrust me\n" +
	"Message-ID: <m1@client.test>\n" +
	"\n" +
	"Buy now.\n"

var idRE = regexp.MustCompile(`[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}`)

// receivedRE matches our Received header in the spool's form.
var receivedRE = regexp.MustCompile(`^Received: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mx\.example\.test with ESMTP id (\S+)\n\t\(envelope-from <a@client\.test>\)\n\tfor <u@example\.test>; [^\n]+\n`)

// stripReceived checks msg starts with our Received and returns the rest.
func stripReceived(t *testing.T, msg string) string {
	t.Helper()
	loc := receivedRE.FindStringIndex(msg)
	if loc == nil {
		t.Fatalf("message does not start with our Received:\n%s", msg)
	}
	return msg[loc[1]:]
}

func TestFilterVerdicts(t *testing.T) {
	// What every filter reads: the client's X-Spam-* gone, our Received first.
	const scanned = "From: a@client.test\nSubject: cheap pills\nMessage-ID: <m1@client.test>\n\nBuy now.\n"
	spamd := func(v filters.Verdict, err error, onError string) filters.Entry {
		return filters.Entry{Filter: &fakeFilter{name: "spamd", verdict: v, err: err,
			unchecked: []spool.Header{hdr("X-Spam-Status: Unchecked\n")}}, OnError: onError}
	}
	clamd := func(v filters.Verdict) filters.Entry {
		return filters.Entry{Filter: &fakeFilter{name: "clamd", verdict: v}}
	}
	spam := filters.Verdict{Action: filters.Accept, Log: "spamd score=12.1 required=5.0",
		Headers: []spool.Header{hdr("X-Spam-Status: Yes, score=12.1\n"), hdr("X-Spam-Flag: YES\n")}}
	clean := filters.Verdict{Action: filters.Accept, Log: "clamd clean", Headers: []spool.Header{hdr("X-Virus-Scanned: clamd\n")}}
	virus := filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
		Text: "Virus found: Eicar-Test-Signature", Reason: "virus Eicar-Test-Signature", Log: "clamd virus=Eicar-Test-Signature"}

	tests := []struct {
		name    string
		entries []filters.Entry
		reply   string // the DATA reply, ID for the queue ID
		queued  string // the spooled message after our Received; "" = nothing queued
		mainlog []string
		reject  string // the rejectlog line after the timestamp
	}{
		{
			name:    "accepted: stamps after Received, in entry order",
			entries: []filters.Entry{spamd(spam, nil, ""), clamd(clean)},
			reply:   "250 2.0.0 OK id=ID",
			queued: "X-Spam-Status: Yes, score=12.1\nX-Spam-Flag: YES\nX-Virus-Scanned: clamd\n" +
				"From: a@client.test\nSubject: cheap pills\nMessage-ID: <m1@client.test>\n\nBuy now.\n",
			mainlog: []string{
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> content scan: accept: spamd score=12.1 required=5.0 (accept, Nms); clamd clean (accept, Nms)`,
				`ID <= a@client.test H=(client.test) [127.0.0.1]:PORT P=esmtp S=331 id=m1@client.test`,
			},
		},
		{
			name:    "virus: the strictest verdict wins",
			entries: []filters.Entry{spamd(spam, nil, ""), clamd(virus)},
			reply:   "550 5.7.1 Virus found: Eicar-Test-Signature",
			mainlog: []string{
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> content scan: reject: spamd score=12.1 required=5.0 (accept, Nms); clamd virus=Eicar-Test-Signature (reject, Nms)`,
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> rejected after DATA: Virus found: Eicar-Test-Signature`,
			},
			reject: `ID H=(client.test) [127.0.0.1] F=<a@client.test> rejected after DATA: Virus found: Eicar-Test-Signature`,
		},
		{
			name:    "scanner down, on_error = tempfail",
			entries: []filters.Entry{spamd(filters.Verdict{}, errors.New("connection refused"), filters.OnErrorTempfail)},
			reply:   "451 4.7.1 Temporary local problem - please try later",
			mainlog: []string{
				`ID spamd failed: connection refused (on_error=tempfail)`,
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> content scan: tempfail: spamd failed: connection refused (tempfail, Nms)`,
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> temporarily rejected after DATA: Temporary local problem - please try later`,
			},
			reject: `ID H=(client.test) [127.0.0.1] F=<a@client.test> temporarily rejected after DATA: Temporary local problem - please try later`,
		},
		{
			name:    "scanner down, on_error = accept",
			entries: []filters.Entry{spamd(filters.Verdict{}, errors.New("connection refused"), filters.OnErrorAccept), clamd(clean)},
			reply:   "250 2.0.0 OK id=ID",
			queued: "X-Spam-Status: Unchecked\nX-Virus-Scanned: clamd\n" +
				"From: a@client.test\nSubject: cheap pills\nMessage-ID: <m1@client.test>\n\nBuy now.\n",
			mainlog: []string{
				`ID spamd failed: connection refused (on_error=accept)`,
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> content scan: accept: spamd failed: connection refused (accept, Nms); clamd clean (accept, Nms)`,
				`ID <= a@client.test H=(client.test) [127.0.0.1]:PORT P=esmtp S=308 id=m1@client.test`,
			},
		},
		{
			name:    "discarded: 250, nothing queued",
			entries: []filters.Entry{spamd(filters.Verdict{Action: filters.Discard, Reason: "score 30.2 above discard"}, nil, "")},
			reply:   "250 2.0.0 OK id=ID",
			mainlog: []string{
				`ID H=(client.test) [127.0.0.1] F=<a@client.test> content scan: discard: spamd (discard, Nms)`,
				`ID <= a@client.test H=(client.test) [127.0.0.1]:PORT P=esmtp S=260 id=m1@client.test`,
				`ID => blackhole (DATA ACL discarded recipients): score 30.2 above discard`,
				`ID Completed`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newFilterServer(t, tt.entries...)
			c := dial(t, ts.addr(0))
			c.greet()
			reply := c.sendMessage("a@client.test", []string{"u@example.test"}, spamMessage)
			ids := ts.queued()
			var id spool.ID
			if m := regexp.MustCompile(`id=(\S+)`).FindStringSubmatch(reply); m != nil {
				id = spool.ID(m[1])
				reply = strings.Replace(reply, m[1], "ID", 1)
			}
			if reply != tt.reply {
				t.Errorf("DATA reply %q, want %q", reply, tt.reply)
			}
			// The session goes on after any verdict.
			c.expect("RSET", "250 ")
			c.expect("QUIT", "221 ")

			for _, e := range tt.entries {
				for _, m := range e.Filter.(*fakeFilter).messages() {
					if got := stripReceived(t, m); got != scanned {
						t.Errorf("%s read:\n%s\nwant:\n%s", e.Filter.Name(), got, scanned)
					}
				}
			}
			switch {
			case tt.queued == "" && len(ids) > 0:
				t.Errorf("queued %v, want nothing", ids)
			case tt.queued != "" && (len(ids) != 1 || ids[0] != id):
				t.Errorf("queued %v, want [%s]", ids, id)
			case tt.queued != "":
				if got := stripReceived(t, ts.message(id)); got != tt.queued {
					t.Errorf("queued message:\n%s\nwant:\n%s", got, tt.queued)
				}
				env, err := ts.spool.Load(id)
				if err != nil {
					t.Fatal(err)
				}
				var deleted []string
				for _, h := range env.Headers {
					if h.Type == '*' {
						deleted = append(deleted, h.Text)
					}
				}
				want := []string{"X-Spam-Status: No, score=-5.0\n", "x-spam-flag: NO\n", "X-Spam-Report:\n\tall clean,\n\ttrust me\n"}
				if strings.Join(deleted, "") != strings.Join(want, "") {
					t.Errorf("headers marked deleted in the -H file: %q, want the client's X-Spam-*: %q", deleted, want)
				}
			}
			if got := scanLog(ts, "mainlog"); strings.Join(got, "\n") != strings.Join(tt.mainlog, "\n") {
				t.Errorf("mainlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.mainlog, "\n"))
			}
			if got := strings.Join(scanLog(ts, "rejectlog"), "\n"); got != tt.reject {
				t.Errorf("rejectlog:\n%s\nwant:\n%s", got, tt.reject)
			}
		})
	}
}

// TestFilterQuarantine: a quarantined message is stamped and kept in the
// quarantine area with its reason, acknowledged, and never queued.
func TestFilterQuarantine(t *testing.T) {
	spamd := &fakeFilter{name: "spamd", verdict: filters.Verdict{Action: filters.Quarantine, Reason: "spam score 9.0 (quarantine_score 8.0)",
		Log: "spamd score=9.0 required=5.0", Headers: []spool.Header{hdr("X-Spam-Status: Yes, score=9.0\n"), hdr("X-Spam-Flag: YES\n")}}}
	ts := newFilterServer(t, filters.Entry{Filter: spamd})
	c := dial(t, ts.addr(0))
	c.greet()
	reply := c.sendMessage("a@client.test", []string{"u@example.test"}, spamMessage)
	c.expect("QUIT", "221 ")
	m := regexp.MustCompile(`^250 2\.0\.0 OK id=(\S+)$`).FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("DATA reply %q, want 250 OK id=ID", reply)
	}
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("queued %v, want nothing", ids)
	}
	q, err := ts.spool.QuarantineList()
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 || string(q[0].Envelope.ID) != m[1] || q[0].Reason != "spam score 9.0 (quarantine_score 8.0)" {
		t.Fatalf("quarantine holds %+v, want %s with its reason", q, m[1])
	}
	var live []string
	for _, h := range q[0].Envelope.Headers {
		if h.Type != '*' {
			live = append(live, h.Text)
		}
	}
	want := "X-Spam-Status: Yes, score=9.0\nX-Spam-Flag: YES\nFrom: a@client.test\nSubject: cheap pills\nMessage-ID: <m1@client.test>\n"
	if got := stripReceived(t, strings.Join(live, "")); got != want {
		t.Errorf("quarantined headers:\n%s\nwant:\n%s", got, want)
	}
	wantLog := []string{
		`ID H=(client.test) [127.0.0.1] F=<a@client.test> content scan: quarantine: spamd score=9.0 required=5.0 (quarantine, Nms)`,
		`ID quarantined: a@client.test H=(client.test) [127.0.0.1]:PORT P=esmtp S=307 id=m1@client.test: spam score 9.0 (quarantine_score 8.0)`,
	}
	if got := scanLog(ts, "mainlog"); strings.Join(got, "\n") != strings.Join(wantLog, "\n") {
		t.Errorf("mainlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLog, "\n"))
	}
}

// scanLog returns a log file's lines without timestamps, with id, the
// client port and scan times made stable.
func scanLog(ts *testServer, name string) []string {
	var out []string
	port := regexp.MustCompile(`\]:\d+ `)
	ms := regexp.MustCompile(`, \d+ms\)`)
	for _, l := range logLines(ts, name) {
		l = idRE.ReplaceAllString(l, "ID")
		l = port.ReplaceAllString(l, "]:PORT ")
		l = ms.ReplaceAllString(l, ", Nms)")
		out = append(out, l)
	}
	return out
}

// TestFilterServeTest: -bh runs the filters on the message it reads and
// traces each verdict, queueing nothing.
func TestFilterServeTest(t *testing.T) {
	const script = "EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n" +
		"X-Spam-Flag: YES\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
	spamd := &fakeFilter{name: "spamd", verdict: filters.Verdict{Action: filters.Quarantine, Reason: "spam score 9.0",
		Log: "spamd score=9.0 required=5.0", Headers: []spool.Header{hdr("X-Spam-Status: Yes, score=9.0\n")}}}
	clamd := &fakeFilter{name: "clamd", err: errors.New("clamd: no verdict within 30s")}
	cfg := config.Default()
	cfg.Hostname = "mx.example.test"
	cfg.Relay.Domains = []string{"example.test"}
	var out, trace bytes.Buffer
	tr := NewTracer(&trace)
	pl := scannerPipeline([]filters.Entry{{Filter: spamd}, {Filter: clamd, OnError: filters.OnErrorAccept}})(cfg, tr)
	srv, err := New(Options{Config: cfg, Trace: tr, Pipeline: pl})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeTest(netip.MustParseAddrPort("192.0.2.1:1234"), strings.NewReader(script), &out); err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`, \d+ms\)`).ReplaceAllString(idRE.ReplaceAllString(trace.String(), "ID"), ", Nms)")
	want := ">>> host in relay.trusted_networks? no\n" +
		">>> MAIL <a@client.test>: accepted\n" +
		">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
		"LOG: PANIC ID clamd failed: no verdict within 30s (on_error=accept)\n" +
		">>> DATA: X-Spam-Flag header from the client removed\n" +
		">>> content scan: spamd score=9.0 required=5.0: quarantine\n" +
		">>> content scan: clamd failed: clamd: no verdict within 30s: accept\n" +
		">>> content scan: verdict quarantine: spam score 9.0\n" +
		">>> content scan: stamped X-Spam-Status: Yes, score=9.0\n" +
		"LOG: ID H=(client.test) [192.0.2.1] F=<a@client.test> content scan: quarantine: spamd score=9.0 required=5.0 (quarantine, Nms); clamd failed: clamd: no verdict within 30s (accept, Nms)\n"
	if got != want {
		t.Errorf("trace:\n%s\nwant:\n%s", got, want)
	}
	if o := idRE.ReplaceAllString(out.String(), "ID"); !strings.Contains(o, "250 2.0.0 OK id=ID (quarantined; not queued: -bh test session)\r\n") {
		t.Errorf("output lacks the quarantine reply:\n%s", o)
	}
	if m := spamd.messages(); len(m) != 1 || !strings.HasSuffix(m[0], "\nSubject: x\n\nbody\n") || strings.Contains(m[0], "X-Spam-Flag") {
		t.Errorf("spamd read %q, want the message without X-Spam-Flag", m)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "spool")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a test session made a spool: %v", err)
	}
}
