package e2e

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mxgate/internal/peertest"
)

// startScannersMxgate writes mxgate's config template for the scanners of
// extra (TOML appended to milterConfig: [spamd], [clamd], [[milter]]) and
// starts it.
func startScannersMxgate(t *testing.T, extra, downstream string) *mxgate {
	t.Helper()
	tmpl := filepath.Join(t.TempDir(), "scanners.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(milterConfig+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return startMxgateConfig(t, tmpl, downstream)
}

// paniclog returns the lines of DATA_DIR/log/paniclog; none before it
// exists.
func (g *mxgate) paniclog() []string {
	b, err := os.ReadFile(filepath.Join(g.dataDir, "log", "paniclog"))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			g.t.Errorf("reading paniclog: %v", err)
		}
		return nil
	}
	if len(b) == 0 { // opened at start-up, nothing written
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// fieldsNamed returns the fields of hs (unfolded, as headers returns them)
// with the given name.
func fieldsNamed(hs []string, name string) []string {
	var out []string
	for _, h := range hs {
		if n, _, _ := strings.Cut(h, ":"); strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, h)
		}
	}
	return out
}

// spamdStatusRE is filters/spamd's X-Spam-Status: one decimal, nothing
// after the score (rspamd writes two decimals and "required=").
var spamdStatusRE = regexp.MustCompile(`^X-Spam-Status: (Yes|No), score=(-?\d+\.\d)$`)

// TestBothScanners: rspamd as a milter and spamd as [spamd] on the same
// gateway both produce a spam verdict; the delivered message carries one,
// the gateway's own: exactly one X-Spam-Status (spamd's format) and one
// X-Spam-Flag, every X-Spam-* field of spamd's set and consistent with its
// score. rspamd's own fields that are not X-Spam-* (X-Spamd-Bar,
// X-Spamd-Result, X-Rspamd-*) may stay. The mainlog shows that rspamd did
// add its X-Spam-Status, so the test cannot pass by rspamd staying silent.
// A subtest checks spamd.subject_tag end to end with the real spamd.
func TestBothScanners(t *testing.T) {
	t.Parallel()
	spamd := startScanner(t, "spamd")
	s := startSink(t)

	spam := strings.ReplaceAll(corpusMessage(t, "pharmacy-spam.eml"), "\r\n", "\n")
	const subject = "cheap viagra cialis levitra no prescription canadian pharmacy"
	if !strings.Contains(spam, "\nSubject: "+subject+"\n") {
		t.Fatalf("testdata/messages/pharmacy-spam.eml: Subject is not %q", subject)
	}
	withSubject := func(field string) string {
		return strings.Replace(spam, "\nSubject: "+subject+"\n", "\n"+field, 1)
	}

	tagged := startScannersMxgate(t,
		"\n[spamd]\naddress = [\""+spamd+"\"]\ntimeout = \"20s\"\nsubject_tag = \"***SPAM***\"\n",
		s.URL())
	t.Run("subject tag", func(t *testing.T) {
		g := tagged.in(t)
		tests := []struct {
			name string
			msg  string
			want string // the one Subject delivered, unfolded
			raw  string // a regular expression the delivered copy must match ("" = none)
		}{
			{"plain", spam, "Subject: ***SPAM*** " + subject, ""},
			{"folded", withSubject("Subject: cheap viagra cialis levitra\n\tno prescription canadian pharmacy\n"),
				"Subject: ***SPAM*** " + subject,
				`(?m)^Subject: \*\*\*SPAM\*\*\* cheap viagra cialis levitra\r?\n\tno prescription canadian pharmacy\r?$`},
			{"already tagged: not twice", withSubject("Subject: ***SPAM*** " + subject + "\n"),
				"Subject: ***SPAM*** " + subject, ""},
			{"no Subject: one is added", withSubject(""), "Subject: ***SPAM***", ""},
			{"ham: untouched", corpusMessage(t, "exim-basics-ham.eml"), "", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				g := g.in(t)
				r := sendOne(t, g.addr, tc.msg)
				if r.Code != 250 {
					t.Fatalf("end of data -> %q, want 250", r)
				}
				g.waitCompleted(r.ID())
				m := sinkCopy(t, s, r.ID())
				hs := headers(m.raw)
				got := fieldsNamed(hs, "Subject")
				want := tc.want
				if want == "" { // untouched: as sent
					want = fieldsNamed(headers(tc.msg), "Subject")[0]
				}
				if len(got) != 1 || got[0] != want {
					t.Errorf("Subject fields %q, want exactly %q", got, want)
				}
				if tc.raw != "" && !regexp.MustCompile(tc.raw).MatchString(m.raw) {
					t.Errorf("delivered copy does not match %s (folding lost?):\n%s", tc.raw, m.raw[:min(len(m.raw), 2000)])
				}
				if status := fieldsNamed(hs, "X-Spam-Status"); tc.name != "ham: untouched" &&
					(len(status) != 1 || !strings.HasPrefix(status[0], "X-Spam-Status: Yes, ")) {
					t.Errorf("X-Spam-Status %q: the message was not scored as spam, the case proves nothing", status)
				}
			})
		}
	})

	// rspamd is started only now: the subject tag needs none.
	rspamd := startScanner(t, "rspamd")
	both := startScannersMxgate(t,
		"\n[spamd]\naddress = [\""+spamd+"\"]\ntimeout = \"20s\"\n"+
			"\n[[milter]]\naddress = \"inet:"+rspamd+"\"\nname = \"rspamd\"\neom_timeout = \"30s\"\n",
		s.URL())
	t.Run("one verdict", func(t *testing.T) {
		g := both.in(t)
		// The sender's forged verdict goes first, as always.
		forged := "X-Spam-Status: No, score=-10.0\nX-Spam-Flag: NO\n" + spam
		r := sendOne(t, g.addr, forged)
		if r.Code != 250 {
			t.Fatalf("end of data -> %q, want 250", r)
		}
		id := r.ID()
		g.waitCompleted(id)
		// rspamd answered with its own X-Spam-Status (logged under the
		// message's ID: filters/milter's log lines carry it).
		g.requireLog(id, `milter rspamd: add header X-Spam-Status: `)
		m := sinkCopy(t, s, id)
		hs := headers(m.raw)

		status := fieldsNamed(hs, "X-Spam-Status")
		if len(status) != 1 {
			t.Fatalf("%d X-Spam-Status fields, want exactly one (spamd's): %q", len(status), status)
		}
		sm := spamdStatusRE.FindStringSubmatch(status[0])
		if sm == nil || sm[1] != "Yes" {
			t.Fatalf("%q is not spamd's verdict on spam (want %s with Yes)", status[0], spamdStatusRE)
		}
		score, _ := strconv.ParseFloat(sm[2], 64)
		if flags := fieldsNamed(hs, "X-Spam-Flag"); len(flags) != 1 || flags[0] != "X-Spam-Flag: YES" {
			t.Errorf("X-Spam-Flag fields %q, want exactly one \"X-Spam-Flag: YES\"", flags)
		}
		// Every X-Spam-* field is spamd's, once, and agrees with its score.
		want := map[string]string{
			"x-spam-status": status[0],
			"x-spam-score":  "X-Spam-Score: " + strconv.Itoa(int(math.Round(score*10))),
			"x-spam-bar":    "X-Spam-Bar: " + strings.Repeat("+", min(int(score), 50)),
			"x-spam-flag":   "X-Spam-Flag: YES",
		}
		seen := map[string]int{}
		for _, h := range hs {
			name, _, _ := strings.Cut(h, ":")
			n := strings.ToLower(strings.TrimSpace(name))
			if !strings.HasPrefix(n, "x-spam-") {
				continue
			}
			seen[n]++
			if w, ok := want[n]; !ok || h != w {
				t.Errorf("delivered %q; the X-Spam-* fields must be spamd's set %q", h, slices.Sorted(mapValues(want)))
			}
		}
		for n := range want {
			if seen[n] != 1 {
				t.Errorf("%d %s fields, want 1", seen[n], n)
			}
		}
		if len(fieldsNamed(hs, "X-Spamd-Bar"))+len(fieldsNamed(hs, "X-Spamd-Result")) == 0 {
			t.Logf("note: none of rspamd's own X-Spamd-* fields was kept (allowed)")
		}
		if p := g.paniclog(); len(p) > 0 {
			t.Errorf("paniclog is not empty with both scanners up:\n%s", strings.Join(p, "\n"))
		}
	})
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// sinkCopy returns the one copy smtp-sink received of message id.
func sinkCopy(t *testing.T, s *sink, id string) sinkMessage {
	t.Helper()
	var found []sinkMessage
	for _, m := range s.messages(t) {
		if slices.Contains(m.ids, id) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("smtp-sink holds %d copies of %s, want 1", len(found), id)
	}
	return found[0]
}

// panicLine matches one paniclog line of message id: "DATE TIME ID rest".
func panicLine(id, pattern string) *regexp.Regexp {
	return regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ` + regexp.QuoteMeta(id) + ` ` + pattern)
}

// TestBothScannersFailPaniclog: a scanner that fails writes a paniclog
// line naming the message, as Exim does for spamd and clamd ("spam acl
// condition: ...", "malware acl condition: clamd: ..."): spamd and clamd
// refusing connections, both hanging past their timeouts, and spamd
// skipped by its open circuit breaker. With on_error = "accept" the
// messages are accepted (stamped Unchecked), so their IDs are known. The
// expected line is "ID spamd failed: ERROR" ("ID clamd failed: ERROR");
// a breaker that opens also says so: "... spamd ... circuit breaker
// opened ...".
func TestBothScannersFailPaniclog(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	dead := func() string { return fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false)) } // nothing listens there
	silent := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peertest.Silent(t, l) // accepts and never answers
		return l.Addr().String()
	}
	scanners := func(spamd, clamd, timeout string) string {
		return fmt.Sprintf("\n[spamd]\naddress = [%q]\non_error = \"accept\"\ntimeout = %q\n"+
			"\n[clamd]\naddress = [%q]\non_error = \"accept\"\ntimeout = %q\n", spamd, timeout, clamd, timeout)
	}
	refused := startScannersMxgate(t, scanners(dead(), dead(), "20s"), s.URL())
	hung := startScannersMxgate(t, scanners(silent(), silent(), "1s"), s.URL())
	breaking := startScannersMxgate(t, scanners(dead(), dead(), "20s"), s.URL())
	ham := corpusMessage(t, "exim-basics-ham.eml")

	t.Run("connection refused", func(t *testing.T) {
		g := refused.in(t)
		r := sendOne(t, g.addr, ham)
		if r.Code != 250 {
			t.Fatalf("end of data -> %q, want 250 (on_error = accept)", r)
		}
		requirePanic(g, r.ID(), `spamd failed: .*(?i:connection refused)`, `clamd failed: .*(?i:connection refused)`)
	})
	t.Run("timeout", func(t *testing.T) {
		g := hung.in(t)
		r := sendOne(t, g.addr, ham)
		if r.Code != 250 {
			t.Fatalf("end of data -> %q, want 250 (on_error = accept)", r)
		}
		const timedOut = `.*(?i:timeout|timed out|deadline exceeded|no verdict within)`
		requirePanic(g, r.ID(), `spamd failed: `+timedOut, `clamd failed: `+timedOut)
	})
	t.Run("circuit breaker", func(t *testing.T) {
		// The gateway opens a scanner's breaker after 5 failures in a
		// row (gateway.breakerAfter): the 6th message is not sent to
		// the scanners.
		g := breaking.in(t)
		var ids []string
		for range 6 {
			r := sendOne(t, g.addr, ham)
			if r.Code != 250 {
				t.Fatalf("end of data -> %q, want 250 (on_error = accept)", r)
			}
			ids = append(ids, r.ID())
		}
		for _, id := range ids {
			requirePanic(g, id, `spamd failed: `, `clamd failed: `)
		}
		last := ids[len(ids)-1]
		requirePanic(g, last, `spamd failed: .*circuit breaker open`)
		if !slices.ContainsFunc(g.paniclog(), regexp.MustCompile(`spamd.* circuit breaker opened`).MatchString) {
			t.Errorf("paniclog does not say spamd's circuit breaker opened:\n%s", strings.Join(g.paniclog(), "\n"))
		}
	})
}

// requirePanic fails the test unless some paniclog line of message id
// matches each pattern.
func requirePanic(g *mxgate, id string, patterns ...string) {
	g.t.Helper()
	lines := g.paniclog()
	for _, p := range patterns {
		if re := panicLine(id, p); !slices.ContainsFunc(lines, re.MatchString) {
			g.t.Errorf("paniclog has no line matching %s; it holds:\n%s", re, strings.Join(lines, "\n"))
		}
	}
}
