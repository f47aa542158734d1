package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestMaildirOwnerUser: with maildir_owner = "{user}" the daemon writes
// each domain's Maildirs as that domain's system user (nobody here); a
// user who replaced a directory of their home with a symlink gets nothing
// written where it points, the recipient fails with the reason in the
// mainlog and the bounce names no path; a user the system does not know
// defers the recipient.
func TestMaildirOwnerUser(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("giving files to another user needs root")
	}
	home, outside := filepath.Join(t.TempDir(), "home"), t.TempDir()
	// daemon's mail directory is a symlink to somewhere it should not
	// reach (as /home/u/mail -> /etc would be).
	if err := os.MkdirAll(filepath.Join(home, "daemon"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(home, "daemon", "mail")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "userdomains")
	if err := os.WriteFile(users, []byte("hosted.test: nobody\nevil.test: daemon\nghost.test: no-such-user-mxgate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "maildir-owner.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(t.TempDir(), "maildir-owner.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(strings.ReplaceAll(string(b), "@USERS@", users)), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startMxgateConfig(t, tmpl, "maildir://"+home)

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "postmaster@hosted.test", []string{"info@hosted.test", "x@evil.test", "y@ghost.test"},
		dataBytes([]byte("From: postmaster@hosted.test\nSubject: owners\n\nhello\n")))
	c.expect(t, "QUIT", 221)

	lines := []*regexp.Regexp{
		logLine(id, `=> info@hosted\.test R=downstream T=maildir$`),
		logLine(id, `\*\* x@evil\.test R=downstream T=maildir: maildir: `+regexp.QuoteMeta(link)+` is a symbolic link: unsafe path, not followed$`),
		logLine(id, `== y@ghost\.test R=downstream T=maildir defer \(-1\): maildir: no system user "no-such-user-mxgate" to own the Maildir \(maildir_owner "\{user\}"\)$`),
	}
	waitFor(t, drainTimeout, func() string {
		for _, re := range lines {
			if !g.logHas(re) {
				return "mainlog line " + re.String()
			}
		}
		return ""
	})

	// info's message and the bounce to postmaster: nobody's, nogroup's.
	const nobody = 65534
	maildir := filepath.Join(home, "nobody", "mail", "hosted.test")
	var bounce string
	waitFor(t, drainTimeout, func() string {
		if files := maildirNew(t, filepath.Join(maildir, "postmaster")); len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			bounce = string(b)
			return ""
		}
		return "the bounce in postmaster@hosted.test's Maildir"
	})
	for _, p := range []string{"nobody", "nobody/mail", "nobody/mail/hosted.test", "nobody/mail/hosted.test/info", "nobody/mail/hosted.test/info/new"} {
		checkOwner(t, filepath.Join(home, p), nobody, nobody)
	}
	for _, local := range []string{"info", "postmaster"} {
		files := maildirNew(t, filepath.Join(maildir, local))
		if len(files) != 1 {
			t.Fatalf("%s/%s/new holds %v, want one message", maildir, local, files)
		}
		checkOwner(t, files[0], nobody, nobody)
	}
	if !strings.Contains(bounce, "\n  x@evil.test\n    the mailbox name is not acceptable to the mail store\n") || strings.Contains(bounce, home) {
		t.Errorf("bounce: want the fixed phrase for x@evil.test and no path:\n%s", bounce)
	}
	if ents, err := os.ReadDir(outside); err != nil || len(ents) != 0 {
		t.Errorf("written through the symlink: %s holds %v (%v)", outside, ents, err)
	}
	if _, err := os.Stat(filepath.Join(home, "no-such-user-mxgate")); err == nil {
		t.Errorf("a Maildir was made for the unknown user")
	}
	g.stop()
}

// checkOwner fails the test unless p belongs to uid:gid.
func checkOwner(t *testing.T, p string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s belongs to %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}
