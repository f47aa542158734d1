package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"mxgate/internal/peertest"
)

// submission is a config for running the built binary as sendmail and
// as the queue runner (no daemon), delivering into Maildirs under
// maildir.
type submission struct {
	t                         *testing.T
	bin                       string // the mxgate to run
	cfgPath, dataDir, maildir string
	cred                      *syscall.Credential // nil: as this process's user
}

// newSubmission writes testdata/e2e/submit.toml.tmpl's config into a
// fresh directory, with outbound as the [outbound] section's keys.
// unprivileged runs every command as user nobody when the test runs as
// root (whom no file permission stops), with the data directory and the
// Maildir root owned by nobody.
func newSubmission(t *testing.T, unprivileged bool, outbound string) *submission {
	t.Helper()
	// nobody must be able to enter it.
	base := enterableTempDir(t, "submit")
	s := &submission{
		t:       t,
		bin:     binary,
		cfgPath: filepath.Join(base, "mxgate.toml"),
		dataDir: filepath.Join(base, "data"),
		maildir: filepath.Join(base, "maildir"),
	}
	for _, dir := range []string{s.dataDir, s.maildir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if unprivileged && os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, dir := range []string{s.dataDir, s.maildir} {
			if err := os.Chown(dir, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		// The binary's own directory is private to root.
		b, err := os.ReadFile(binary)
		if err != nil {
			t.Fatal(err)
		}
		s.bin = filepath.Join(base, "mxgate")
		if err := os.WriteFile(s.bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tmpl, err := template.ParseFiles(testdata("submit.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg bytes.Buffer
	err = tmpl.Execute(&cfg, map[string]string{
		"Listen":     fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false)),
		"DataDir":    s.dataDir,
		"Downstream": "maildir://" + s.maildir,
		"Outbound":   outbound,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs `mxgate -config CFG ARGS...` with stdin, bounded by cliTimeout.
func (s *submission) run(stdin string, args ...string) cliResult {
	s.t.Helper()
	return runWith(s.t, func(cmd *exec.Cmd) {
		cmd.Stdin = strings.NewReader(stdin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}, s.bin, append([]string{"-config", s.cfgPath}, args...)...)
}

// delivered is the one message in the Maildir of addr (local@domain).
func (s *submission) delivered(addr string) string {
	s.t.Helper()
	local, domain, _ := strings.Cut(addr, "@")
	files := maildirNew(s.t, filepath.Join(s.maildir, domain, local))
	if len(files) != 1 {
		s.t.Fatalf("the Maildir of %s holds %d messages, want 1", addr, len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.Remove(files[0]); err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

func (s *submission) mainlog() string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dataDir, "log", "mainlog"))
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

// TestSendmailPartialAcceptance: as sendmail does, one address that
// cannot be accepted (malformed, or unroutable: outbound is "none") does
// not refuse the message. The others get it; the bad ones are lines on
// stderr and in the bounce the sender gets; the exit status is 0. With no
// good address nothing is queued, status 1.
func TestSendmailPartialAcceptance(t *testing.T) {
	t.Parallel()
	s := newSubmission(t, false, `mode = "none"`)
	r := s.run("To: Joe <joe@example.test>, John Doe\nCc: u@other.test\nSubject: report\n\nthe report\n",
		"-t", "-f", "robot@example.test")
	wantErr := "mxgate: <John Doe>: recipient address rejected: malformed address: \"John Doe\": a name without <address>\n" +
		"mxgate: <u@other.test>: recipient address rejected: Unrouteable address\n"
	if r.code != 0 || r.stdout != "" || r.stderr != wantErr {
		t.Fatalf("sendmail -t: exit %d, stdout %q, stderr:\n%s\nwant exit 0 and stderr:\n%s", r.code, r.stdout, r.stderr, wantErr)
	}
	if msg := s.delivered("joe@example.test"); body(msg) != "the report\n" {
		t.Errorf("joe got:\n%s", msg)
	}
	bounce := s.delivered("robot@example.test")
	for _, want := range []string{
		"Return-Path: <>\n",
		"X-Failed-Recipients: John Doe,\n  u@other.test\n",
		"Subject: Mail delivery failed: returning message to sender\n",
		"\n  u@other.test\n    Unrouteable address\n",
		"\nFinal-Recipient: rfc822; u@other.test\nAction: failed\nStatus: 5.1.2\n",
		"\nFinal-Recipient: rfc822; John Doe\nAction: failed\nStatus: 5.1.3\n",
		"\nSubject: report\n",
	} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	log := s.mainlog()
	m := regexp.MustCompile(`(?m) (\S+) <= robot@example\.test U=(\S+) P=local `).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no arrival in the mainlog:\n%s", log)
	}
	// The bounce is logged with the user of the process that made it:
	// the one that took the submission, root here as the submitter is.
	submitter := m[2]
	id := m[1]
	for _, want := range []string{
		id + ` \*\* u@other\.test: Unrouteable address$`,
		`\S+ <= <> R=` + id + ` U=` + regexp.QuoteMeta(submitter) + ` P=local S=\d+$`,
		id + ` => joe@example\.test R=downstream T=maildir$`,
		id + ` Completed$`,
	} {
		if !regexp.MustCompile(`(?m) ` + want).MatchString(log) {
			t.Errorf("mainlog lacks %s:\n%s", want, log)
		}
	}

	r = s.run("hi\n", "-bm", "u@other.test", "v@")
	wantErr = "mxgate: <u@other.test>: recipient address rejected: Unrouteable address\n" +
		"mxgate: <v@>: recipient address rejected: malformed address: \"v@\": empty domain\n" +
		"mxgate: no valid recipients: message not queued\n"
	if r.code != 1 || r.stderr != wantErr {
		t.Errorf("sendmail with no good address: exit %d, stderr:\n%s\nwant exit 1 and stderr:\n%s", r.code, r.stderr, wantErr)
	}
	if r := s.run("", "-bpc"); r.stdout != "0\n" {
		t.Errorf("-bpc: %q, want nothing queued", r.stdout)
	}
}

// TestSendmailSmarthost: a local program (PHP's mail() on a web server)
// sends to any domain the router routes, as Exim's and Postfix's sendmail
// accept: with outbound smarthost a foreign recipient is accepted and the
// message reaches the smarthost, a real smtp-sink, while the relay
// domain's recipient gets it in the Maildir. An address trick is still
// refused, as at RCPT for a trusted client.
func TestSendmailSmarthost(t *testing.T) {
	t.Parallel()
	smart := startSink(t)
	s := newSubmission(t, false, fmt.Sprintf("mode      = \"smarthost\"\nsmarthost = %q\nstarttls  = \"none\"", smart.URL()))
	r := s.run("To: Friend <friend@gmail.example>, joe@example.test\nCc: friend%gmail.example@example.test\nSubject: from the web\n\nthe form\n",
		"-t", "-f", "www@example.test")
	wantErr := "mxgate: <friend%gmail.example@example.test>: recipient address rejected: Restricted characters in address\n"
	if r.code != 0 || r.stdout != "" || r.stderr != wantErr {
		t.Fatalf("sendmail -t: exit %d, stdout %q, stderr:\n%s\nwant exit 0 and stderr:\n%s", r.code, r.stdout, r.stderr, wantErr)
	}
	log := s.mainlog()
	m := regexp.MustCompile(`(?m) (\S+) <= www@example\.test U=\S+ P=local `).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no arrival in the mainlog:\n%s", log)
	}
	id := m[1]
	for _, want := range []string{
		id + ` \*\* friend%gmail\.example@example\.test: Restricted characters in address$`,
		id + ` => friend@gmail\.example R=smarthost T=smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]`,
		id + ` => joe@example\.test R=downstream T=maildir$`,
		id + ` Completed$`,
	} {
		if !regexp.MustCompile(`(?m) ` + want).MatchString(log) {
			t.Errorf("mainlog lacks %s:\n%s", want, log)
		}
	}

	msgs := smart.messages(t)
	if len(msgs) != 1 || strings.Join(msgs[0].rcpts, " ") != "friend@gmail.example" || !slices.Contains(msgs[0].ids, id) {
		t.Fatalf("the smarthost got %d messages (%+v), want %s for friend@gmail.example", len(msgs), msgs, id)
	}
	// smtp-sink's file ends with an empty line of its own.
	if b := body(msgs[0].raw); b != "the form\n\n" {
		t.Errorf("the smarthost got the body %q", b)
	}
	if msg := s.delivered("joe@example.test"); body(msg) != "the form\n" {
		t.Errorf("joe got:\n%s", msg)
	}
	if bounce := s.delivered("www@example.test"); !strings.Contains(bounce, "\n  friend%gmail.example@example.test\n    Restricted characters in address\n") {
		t.Errorf("the bounce lacks the refused address:\n%s", bounce)
	}
}

// TestNotificationsHideMaildirPath: a Maildir mxgate may not write to
// defers delivery; the delay warning and then the bounce that reach the
// sender say "local delivery failed" and "retry timeout exceeded", never
// the path or the system's error, which the mainlog keeps. The warning
// after one second says so, not "0 minutes".
func TestNotificationsHideMaildirPath(t *testing.T) {
	t.Parallel()
	s := newSubmission(t, true, `mode = "none"`)
	// Owned by root (or not writable): bob's Maildir refuses mxgate.
	locked := filepath.Join(s.maildir, "example.test", "bob")
	if err := os.MkdirAll(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	if s.cred != nil {
		if err := os.Chown(filepath.Dir(locked), int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Chmod(locked, 0o555); err != nil {
		t.Fatal(err)
	}

	if r := s.run("Subject: minutes\n\nhi\n", "-bm", "-f", "alice@example.test", "bob@example.test"); r.code != 0 || r.stderr != "" {
		t.Fatalf("sendmail: exit %d, stderr %q", r.code, r.stderr)
	}
	// The message arrived before sendmail returned: counted from now,
	// delay_warning has surely passed at the next attempt, however slow
	// the machine was.
	start := time.Now()
	log := s.mainlog()
	if !regexp.MustCompile(`(?m) == bob@example\.test R=downstream T=maildir defer \(-1\): .*` + regexp.QuoteMeta(locked) + `.*permission denied$`).MatchString(log) {
		t.Fatalf("mainlog lacks the deferral with its path and error:\n%s", log)
	}

	// Past delay_warning (1s): the next attempt warns.
	time.Sleep(time.Until(start.Add(1200 * time.Millisecond)))
	if r := s.run("", "-qf"); r.code != 0 || r.stderr != "" {
		t.Fatalf("-qf: exit %d, stderr %q", r.code, r.stderr)
	}
	warning := s.delivered("alice@example.test")
	for _, want := range []string{
		"Subject: Warning: message ",
		"recipients after more than 1 second on the queue on mx.example.test.\n",
		"\n  bob@example.test\n    Delay reason: local delivery failed\n",
		"\nFinal-Recipient: rfc822; bob@example.test\nAction: delayed\nStatus: 4.0.0\n",
	} {
		if !strings.Contains(warning, want) {
			t.Errorf("delay warning lacks %q:\n%s", want, warning)
		}
	}

	// Past the retry rule's 3s: the next attempt gives up and bounces.
	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	if r := s.run("", "-qf"); r.code != 0 || r.stderr != "" {
		t.Fatalf("-qf: exit %d, stderr %q", r.code, r.stderr)
	}
	bounce := s.delivered("alice@example.test")
	for _, want := range []string{
		"Subject: Mail delivery failed: returning message to sender\n",
		"\n  bob@example.test\n    retry timeout exceeded\n",
		"\nFinal-Recipient: rfc822; bob@example.test\nAction: failed\nStatus: 5.4.7\n",
	} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	for name, n := range map[string]string{"delay warning": warning, "bounce": bounce} {
		for _, internal := range []string{s.maildir, "permission denied", "0 minutes", "open "} {
			if strings.Contains(n, internal) {
				t.Errorf("the %s shows %q:\n%s", name, internal, n)
			}
		}
	}
}
