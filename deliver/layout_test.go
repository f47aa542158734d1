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

// maildir_owner "{user}": what is created below the layout's fixed part
// belongs to the domain's user and their primary group; the fixed part
// stays the process's. A user the system does not know defers the
// recipient and creates nothing.
func TestMaildirOwnerUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("giving files to another user needs root")
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := filepath.Join(t.TempDir(), "mail")
	md, users := layoutMaildir(t, root, "{user}/{domain}/{local}", func(o *MaildirOptions) { o.Mode, o.OwnerUser = 0o750, true })
	data, err := os.ReadFile(filepath.Join("testdata", "userdomains-owners"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(users, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got := md.Deliver(context.Background(), msg("s@example.test", "x\n", "a@owned.test", "b@ghost.test", "c@owned.test"))
	checkResults(t, got, []Result{
		{Rcpt: "a@owned.test", Status: Delivered},
		{Rcpt: "b@ghost.test", Status: Deferred, Reason: LocalError, Err: `maildir: no system user "no-such-user-mxgate" to own the Maildir (maildir_owner "{user}")`},
		{Rcpt: "c@owned.test", Status: Delivered},
	})
	checkOwner(t, root, 0o750|os.ModeDir, os.Getuid(), os.Getgid())
	const nobody = 65534 // nobody and its primary group, nogroup
	for _, p := range []string{"nobody", "nobody/owned.test", "nobody/owned.test/a", "nobody/owned.test/a/tmp", "nobody/owned.test/a/new", "nobody/owned.test/a/cur"} {
		checkOwner(t, filepath.Join(root, p), 0o750|os.ModeDir, nobody, nobody)
	}
	for _, local := range []string{"a", "c"} {
		dir := filepath.Join(root, "nobody", "owned.test", local, "new")
		names := files(t, dir)
		if len(names) != 1 {
			t.Fatalf("%s holds %v", dir, names)
		}
		checkOwner(t, filepath.Join(dir, names[0]), 0o640, nobody, nobody)
	}
	if names := files(t, root); len(names) != 1 || names[0] != "nobody" {
		t.Errorf("%s holds %v, want only nobody's Maildirs", root, names)
	}
}

// A symlink anywhere below the layout's fixed part fails the recipient
// for good, and nothing is written where it points; a symlink in the
// fixed part (the admin's) is followed as before.
func TestMaildirSymlinkRefused(t *testing.T) {
	const layout = "{user}/mail/{domain}/{local}" // hosted.test's user is alice
	tests := []struct {
		name string
		link string // below ROOT, made a symlink to OUTSIDE (a directory)
		mk   string // below ROOT, made a directory first
	}{
		{"the {user} element", "alice", ""},
		{"a fixed segment after a field", "alice/mail", "alice"},
		{"the domain", "alice/mail/hosted.test", "alice/mail"},
		{"the Maildir", "alice/mail/hosted.test/info", "alice/mail/hosted.test"},
		{"tmp", "alice/mail/hosted.test/info/tmp", "alice/mail/hosted.test/info"},
		{"new", "alice/mail/hosted.test/info/new", "alice/mail/hosted.test/info/tmp"},
		{"cur", "alice/mail/hosted.test/info/cur", "alice/mail/hosted.test/info/new"},
		{"dangling", "alice/mail/hosted.test/info", "alice/mail/hosted.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			if tt.mk != "" {
				if err := os.MkdirAll(filepath.Join(root, tt.mk), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			target := outside
			if tt.name == "dangling" {
				target = filepath.Join(outside, "missing")
			}
			link := filepath.Join(root, tt.link)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			md, _ := layoutMaildir(t, root, layout, nil)
			got := md.Deliver(context.Background(), msg("s@example.test", "x\n", "info@hosted.test"))
			checkResults(t, got, []Result{{Rcpt: "info@hosted.test", Status: Failed, Reason: MaildirUnsafePath,
				Err: "maildir: " + link + " is a symbolic link: unsafe path, not followed"}})
			if names := files(t, outside); len(names) != 0 {
				t.Errorf("written through the symlink: %s holds %v", outside, names)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: %v, %v; want the symlink left as it is", link, fi, err)
			}
		})
	}
	t.Run("fixed part", func(t *testing.T) {
		real := t.TempDir()
		root := filepath.Join(t.TempDir(), "mail")
		if err := os.Symlink(real, root); err != nil {
			t.Fatal(err)
		}
		md, _ := layoutMaildir(t, root, layout, nil)
		got := md.Deliver(context.Background(), msg("s@example.test", "x\n", "info@hosted.test"))
		checkResults(t, got, []Result{{Rcpt: "info@hosted.test", Status: Delivered}})
		if names := files(t, filepath.Join(real, "alice", "mail", "hosted.test", "info", "new")); len(names) != 1 {
			t.Errorf("new/ holds %v, want the message", names)
		}
	})
}
