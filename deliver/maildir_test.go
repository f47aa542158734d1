package deliver

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newMaildirTransport(t *testing.T, root string) Transport {
	t.Helper()
	tr := newTransport(t, "maildir://"+root, Options{})
	if tr.Name() != "maildir" {
		t.Fatalf("Name() = %q, want maildir", tr.Name())
	}
	return tr
}

// files lists the names in dir, failing the test if it cannot.
func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestMaildirDeliver(t *testing.T) {
	root := t.TempDir()
	tr := newMaildirTransport(t, root)
	const body = "From: s@example.test\nSubject: hi\n\nhello\n.\n"
	got := tr.Deliver(context.Background(), msg("s@example.test", body, "user@Example.TEST", `"john doe"@example.test`))
	checkResults(t, got, []Result{
		{Rcpt: "user@Example.TEST", Status: Delivered},
		{Rcpt: `"john doe"@example.test`, Status: Delivered},
	})
	for _, c := range []struct{ dir, rcpt string }{
		{"example.test/user", "user@Example.TEST"},
		{"example.test/john doe", `"john doe"@example.test`},
	} {
		md := filepath.Join(root, c.dir)
		names := files(t, filepath.Join(md, "new"))
		if len(names) != 1 {
			t.Fatalf("%s/new holds %v, want one message", md, names)
		}
		data, err := os.ReadFile(filepath.Join(md, "new", names[0]))
		if err != nil {
			t.Fatal(err)
		}
		want := "Return-Path: <s@example.test>\nDelivered-To: " + c.rcpt + "\n" + body
		if string(data) != want {
			t.Errorf("%s:\n got %q\nwant %q", names[0], data, want)
		}
		if left := files(t, filepath.Join(md, "tmp")); len(left) != 0 {
			t.Errorf("tmp/ not empty: %v", left)
		}
		for _, sub := range []string{"tmp", "new", "cur"} {
			fi, err := os.Stat(filepath.Join(md, sub))
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s/%s: %v, mode %v, want a 0700 directory", md, sub, err, fi.Mode())
			}
		}
	}
}

func TestMaildirNullSender(t *testing.T) {
	root := t.TempDir()
	got := newMaildirTransport(t, root).Deliver(context.Background(), msg("", "Subject: bounce\n\n", "a@example.test"))
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Delivered}})
	dir := filepath.Join(root, "example.test", "a", "new")
	data, err := os.ReadFile(filepath.Join(dir, files(t, dir)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "Return-Path: <>\nDelivered-To: a@example.test\n") {
		t.Errorf("got %q", data)
	}
}

func TestMaildirUniqueNames(t *testing.T) {
	root := t.TempDir()
	tr := newMaildirTransport(t, root)
	const n = 1000
	for i := 0; i < n; i++ {
		if r := tr.Deliver(context.Background(), msg("s@example.test", "x\n", "a@example.test"))[0]; r.Status != Delivered {
			t.Fatalf("delivery %d: %+v", i, r)
		}
	}
	names := files(t, filepath.Join(root, "example.test", "a", "new"))
	if len(names) != n {
		t.Fatalf("new/ holds %d files after %d deliveries", len(names), n)
	}
	host, _ := os.Hostname()
	for _, name := range names {
		if !strings.Contains(name, ".M") || !strings.Contains(name, "P") || !strings.Contains(name, "Q") ||
			strings.Contains(name, ":") || !strings.HasSuffix(name, "."+strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)) {
			t.Fatalf("name %q is not <time>.M<usec>P<pid>Q<n>.<host>", name)
		}
	}
}

func TestMaildirUnsafeAddresses(t *testing.T) {
	tests := []struct{ rcpt, err string }{
		{"../etc@example.test", `address "../etc@example.test": local part "../etc" starts with a dot: unsafe as a Maildir path`},
		{"..@example.test", `address "..@example.test": local part ".." starts with a dot: unsafe as a Maildir path`},
		{".@example.test", `address ".@example.test": local part "." starts with a dot: unsafe as a Maildir path`},
		{".hidden@example.test", `address ".hidden@example.test": local part ".hidden" starts with a dot: unsafe as a Maildir path`},
		{"a/b@example.test", `address "a/b@example.test": local part "a/b" contains a slash or NUL: unsafe as a Maildir path`},
		{`"x/../../etc"@example.test`, `address "\"x/../../etc\"@example.test": local part "x/../../etc" contains a slash or NUL: unsafe as a Maildir path`},
		{"@example.test", `address "@example.test": local part is empty: unsafe as a Maildir path`},
		{`""@example.test`, `address "\"\"@example.test": local part is empty: unsafe as a Maildir path`},
		{"user@..", `address "user@..": domain ".." starts with a dot: unsafe as a Maildir path`},
		{"user@", `address "user@": domain is empty: unsafe as a Maildir path`},
		{"user@a/b", `address "user@a/b": domain "a/b" contains a slash or NUL: unsafe as a Maildir path`},
		{"user", `address "user" has no domain: cannot choose a Maildir`},
		{"us\x00er@example.test", `address "us\x00er@example.test" contains control character 0x00`},
		{strings.Repeat("x", 256) + "@example.test", `address "` + strings.Repeat("x", 256) + `@example.test": local part is 256 bytes long: longer than a file name may be`},
	}
	root := t.TempDir()
	tr := newMaildirTransport(t, root)
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			got := tr.Deliver(context.Background(), msg("s@example.test", "x\n", tt.rcpt, "ok@example.test"))
			why := BadAddress
			if strings.Contains(tt.err, "unsafe as a Maildir path") || strings.Contains(tt.err, "longer than a file name") {
				why = MaildirUnsafePath
			}
			checkResults(t, got, []Result{{Rcpt: tt.rcpt, Status: Failed, Reason: why, Err: tt.err}, {Rcpt: "ok@example.test", Status: Delivered}})
		})
	}
	// Nothing but the one good mailbox was created.
	if names := files(t, root); len(names) != 1 || names[0] != "example.test" {
		t.Errorf("root holds %v", names)
	}
	if names := files(t, filepath.Join(root, "example.test")); len(names) != 1 || names[0] != "ok" {
		t.Errorf("example.test holds %v", names)
	}
}

func TestMaildirErrorsDefer(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string, m *Message)
		err   string // Err, with ROOT for the root directory
	}{{
		name: "mailbox path blocked by a file",
		setup: func(t *testing.T, root string, m *Message) {
			if err := os.WriteFile(filepath.Join(root, "example.test"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		err: "maildir: mkdir ROOT/example.test: not a directory",
	}, {
		name: "message cannot be opened",
		setup: func(t *testing.T, root string, m *Message) {
			m.Open = func() (io.ReadCloser, error) { return nil, errors.New("open spool/input/Q/X-D: no such file") }
		},
		err: "error opening message: open spool/input/Q/X-D: no such file",
	}, {
		name:  "message without Open",
		setup: func(t *testing.T, root string, m *Message) { m.Open = nil },
		err:   "error opening message: message has no body (Message.Open is nil)",
	}, {
		name: "message cannot be read",
		setup: func(t *testing.T, root string, m *Message) {
			m.Open = func() (io.ReadCloser, error) {
				return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\n"), errReader{errors.New("read X-D: input/output error")})), nil
			}
		},
		err: "error reading message: read X-D: input/output error",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			m := msg("s@example.test", "x\n", "a@example.test")
			tt.setup(t, root, m)
			got := newMaildirTransport(t, root).Deliver(context.Background(), m)
			checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: LocalError, Err: strings.ReplaceAll(tt.err, "ROOT", root)}})
			tmp := filepath.Join(root, "example.test", "a", "tmp")
			if _, err := os.Stat(tmp); err == nil {
				if left := files(t, tmp); len(left) != 0 {
					t.Errorf("tmp/ not cleaned up: %v", left)
				}
			}
		})
	}
}

func TestMaildirContextCancelled(t *testing.T) {
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := newMaildirTransport(t, root).Deliver(ctx, msg("", "x\n", "a@example.test"))
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: Abandoned, Err: "delivery abandoned: context canceled"}})
}
