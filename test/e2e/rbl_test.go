package e2e

import (
	"fmt"
	"maps"
	"mxgate/internal/peertest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// startRbldnsd serves the DNS lists of the RBL tests on 127.0.0.1 (UDP):
// the rbl package's zones of testdata/rbl plus the loopback clients of
// test/e2e/testdata/rbl, one dataset per zone. It returns the resolver
// address; rbldnsd is stopped when the test ends.
func startRbldnsd(t *testing.T) string {
	t.Helper()
	requirePrograms(t, "rbldnsd")
	dir, port := t.TempDir(), peertest.FreePort(t, false)
	zone := func(name string) string { return filepath.Join(repoRoot, "testdata", "rbl", name) }
	local := func(name string) string { return filepath.Join(repoRoot, "test", "e2e", "testdata", "rbl", name) }
	return peertest.Start(t, "rbldnsd", dir, port,
		"bl.test:ip4set:"+zone("bl4.zone")+","+local("bl-loopback.zone"),
		"xbl.test:ip4set:"+zone("xbl.zone")+","+local("xbl-loopback.zone"),
		"wl.test:ip4set:"+zone("wl.zone")+","+local("wl-loopback.zone"),
		"dbl.test:dnset:"+zone("dbl.zone"),
	)
}

// startRBLMxgate runs mxgate with the lists of testdata/rbl.toml.tmpl,
// asking resolver, refusing at rejectAt ("rcpt" or "connect").
func startRBLMxgate(t *testing.T, resolver, rejectAt, downstream string) *mxgate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "rbl.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@RESOLVER@", resolver, "@REJECT_AT@", rejectAt).Replace(string(b))
	tmpl := filepath.Join(t.TempDir(), "rbl.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return startMxgateConfig(t, tmpl, downstream)
}

// rejectlog returns DATA_DIR/log/rejectlog without the timestamps.
func (g *mxgate) rejectlog() []string {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.dataDir, "log", "rejectlog"))
	if err != nil && !os.IsNotExist(err) {
		g.t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		lines = append(lines, strings.TrimSuffix(l[len("2006-01-02 15:04:05 "):], "\n"))
	}
	return lines
}

// TestRBL sends mail from loopback clients that the lists of a real
// rbldnsd name (or not) and checks what each gets: the 554 with the
// zone's TXT reason, delivery with or without the X-RBL-Score stamp, and
// the rejectlog lines, which eximstats counts per list.
func TestRBL(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	g := startRBLMxgate(t, startRbldnsd(t), "rcpt", s.URL())
	msg := dataBytes([]byte("X-RBL-Score: -10 (forged by the sender)\nSubject: rbl test\n\nbody\n"))

	tests := []struct {
		name         string
		from, helo   string // client address, EHLO name
		sender       string
		rcpt         string // the reply to RCPT; "" = accepted
		header       string // X-RBL-Score of the delivered message; "" = none
		rejectlogged string
	}{
		{
			name: "listed client", from: "127.0.0.20", helo: "client.test", sender: "a@client.test",
			rcpt:         "554 5.7.1 Service unavailable; client [127.0.0.20] blocked using bl.test (Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.20)",
			rejectlogged: "H=(client.test) [127.0.0.20] F=<a@client.test> rejected RCPT <u0@example.test>: 127.0.0.20 is listed at bl.test (127.0.0.2: Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.20)",
		},
		{
			name: "clean client", from: "127.0.0.3", helo: "client.test", sender: "a@client.test",
		},
		{
			name: "allow-listed client", from: "127.0.0.22", helo: "client.test", sender: "a@client.test",
		},
		{
			name: "trusted client on every list", from: "127.0.0.2", helo: "client.test", sender: "a@spam-domain.test",
		},
		{
			name: "below reject_score", from: "127.0.0.21", helo: "client.test", sender: "a@client.test",
			header: "X-RBL-Score: 2 (xbl.test=2)",
		},
		{
			name: "HELO name tips the sum", from: "127.0.0.21", helo: "spam-domain.test", sender: "a@client.test",
			rcpt:         "554 5.7.1 Service unavailable; client [127.0.0.21] blocked using xbl.test (Exploited host 127.0.0.21 in xbl.test)",
			rejectlogged: "H=(spam-domain.test) [127.0.0.21] F=<a@client.test> rejected RCPT <u5@example.test>: 127.0.0.21 is listed at xbl.test (127.0.0.4: Exploited host 127.0.0.21 in xbl.test); RBL score 3 (xbl.test=2, dbl.test=1)",
		},
		{
			name: "sender domain", from: "127.0.0.3", helo: "client.test", sender: "a@spam-domain.test",
			rcpt:         "554 5.7.1 Service unavailable; sender domain spam-domain.test blocked using dbl.test (Spammer domain spam-domain.test listed in dbl.test)",
			rejectlogged: "H=(client.test) [127.0.0.3] F=<a@spam-domain.test> rejected RCPT <u6@example.test>: sender domain spam-domain.test is listed at dbl.test (127.0.1.2: Spammer domain spam-domain.test listed in dbl.test)",
		},
	}
	header := map[string]string{} // ID -> the X-RBL-Score wanted
	var wantRejects []string
	for i, tc := range tests {
		rcpt := fmt.Sprintf("u%d@example.test", i)
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, tc.from, g.addr)
			c.expect(t, "EHLO "+tc.helo, 250)
			c.expect(t, "MAIL FROM:<"+tc.sender+">", 250)
			if tc.rcpt != "" {
				r, err := c.cmd("RCPT TO:<" + rcpt + ">")
				if err != nil {
					t.Fatal(err)
				}
				if got := r.String(); got != tc.rcpt {
					t.Errorf("RCPT from %s -> %q, want %q", tc.from, got, tc.rcpt)
				}
				wantRejects = append(wantRejects, tc.rejectlogged)
				c.expect(t, "QUIT", 221)
				return
			}
			c.expect(t, "RCPT TO:<"+rcpt+">", 250)
			c.expect(t, "DATA", 354)
			if err := c.write(msg); err != nil {
				t.Fatal(err)
			}
			r, err := c.read()
			if err != nil || r.Code != 250 || r.ID() == "" {
				t.Fatalf("end of data -> %v (%v), want 250 with id=", r, err)
			}
			header[r.ID()] = tc.header
			c.expect(t, "QUIT", 221)
		})
	}

	ids := slices.Collect(maps.Keys(header))
	g.waitCompleted(ids...)
	got := s.messages(t)
	if len(got) != len(ids) {
		t.Errorf("smtp-sink received %d messages, want %d", len(got), len(ids))
	}
	for _, m := range got {
		if len(m.ids) != 1 {
			t.Errorf("%s: mxgate IDs %v, want one", m.path, m.ids)
			continue
		}
		var stamps []string
		for _, h := range headers(m.raw) {
			if name, _, _ := strings.Cut(h, ":"); strings.EqualFold(name, "X-RBL-Score") {
				stamps = append(stamps, h)
			}
		}
		want := header[m.ids[0]]
		if (want == "" && len(stamps) != 0) || (want != "" && !slices.Equal(stamps, []string{want})) {
			t.Errorf("message %s: X-RBL-Score headers %q, want %q (the sender's own removed)", m.ids[0], stamps, want)
		}
	}
	if got := g.rejectlog(); !slices.Equal(got, wantRejects) {
		t.Errorf("rejectlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRejects, "\n"))
	}

	// eximstats counts the refusals, and the lists by name.
	totals, report := eximstats(t, filepath.Join(g.dataDir, "log", "mainlog"))
	if totals.Rejects != len(wantRejects) {
		t.Errorf("eximstats counts %d rejects, want %d:\n%s", totals.Rejects, len(wantRejects), report)
	}
	for _, reason := range []string{"Listed at bl.test", "Listed at xbl.test", "Listed at dbl.test"} {
		if !strings.Contains(report, reason) {
			t.Errorf("eximstats report names no rejection reason %q:\n%s", reason, report)
		}
	}
}

// TestRBLAtConnect: with reject_at = "connect" a listed client gets the
// 554 instead of the greeting, and a clean one its 220.
func TestRBLAtConnect(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	g := startRBLMxgate(t, startRbldnsd(t), "connect", s.URL())

	c, greeting, err := dial("127.0.0.20", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := "554 5.7.1 Service unavailable; client [127.0.0.20] blocked using bl.test (Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.20)"
	if got := greeting.String(); got != want {
		t.Errorf("greeting to 127.0.0.20: %q, want %q", got, want)
	}
	if r, err := c.read(); err == nil {
		t.Errorf("after the refusal the connection is still open: read %v", r)
	}

	clean := mustDial(t, "127.0.0.3", g.addr)
	clean.expect(t, "EHLO client.test", 250)
	clean.send(t, "a@client.test", []string{"u@example.test"}, dataBytes([]byte("Subject: clean\n\nbody\n")))
	clean.expect(t, "QUIT", 221)

	wantLog := []string{`H=[127.0.0.20] rejected connection in "connect" ACL: 127.0.0.20 is listed at bl.test (127.0.0.2: Listed in bl.test, see http://bl.test/lookup?ip=127.0.0.20)`}
	if got := g.rejectlog(); !slices.Equal(got, wantLog) {
		t.Errorf("rejectlog:\n%s\nwant:\n%s", strings.Join(got, "\n"), wantLog[0])
	}
}
