package rcptverify

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"mxgate/filters"
	"mxgate/smtptext"
)

// TestCheck: the replies and log lines of the check, per answer.
func TestCheck(t *testing.T) {
	good := filepath.Join("testdata", "recipients", "good")
	missing := filepath.Join(t.TempDir(), "none")
	s := startFakeStore(t, users("known@example.test"))
	stores := map[string]Store{
		"example.test":   {Name: "downstream", Source: SourceFile, Path: good, Delimiter: "+", Lowercase: true},
		"callout.test":   calloutTo(t, s.addr),
		"missing.test":   {Name: "broken", Source: SourceFile, Path: missing},
		"unchecked.test": {Name: "legacy", Source: SourceNone},
	}
	opts := func(deferOK bool) Options {
		o := testOptions(Store{})
		o.DeferOK = deferOK
		o.Store = func(d string) (Store, bool) { st, ok := stores[d]; return st, ok }
		return o
	}
	tests := []struct {
		name, rcpt string
		deferOK    bool
		action     filters.Action
		reply      string // code, enhanced code and text
		log        string // the end of the rejectlog line, or a mainlog line
		trace      string
	}{
		{"listed", "Known+x@example.test", false, filters.Accept, "", "",
			"recipient verify for <Known+x@example.test>: file " + good + " as <known@example.test>: found (listed in " + good + "): accepted"},
		{"unknown in the file", "nobody@example.test", false, filters.Reject,
			"550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
			"Unrouteable address (not in recipients file " + good + ")", "not found"},
		{"unknown at the store", "nobody@callout.test", false, filters.Reject,
			"550 5.1.1 <nobody@callout.test>: Recipient address rejected: User unknown",
			`response to "RCPT TO:<nobody@callout.test>" from 127.0.0.1 [127.0.0.1] was: 550 5.1.1 <nobody@callout.test> User doesn't exist`, "callout to lmtp " + s.addr},
		{"no answer", "a@missing.test", false, filters.Tempfail,
			"451 4.4.3 <a@missing.test>: Recipient address verification failed: mail store not available",
			"Could not complete recipient verify: recipients file: stat " + missing, "deferred"},
		{"no answer, defer_ok", "a@missing.test", true, filters.Accept, "",
			"recipient verify defer for <a@missing.test>: recipients file: stat " + missing, "accepted (recipient_verify.defer_ok)"},
		{"not verified", "a@unchecked.test", false, filters.Accept, "", "", `route legacy has verify_recipients = "none"`},
		{"not a relay domain", "a@elsewhere.test", false, filters.Accept, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, opts(tc.deferOK))
			sess := NewCheck(v).Open(context.Background(), &filters.Conn{})
			got := sess.Rcpt(context.Background(), &filters.Tx{Sender: "a@sender.test"}, tc.rcpt)
			if got.Action != tc.action {
				t.Errorf("Action = %v, want %v (%+v)", got.Action, tc.action, got)
			}
			if tc.reply != "" {
				if r := smtptext.Reply(got.Code, got.Enhanced, got.Text); r != tc.reply {
					t.Errorf("reply %q, want %q", r, tc.reply)
				}
			}
			log := got.Log
			if len(got.Logs) > 0 {
				log = got.Logs[0].Text
			}
			if !strings.HasPrefix(log, tc.log) {
				t.Errorf("log %q, want it to start with %q", log, tc.log)
			}
			trace := strings.Join(got.Trace, "\n")
			if tc.trace == "" && trace != "" || !strings.Contains(trace, tc.trace) {
				t.Errorf("trace %q, want %q", trace, tc.trace)
			}
		})
	}
}
