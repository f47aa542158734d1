package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"mxgate/deliver"
	"mxgate/dsn"
	"mxgate/spool"
)

const hostname = "mx.example.test"

func failedWith(reply string) deliver.Result {
	return deliver.Result{Status: deliver.Failed, Host: testHost, Reply: reply, Err: "SMTP error from remote mail server after RCPT TO: " + reply}
}

// notifications lists the messages from the null sender in the spool.
func (e *env) notifications() []spool.ID {
	e.t.Helper()
	ids, err := e.sp.List()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []spool.ID
	for _, id := range ids {
		if e.load(id).Sender == "" {
			out = append(out, id)
		}
	}
	return out
}

// size is the S= of id's arrival line.
func (e *env) size(id spool.ID) int64 {
	e.t.Helper()
	_, n, err := e.sp.OpenMessage(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// report is a notification as its receiver reads it: headers, text part
// and delivery-status part.
type report struct {
	msg          *mail.Message
	text, status string
}

func (e *env) readReport(id spool.ID) report {
	e.t.Helper()
	rc, _, err := e.sp.OpenMessage(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatal(err)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		e.t.Fatalf("notification %s does not parse: %v", id, err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		e.t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			e.t.Fatal(err)
		}
		pb, _ := io.ReadAll(p)
		parts = append(parts, string(pb))
	}
	if len(parts) != 3 {
		e.t.Fatalf("notification %s has %d parts, want 3", id, len(parts))
	}
	return report{msg, parts[0], parts[1]}
}

// bounce is the one bounce in the spool about parent: to alice@up.test,
// naming exactly the failed recipients with the given statuses.
func (e *env) bounce(parent spool.ID, failed ...string) spool.ID {
	e.t.Helper()
	var found []spool.ID
	for _, id := range e.notifications() {
		if id != parent {
			found = append(found, id)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("%d notifications in the spool (%v), want one bounce", len(found), found)
	}
	id := found[0]
	ev := e.load(id)
	if !slices.Equal(ev.Recipients, []string{"alice@up.test"}) {
		e.t.Errorf("bounce %s to %v, want alice@up.test", id, ev.Recipients)
	}
	r := e.readReport(id)
	if got := r.msg.Header.Get("Subject"); got != "Mail delivery failed: returning message to sender" {
		e.t.Errorf("bounce Subject %q", got)
	}
	if got, want := strings.Join(strings.Fields(r.msg.Header.Get("X-Failed-Recipients")), " "), strings.Join(failed, ", "); got != want {
		e.t.Errorf("X-Failed-Recipients %q, want %q", got, want)
	}
	if got := r.msg.Header.Get("From"); got != "Mail Delivery System <Mailer-Daemon@"+e.r.o.Hostname+">" {
		e.t.Errorf("bounce From %q", got)
	}
	if got := strings.Count(r.status, "Final-Recipient: "); got != len(failed) {
		e.t.Errorf("%d recipients in the delivery status, want %d:\n%s", got, len(failed), r.status)
	}
	for _, f := range failed {
		if !strings.Contains(r.text, "\n  "+f+"\n") || !strings.Contains(r.status, "Final-Recipient: rfc822; "+f+"\n") {
			e.t.Errorf("bounce %s does not name %s:\n%s\n%s", id, f, r.text, r.status)
		}
	}
	return id
}

func TestBounceOn5xx(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{"dave@down.test": failedWith("550 5.1.1 no such user")}}
	e := newEnv(t, tr, Options{Hostname: hostname})
	id := e.submit([]string{"dave@down.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	b := e.bounce(id, "dave@down.test")
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s ** dave@down.test R=downstream T=fake H=%s: SMTP error from remote mail server after RCPT TO: 550 5.1.1 no such user", id, testHost),
		fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", b, id, dsn.User(), e.size(b)),
		string(id)+" Completed",
		"End queue run: pid=PID",
	)
	r := e.readReport(b)
	for _, want := range []string{"Status: 5.1.1\n", "Diagnostic-Code: smtp; 550 5.1.1 no such user\n"} {
		if !strings.Contains(r.status, want) {
			t.Errorf("delivery status lacks %q:\n%s", want, r.status)
		}
	}
	// The store is inside: its address is not the sender's business.
	if strings.Contains(r.status, "Remote-MTA") || strings.Contains(r.text, "mx.down.test") {
		t.Errorf("the bounce names the store's host:\n%s\n%s", r.text, r.status)
	}
	if !strings.Contains(r.text, "550 5.1.1 no such user") {
		t.Errorf("text part lacks the diagnostic:\n%s", r.text)
	}
	if got, want := e.msglog(b), []string{fmt.Sprintf("Received from <> R=%s U=%s P=local S=%d", id, dsn.User(), e.size(b))}; !slices.Equal(got, want) {
		t.Errorf("bounce msglog %q, want %q", got, want)
	}
	if got := e.spoolFiles(id); len(got) != 0 {
		t.Errorf("spool still holds %v", got)
	}

	// The bounce is delivered like any message.
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => alice@up.test R=downstream T=fake H=%s %s", b, testHost, testC),
		string(b)+" Completed",
		"End queue run: pid=PID",
	)
}

// With a free delivery slot the bounce goes out at once.
func TestBounceEnqueued(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{"dave@down.test": failedWith("550 5.1.1 no such user")}}
	e := newEnv(t, tr, Options{Hostname: hostname, MaxParallel: 2})
	e.submit([]string{"dave@down.test"}, nil)
	e.r.RunOnce(context.Background(), false, false)
	e.r.Stop(context.Background()) // waits for the bounce's delivery
	if got, want := tr.Calls(), [][]string{{"dave@down.test"}, {"alice@up.test"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Deliver calls %v, want %v", got, want)
	}
	if got := e.notifications(); len(got) != 0 {
		t.Errorf("bounce %v still queued", got)
	}
}

func TestOneBounceForTwo(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"dave@down.test": failedWith("550 5.1.1 no such user"),
		"erin@down.test": failedWith("552 5.2.2 mailbox full"),
	}}
	e := newEnv(t, tr, Options{Hostname: hostname})
	id := e.submit([]string{"bob@down.test", "dave@down.test", "erin@down.test"}, nil)
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	b := e.bounce(id, "dave@down.test", "erin@down.test")
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s => bob@down.test R=downstream T=fake H=%s %s", id, testHost, testC),
		fmt.Sprintf("%s ** dave@down.test R=downstream T=fake H=%s: SMTP error from remote mail server after RCPT TO: 550 5.1.1 no such user", id, testHost),
		fmt.Sprintf("%s ** erin@down.test R=downstream T=fake H=%s: SMTP error from remote mail server after RCPT TO: 552 5.2.2 mailbox full", id, testHost),
		fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", b, id, dsn.User(), e.size(b)),
		string(id)+" Completed",
		"End queue run: pid=PID",
	)
	r := e.readReport(b)
	if !strings.Contains(r.status, "Status: 5.1.1\n") || !strings.Contains(r.status, "Status: 5.2.2\n") {
		t.Errorf("delivery status:\n%s", r.status)
	}
	if strings.Contains(r.text, "bob@down.test") {
		t.Errorf("the delivered recipient is in the bounce:\n%s", r.text)
	}
}

// A failure in one attempt and a deferral: the bounce goes now, the
// message stays for the deferred recipient, and the failed one is done.
func TestBounceThenDefer(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"dave@down.test": failedWith("550 5.1.1 no such user"),
		"erin@down.test": {Status: deliver.Deferred, Reason: deliver.Refused, Err: "Connection refused"},
	}}
	e := newEnv(t, tr, Options{Hostname: hostname})
	id := e.submit([]string{"dave@down.test", "erin@down.test"}, nil)
	e.r.RunOnce(context.Background(), false, false)
	e.bounce(id, "dave@down.test")
	if ev := e.load(id); !slices.Equal(ev.Pending(), []string{"erin@down.test"}) {
		t.Errorf("pending %v, want erin only", ev.Pending())
	}
}

func TestGiveUpBounceStatus(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{
		"bob@down.test": {Status: deliver.Deferred, Reason: deliver.RemoteTemp, Host: testHost, Reply: "451 4.7.1 greylisted", Err: "SMTP error from remote mail server after RCPT TO:<bob@down.test>: 451 4.7.1 greylisted"},
	}}
	e := newEnv(t, tr, Options{Hostname: hostname})
	id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) {
		ev.FirstFailed, ev.NextTry, ev.Attempts = now.Add(-5*24*time.Hour), now, 30
	})
	e.r.RunOnce(context.Background(), false, false)
	r := e.readReport(e.bounce(id, "bob@down.test"))
	for _, want := range []string{"Status: 5.4.7\n", "Diagnostic-Code: smtp; 451 4.7.1 greylisted\n"} {
		if !strings.Contains(r.status, want) {
			t.Errorf("delivery status lacks %q:\n%s", want, r.status)
		}
	}
	if !strings.Contains(r.text, "    retry timeout exceeded\n") {
		t.Errorf("text part:\n%s", r.text)
	}
}

// A bounce that fails is frozen, never bounced: no loop can start.
func TestNullSenderFrozen(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{"alice@up.test": failedWith("550 5.1.1 no such user")}}
	e := newEnv(t, tr, Options{Hostname: hostname})
	id := e.submit([]string{"alice@up.test"}, func(ev *spool.Envelope) { ev.Sender = "" })
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		fmt.Sprintf("%s ** alice@up.test R=downstream T=fake H=%s: SMTP error from remote mail server after RCPT TO: 550 5.1.1 no such user", id, testHost),
		string(id)+" Frozen (delivery error message)",
		"End queue run: pid=PID",
	)
	if got := e.notifications(); !slices.Equal(got, []spool.ID{id}) {
		t.Errorf("null-sender messages %v, want only the frozen one", got)
	}
	ev := e.load(id)
	if !ev.Frozen.Equal(now) || !slices.Equal(ev.Pending(), []string{"alice@up.test"}) {
		t.Errorf("Frozen %v pending %v; want frozen at %v, alice still pending", ev.Frozen, ev.Pending(), now)
	}
	b, err := os.ReadFile(e.sp.MsglogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "\n*** Frozen (delivery error message)\n") {
		t.Errorf("msglog does not end with Exim's frozen line:\n%s", b)
	}
	// Not tried again by queue runs.
	e.r.RunOnce(context.Background(), true, false)
	e.expectLines("Start queue run: pid=PID -qf", "End queue run: pid=PID -qf")
	if got := len(tr.Calls()); got != 1 {
		t.Errorf("Deliver called %d times, want 1", got)
	}
}

// A bounce past its retry time is discarded, as Exim does.
func TestNullSenderGiveUp(t *testing.T) {
	tr := &fakeTransport{outcome: map[string]deliver.Result{"alice@up.test": {Status: deliver.Deferred, Reason: deliver.Refused, Err: "Connection refused"}}}
	e := newEnv(t, tr, Options{Hostname: hostname})
	id := e.submit([]string{"alice@up.test"}, func(ev *spool.Envelope) {
		ev.Sender = ""
		ev.FirstFailed, ev.NextTry, ev.Attempts = now.Add(-5*24*time.Hour), now, 30
	})
	e.newLines()
	e.r.RunOnce(context.Background(), false, false)
	e.expectLines(
		"Start queue run: pid=PID",
		string(id)+" == alice@up.test R=downstream T=fake defer (111): Connection refused",
		string(id)+" ** alice@up.test R=downstream T=fake: retry timeout exceeded",
		string(id)+" alice@up.test: error ignored",
		string(id)+" Completed",
		"End queue run: pid=PID",
	)
	if got := e.notifications(); len(got) != 0 {
		t.Errorf("spool holds %v, want nothing", got)
	}
}

func TestTimeoutFrozenAfter(t *testing.T) {
	frozenFor := func(sender string, age time.Duration) func(*spool.Envelope) {
		return func(ev *spool.Envelope) {
			ev.Sender, ev.Received, ev.Frozen = sender, now.Add(-age), now.Add(-time.Hour)
		}
	}
	t.Run("bounce removed", func(t *testing.T) {
		e := newEnv(t, &fakeTransport{}, Options{Hostname: hostname, TimeoutFrozenAfter: 7 * 24 * time.Hour})
		id := e.submit([]string{"alice@up.test"}, frozenFor("", 7*24*time.Hour))
		e.newLines()
		e.r.RunOnce(context.Background(), false, false)
		e.expectLines(
			"Start queue run: pid=PID",
			string(id)+" cancelled by timeout_frozen_after",
			string(id)+" Completed",
			"End queue run: pid=PID",
		)
		if got := e.spoolFiles(id); len(got) != 0 {
			t.Errorf("spool still holds %v", got)
		}
		if got := e.notifications(); len(got) != 0 {
			t.Errorf("spool holds %v, want nothing", got)
		}
	})
	t.Run("message bounced and removed", func(t *testing.T) {
		tr := &fakeTransport{}
		e := newEnv(t, tr, Options{Hostname: hostname, TimeoutFrozenAfter: 7 * 24 * time.Hour})
		id := e.submit([]string{"bob@down.test", "carol@down.test"}, frozenFor("alice@up.test", 8*24*time.Hour))
		if err := e.sp.Journal(id, "bob@down.test"); err != nil {
			t.Fatal(err)
		}
		e.newLines()
		e.r.RunOnce(context.Background(), false, false)
		b := e.bounce(id, "carol@down.test")
		e.expectLines(
			"Start queue run: pid=PID",
			string(id)+" cancelled by timeout_frozen_after",
			fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", b, id, dsn.User(), e.size(b)),
			string(id)+" Completed",
			"End queue run: pid=PID",
		)
		r := e.readReport(b)
		if !strings.Contains(r.text, "    delivery cancelled; message timed out\n") || !strings.Contains(r.status, "Status: 5.4.7\n") {
			t.Errorf("bounce:\n%s\n%s", r.text, r.status)
		}
		if got := e.spoolFiles(id); len(got) != 0 {
			t.Errorf("spool still holds %v", got)
		}
		if got := len(tr.Calls()); got != 0 {
			t.Errorf("Deliver called %d times, want 0", got)
		}
	})
	t.Run("held kept", func(t *testing.T) {
		e := newEnv(t, &fakeTransport{}, Options{Hostname: hostname, TimeoutFrozenAfter: 7 * 24 * time.Hour})
		old := frozenFor("alice@up.test", 30*24*time.Hour)
		id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) { old(ev); ev.Hold = "logins:alice@up.test" })
		e.newLines()
		e.r.RunOnce(context.Background(), false, false)
		e.expectLines("Start queue run: pid=PID", "End queue run: pid=PID")
		if ev := e.load(id); ev.Frozen.IsZero() || ev.Hold == "" {
			t.Error("a held message was cancelled or thawed by timeout_frozen_after")
		}
	})
	t.Run("younger kept", func(t *testing.T) {
		e := newEnv(t, &fakeTransport{}, Options{Hostname: hostname, TimeoutFrozenAfter: 7 * 24 * time.Hour})
		id := e.submit([]string{"bob@down.test"}, frozenFor("alice@up.test", 7*24*time.Hour-time.Second))
		e.newLines()
		e.r.RunOnce(context.Background(), false, false)
		e.expectLines("Start queue run: pid=PID", "End queue run: pid=PID")
		if ev := e.load(id); ev.Frozen.IsZero() {
			t.Error("message thawed")
		}
	})
	t.Run("zero keeps forever", func(t *testing.T) {
		e := newEnv(t, &fakeTransport{}, Options{Hostname: hostname})
		id := e.submit([]string{"bob@down.test"}, frozenFor("", 365*24*time.Hour))
		e.r.RunOnce(context.Background(), false, false)
		if got := e.spoolFiles(id); len(got) == 0 {
			t.Error("frozen message removed with TimeoutFrozenAfter 0")
		}
	})
}

func TestDelayWarning(t *testing.T) {
	deferAll := &fakeTransport{outcome: map[string]deliver.Result{
		"bob@down.test": {Status: deliver.Deferred, Reason: deliver.RemoteTemp, Host: testHost, Reply: "451 4.7.1 greylisted", Err: "SMTP error from remote mail server after RCPT TO:<bob@down.test>: 451 4.7.1 greylisted"},
	}}
	e := newEnv(t, deferAll, Options{Hostname: hostname, DelayWarning: 24 * time.Hour})
	id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) { ev.Received = now.Add(-23 * time.Hour) })
	deferLine := string(id) + " == bob@down.test R=downstream T=fake defer (-44) H=" + testHost + ": SMTP error from remote mail server after RCPT TO:<bob@down.test>: 451 4.7.1 greylisted"
	e.newLines()

	// 23h on the queue: no warning yet.
	e.r.RunOnce(context.Background(), true, false)
	e.expectLines("Start queue run: pid=PID -qf", deferLine, "End queue run: pid=PID -qf")

	// 25h: one warning.
	e.setClock(now.Add(2 * time.Hour))
	e.r.RunOnce(context.Background(), true, false)
	warnings := e.notifications()
	if len(warnings) != 1 {
		t.Fatalf("%d notifications, want one warning", len(warnings))
	}
	w := warnings[0]
	e.expectLines("Start queue run: pid=PID -qf", deferLine,
		fmt.Sprintf("%s <= <> R=%s U=%s P=local S=%d", w, id, dsn.User(), e.size(w)),
		"End queue run: pid=PID -qf")
	r := e.readReport(w)
	if got, want := r.msg.Header.Get("Subject"), "Warning: message "+string(id)+" delayed 24 hours"; got != want {
		t.Errorf("Subject %q, want %q", got, want)
	}
	if got := e.load(w).Recipients; !slices.Equal(got, []string{"alice@up.test"}) {
		t.Errorf("warning to %v, want alice@up.test", got)
	}
	for _, want := range []string{"Action: delayed\n", "Status: 4.7.1\n", "Final-Recipient: rfc822; bob@down.test\n"} {
		if !strings.Contains(r.status, want) {
			t.Errorf("delivery status lacks %q:\n%s", want, r.status)
		}
	}
	if err := e.sp.Remove(w); err != nil {
		t.Fatal(err)
	}

	// Later deferrals, in this process or another: no second warning.
	e.restart()
	for _, later := range []time.Duration{3 * time.Hour, 49 * time.Hour} {
		e.setClock(now.Add(later))
		e.r.RunOnce(context.Background(), true, false)
		e.expectLines("Start queue run: pid=PID -qf", deferLine, "End queue run: pid=PID -qf")
	}
	if got := e.notifications(); len(got) != 0 {
		t.Errorf("second warning %v", got)
	}
	if _, n, err := e.sp.OpenMessage(id); err != nil || n != e.size(id) {
		t.Fatal(err)
	}
	env, err := e.sp.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.WarningCount != 1 {
		t.Errorf("warning count in -H = %d, want 1", env.WarningCount)
	}
}

// No warning to the null sender, for list or automatic mail, or when
// delay warnings are off.
func TestNoDelayWarning(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		edit  func(*spool.Envelope)
	}{
		{"null sender", 24 * time.Hour, func(ev *spool.Envelope) { ev.Sender = "" }},
		{"list mail", 24 * time.Hour, func(ev *spool.Envelope) {
			ev.Headers = append(ev.Headers, spool.Header{Type: ' ', Text: "List-Id: <news.up.test>\n"})
		}},
		{"automatic mail", 24 * time.Hour, func(ev *spool.Envelope) {
			ev.Headers = append(ev.Headers, spool.Header{Type: ' ', Text: "Auto-Submitted: auto-generated\n"})
		}},
		{"off", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &fakeTransport{outcome: map[string]deliver.Result{"bob@down.test": {Status: deliver.Deferred, Reason: deliver.Refused, Err: "Connection refused"}}}
			e := newEnv(t, tr, Options{Hostname: hostname, DelayWarning: tt.delay})
			id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) {
				ev.Received = now.Add(-48 * time.Hour)
				if tt.edit != nil {
					tt.edit(ev)
				}
			})
			e.r.RunOnce(context.Background(), false, false)
			for _, n := range e.notifications() {
				if n != id {
					t.Errorf("notification %s sent", n)
				}
			}
		})
	}
}

// A notification tells the sender the remote reply or a fixed phrase for
// the result's Reason, never what only the admin may see: Maildir and
// socket paths, resolver addresses, Go's error text. The mainlog keeps it.
func TestNotificationsShowNoInternals(t *testing.T) {
	tests := []struct {
		name     string
		res      deliver.Result
		giveUp   bool     // deferred past the retry schedule: bounced
		want     []string // in the text part
		status   string   // the Status field
		internal []string // in neither part
	}{
		{
			name: "maildir permission denied, delay warning",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.LocalError,
				Err: "open /var/mail/down.test/bob/tmp/1714557600.M1P2Q3.mx: permission denied"},
			want:     []string{"    Delay reason: local delivery failed\n"},
			status:   "4.0.0",
			internal: []string{"/var/mail", "permission denied", "open "},
		},
		{
			name: "maildir permission denied, given up",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.LocalError,
				Err: "open /var/mail/down.test/bob/tmp/1714557600.M1P2Q3.mx: permission denied"},
			giveUp:   true,
			want:     []string{"    retry timeout exceeded\n"},
			status:   "5.4.7",
			internal: []string{"/var/mail", "permission denied"},
		},
		{
			name: "unsafe Maildir path",
			res: deliver.Result{Status: deliver.Failed, Reason: deliver.MaildirUnsafePath,
				Err: `address "bob@down.test": local part ".bob" starts with a dot: unsafe as a Maildir path`},
			want:     []string{"    the mailbox name is not acceptable to the mail store\n"},
			status:   "5.0.0",
			internal: []string{"Maildir path", "starts with a dot"},
		},
		{
			name: "LMTP socket refused",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.Refused, Host: "/run/dovecot/lmtp",
				Err: "dial unix /run/dovecot/lmtp: connect: connection refused"},
			want:     []string{"    Delay reason: the receiving mail server could not be reached\n"},
			status:   "4.0.0",
			internal: []string{"/run/dovecot", "dial unix", "connect:"},
		},
		{
			name: "resolver failure",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.ConnectFailed,
				Err: "dial tcp: lookup store.internal on 127.0.0.53:53: server misbehaving"},
			want:     []string{"    Delay reason: the receiving mail server could not be reached\n"},
			status:   "4.0.0",
			internal: []string{"127.0.0.53", "lookup", "dial tcp"},
		},
		{
			name: "timeout",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.Timeout, Host: testHost,
				Err: "SMTP timeout after end of data: read tcp 127.0.0.1:40000->127.0.0.1:25: i/o timeout"},
			want:   []string{"    Delay reason: the receiving mail server did not answer in time\n"},
			status: "4.0.0",
			// The store's host is internal: only an outbound route's host
			// is named (TestBounceNamesOutboundHost).
			internal: []string{"i/o timeout", "read tcp", testHost, "Remote-MTA"},
		},
		{
			name: "protocol error",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.ProtocolError, Host: testHost,
				Err: "SMTP protocol failure in response to MAIL FROM:<alice@up.test>: textproto: short response: 2"},
			want:     []string{"    Delay reason: the receiving mail server gave an answer that could not be understood\n"},
			status:   "4.0.0",
			internal: []string{"textproto", "short response"},
		},
		{
			name: "TLS required",
			res: deliver.Result{Status: deliver.Deferred, Reason: deliver.TLSRequired, Host: testHost,
				Err: "a TLS session is required, but the server did not offer TLS support"},
			want:   []string{"    Delay reason: an encrypted (TLS) connection is required, and the receiving mail server does not offer one\n"},
			status: "4.0.0",
		},
		{
			name: "a remote reply is shown as it is",
			res: deliver.Result{Status: deliver.Failed, Reason: deliver.RemotePerm, Host: "/run/dovecot/lmtp",
				Reply: "550 5.1.1 <bob@down.test> User doesn't exist: bob@down.test",
				Err:   "LMTP error from remote mail server after end of data: 550 5.1.1 <bob@down.test> User doesn't exist: bob@down.test"},
			want:     []string{"\n  bob@down.test\n    550 5.1.1 <bob@down.test> User doesn't exist: bob@down.test\n"},
			status:   "5.1.1",
			internal: []string{"/run/dovecot"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &fakeTransport{outcome: map[string]deliver.Result{"bob@down.test": tt.res}}
			e := newEnv(t, tr, Options{Hostname: hostname, DelayWarning: time.Hour})
			id := e.submit([]string{"bob@down.test"}, func(ev *spool.Envelope) {
				ev.Received = now.Add(-2 * time.Hour)
				if tt.giveUp {
					ev.FirstFailed, ev.NextTry, ev.Attempts = now.Add(-5*24*time.Hour), now, 30
				}
			})
			e.newLines()
			e.r.RunOnce(context.Background(), false, false)
			if lines := strings.Join(e.newLines(), "\n"); !strings.Contains(lines, "bob@down.test R=downstream T=fake") || !strings.Contains(lines, tt.res.Err) {
				t.Errorf("mainlog lacks the full error %q:\n%s", tt.res.Err, lines)
			}
			var n spool.ID
			if tt.res.Status == deliver.Failed || tt.giveUp {
				n = e.bounce(id, "bob@down.test")
			} else {
				ns := e.notifications()
				if len(ns) != 1 {
					t.Fatalf("%d notifications, want one delay warning", len(ns))
				}
				n = ns[0]
			}
			rc, _, err := e.sp.OpenMessage(n)
			if err != nil {
				t.Fatal(err)
			}
			whole, _ := io.ReadAll(rc)
			rc.Close()
			r := e.readReport(n)
			for _, w := range tt.want {
				if !strings.Contains(r.text, w) {
					t.Errorf("text part lacks %q:\n%s", w, r.text)
				}
			}
			if want := "Status: " + tt.status + "\n"; !strings.Contains(r.status, want) {
				t.Errorf("delivery status lacks %q:\n%s", want, r.status)
			}
			hidden := tt.internal
			if tt.res.Reply == "" {
				hidden = append(hidden, tt.res.Err) // the admin's words
			}
			for _, bad := range hidden {
				if bytes.Contains(whole, []byte(bad)) {
					t.Errorf("the notification shows %q:\n%s", bad, whole)
				}
			}
		})
	}
}
