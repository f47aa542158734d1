package e2e

import (
	"bufio"
	"fmt"
	"mxgate/internal/peertest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sink is a running smtp-sink that saves each message as DIR/msg.*.
type sink struct {
	dir  string
	port int
}

// startSink starts smtp-sink in a scratch directory; it is stopped by PID
// when the test ends.
func startSink(t *testing.T) *sink {
	t.Helper()
	requirePrograms(t, "smtp-sink")
	s := &sink{dir: t.TempDir(), port: peertest.FreePort(t, false)}
	peertest.Start(t, "smtp-sink", s.dir, s.port)
	return s
}

// startRefusingSink starts smtp-sink refusing every RCPT with a 5xx
// (its -f RCPT): a store whose refusals are bounced.
func startRefusingSink(t *testing.T) *sink {
	t.Helper()
	requirePrograms(t, "smtp-sink")
	s := &sink{dir: t.TempDir(), port: peertest.FreePort(t, false)}
	peertest.Start(t, "smtp-sink", s.dir, s.port, "-f", "RCPT")
	return s
}

// URL is the downstream URL that sends mail to the sink.
func (s *sink) URL() string { return fmt.Sprintf("smtp://127.0.0.1:%d", s.port) }

// sinkMessage is one message smtp-sink saved.
type sinkMessage struct {
	path  string
	rcpts []string // from smtp-sink's X-Rcpt-Args lines
	ids   []string // mxgate IDs named by "id ID" in Received: headers
	raw   string
}

// mxgateIDRE finds "id ID" of an mxgate Received: header; smtp-sink's own
// Received: carries an 8-digit hex id, which does not match.
var mxgateIDRE = regexp.MustCompile(`\bid ([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2})\b`)

// messages reads every message the sink saved. Call it only once the
// deliveries are over (mxgate logged Completed): smtp-sink writes a file
// while the message arrives.
func (s *sink) messages(t *testing.T) []sinkMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.dir, "msg.*"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]sinkMessage, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := sinkMessage{path: f, raw: string(b)}
		for _, h := range headers(string(b)) {
			name, value, _ := strings.Cut(h, ":")
			switch strings.ToLower(name) {
			case "x-rcpt-args":
				// "<addr> NOTIFY=..." when the client gave parameters.
				if f := strings.Fields(value); len(f) > 0 {
					m.rcpts = append(m.rcpts, strings.Trim(f[0], "<>"))
				}
			case "received":
				for _, id := range mxgateIDRE.FindAllStringSubmatch(value, -1) {
					m.ids = append(m.ids, id[1])
				}
			}
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// headers returns the header fields of a message, continuation lines
// unfolded, up to the first empty line.
func headers(msg string) []string {
	var hs []string
	sc := bufio.NewScanner(strings.NewReader(msg))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1] += " " + strings.TrimSpace(line)
			continue
		}
		hs = append(hs, line)
	}
	return hs
}

// dovecot is a running Dovecot LMTP service.
type dovecot struct {
	dir  string
	port int
}

// startDovecot starts Dovecot LMTP in a scratch directory, with
// scripts/peers.sh's further arguments (a users file); it is stopped when
// the test ends.
func startDovecot(t *testing.T, args ...string) *dovecot {
	t.Helper()
	requirePrograms(t, "dovecot", "doveadm")
	dir := t.TempDir()
	// Dovecot delivers as an unprivileged user, who must be able to walk
	// down to the Maildirs; Go makes test directories 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := &dovecot{dir: dir, port: peertest.FreePort(t, false)}
	peertest.Start(t, "dovecot-lmtp", d.dir, d.port, args...)
	return d
}

// URL is the downstream URL that delivers to this Dovecot.
func (d *dovecot) URL() string { return fmt.Sprintf("lmtp://127.0.0.1:%d", d.port) }

// newMail returns the files in the Maildir new/ of local@domain.
func (d *dovecot) newMail(t *testing.T, domain, local string) []string {
	t.Helper()
	return maildirNew(t, filepath.Join(d.dir, "mail", domain, local, "Maildir"))
}

// maildirNew returns the files in the new/ folder of a Maildir.
func maildirNew(t *testing.T, maildir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(maildir, "new", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}
