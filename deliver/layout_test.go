package deliver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// layoutMaildir is a Maildir store with layout under root, the users of
// deliver/testdata/userdomains copied to a file the test may change.
func layoutMaildir(t *testing.T, root, layout string, edit func(*MaildirOptions)) (*Maildir, string) {
	t.Helper()
	users := filepath.Join(t.TempDir(), "userdomains")
	data, err := os.ReadFile(filepath.Join("testdata", "userdomains"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(users, data, 0o644); err != nil {
		t.Fatal(err)
	}
	o := MaildirOptions{Root: root, Layout: layout, Users: users, Delimiter: "+", Lowercase: true, Mode: 0o700, UID: -1, GID: -1}
	if edit != nil {
		edit(&o)
	}
	return NewMaildir(o), users
}

func TestMaildirLayout(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		layout, rcpt string
		edit         func(*MaildirOptions)
		want         string // ROOT is the root; "" with err
		err          string
	}{
		{"{domain}/{local}", "User+Tag@Example.TEST", nil, "ROOT/example.test/user", ""},
		{"{domain}/{local}", "+tag@example.test", nil, "ROOT/example.test/+tag", ""},
		{"{domain}/{local}", "User-x+y@example.test", func(o *MaildirOptions) { o.Delimiter = "-+" }, "ROOT/example.test/user", ""},
		{"{domain}/{local}", "User+Tag@example.test", func(o *MaildirOptions) { o.Delimiter, o.Lowercase = "", false }, "ROOT/example.test/User+Tag", ""},
		{"{local}", "a@example.test", nil, "ROOT/a", ""},
		{"/home/{user}/mail/{domain}/{local}", "Info@hosted.test", nil, "/home/alice/mail/hosted.test/info", ""},
		{"/home/{user}/mail/{domain}/{local}", "x@other.test", nil, "/home/bob/mail/other.test/x", ""},
		{"users/{user}/{local}", "x@hosted.test", nil, "ROOT/users/alice/x", ""},
		{"/home/{user}/mail/{domain}/{local}", "x@nouser.test", nil, "", "no Maildir for domain nouser.test: it has no user in maildir_users"},
		{"/home/{user}/mail/{domain}/{local}", "x@evil.test", nil, "", `address "x@evil.test": the user of evil.test in maildir_users "../root" starts with a dot: unsafe as a Maildir path`},
		{"/home/{user}/mail/{domain}/{local}", "../x@hosted.test", nil, "", `address "../x@hosted.test": local part "../x" starts with a dot: unsafe as a Maildir path`},
	}
	for _, tt := range tests {
		t.Run(tt.layout+" "+tt.rcpt, func(t *testing.T) {
			md, users := layoutMaildir(t, root, tt.layout, tt.edit)
			dir, err := md.Dir(tt.rcpt)
			want := strings.ReplaceAll(tt.want, "ROOT", root)
			wantErr := strings.ReplaceAll(tt.err, "USERS", users)
			if dir != want || (err == nil) != (tt.err == "") || (err != nil && err.Error() != wantErr) {
				t.Errorf("Dir(%q) = %q, %v; want %q, %s", tt.rcpt, dir, err, want, wantErr)
			}
			if err != nil && DirTemporary(err) {
				t.Errorf("DirTemporary(%v) = true, want a permanent error", err)
			}
		})
	}
}

// The users file is read again when it changes; when it cannot be read
// the recipient is deferred, not failed.
func TestMaildirUsersReread(t *testing.T) {
	root := t.TempDir()
	md, users := layoutMaildir(t, root, "{user}/{domain}/{local}", nil)
	if dir, err := md.Dir("a@new.test"); err == nil {
		t.Fatalf("Dir before the edit = %q, want no user", dir)
	}
	if err := os.WriteFile(users, []byte("new.test: carol\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A second's mtime step, in case the size alone did not change.
	later := time.Now().Add(time.Second)
	os.Chtimes(users, later, later)
	if dir, err := md.Dir("a@new.test"); err != nil || dir != filepath.Join(root, "carol/new.test/a") {
		t.Fatalf("Dir after the edit = %q, %v", dir, err)
	}
	if err := os.Remove(users); err != nil {
		t.Fatal(err)
	}
	got := md.Deliver(context.Background(), msg("s@example.test", "x\n", "a@new.test"))
	if got[0].Status != Deferred || got[0].Reason != LocalError || !strings.Contains(got[0].Err, "maildir users file") {
		t.Errorf("without the users file: %+v, want deferred", got[0])
	}
	if err := os.WriteFile(users, []byte("broken line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := md.Dir("a@new.test"); err == nil || !DirTemporary(err) || !strings.Contains(err.Error(), users+`:1: want "domain: user"`) {
		t.Errorf("broken users file: %v, want a temporary error naming file:line", err)
	}
	got = md.Deliver(context.Background(), msg("s@example.test", "x\n", "a@hosted.test"))
	if got[0].Status != Deferred {
		t.Errorf("broken users file: %+v, want deferred", got[0])
	}
}

// A domain without a user fails the recipient for good, with the reason.
func TestMaildirNoUserFails(t *testing.T) {
	md, _ := layoutMaildir(t, t.TempDir(), "{user}/{local}", nil)
	got := md.Deliver(context.Background(), msg("s@example.test", "x\n", "a@nouser.test", "b@hosted.test"))
	checkResults(t, got, []Result{
		{Rcpt: "a@nouser.test", Status: Failed, Reason: BadAddress, Err: "no Maildir for domain nouser.test: it has no user in maildir_users"},
		{Rcpt: "b@hosted.test", Status: Delivered},
	})
}

// Directories and files get the configured mode and owner, whatever the
// umask.
func TestMaildirOwnerMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := filepath.Join(t.TempDir(), "mail")
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534 // nobody: root may give files away
	}
	md, _ := layoutMaildir(t, root, "{domain}/{local}", func(o *MaildirOptions) { o.Mode, o.UID, o.GID = 0o750, uid, gid })
	got := md.Deliver(context.Background(), msg("s@example.test", "x\n", "a@example.test"))
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Delivered}})
	dir := filepath.Join(root, "example.test", "a")
	paths := []string{root, filepath.Join(root, "example.test"), dir}
	for _, sub := range []string{"tmp", "new", "cur"} {
		paths = append(paths, filepath.Join(dir, sub))
	}
	for _, p := range paths {
		checkOwner(t, p, 0o750|os.ModeDir, uid, gid)
	}
	names := files(t, filepath.Join(dir, "new"))
	if len(names) != 1 {
		t.Fatalf("new/ holds %v", names)
	}
	checkOwner(t, filepath.Join(dir, "new", names[0]), 0o640, uid, gid)
}

func checkOwner(t *testing.T, p string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", p, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}
