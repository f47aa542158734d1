package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPasswdFileHashes(t *testing.T) {
	f, err := OpenPasswdFile("testdata/passwd", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user, pass string
		want       bool
	}{
		{"blf@example.test", "secret", true},
		{"blf@example.test", "Secret", false},
		{"sha512@example.test", "secret", true},
		{"sha512@example.test", "secret ", false},
		{"sha256@example.test", "secret", true},
		{"argon2id@example.test", "secret", true},
		{"argon2id@example.test", "", false},
		{"argon2i@example.test", "secret", true},
		{"bare6", "secret", true},
		{"bare6", "secrets", false},
		{"nobody@example.test", "secret", false},
		{"BLF@example.test", "secret", false}, // logins are compared as written
	} {
		t.Run(tt.user+"/"+tt.pass, func(t *testing.T) {
			got, err := f.Check(context.Background(), tt.user, tt.pass)
			if err != nil || got != tt.want {
				t.Errorf("Check(%q, %q) = %v, %v; want %v", tt.user, tt.pass, got, err, tt.want)
			}
		})
	}
}

func TestParsePasswdErrors(t *testing.T) {
	for _, tt := range []struct{ data, want string }{
		{"alice\n", "p:1: want user:hash"},
		{"# c\n\nalice:{PLAIN}secret\n", "p:3: user alice: unsupported scheme {PLAIN}"},
		{"alice:secret\n", `p:1: user alice: unsupported hash "secret"`},
		{"alice:$2y$05$short\n", "p:1: user alice: bad bcrypt hash"},
		{"alice:$argon2id$v=19$m=99999999,t=1,p=1$c2FsdA$aGFzaA\n", "p:1: user alice: bad argon2 hash"},
		{"a:$6$x$y\na:$6$x$y\n", "p:2: user a is listed twice"},
	} {
		_, err := ParsePasswd("p", []byte(tt.data))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParsePasswd(%q) = %v, want %q...", tt.data, err, tt.want)
		}
	}
}

// TestPasswdFileReload: a changed file is read again; a broken version
// keeps the previous one, with a paniclog line.
func TestPasswdFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	write := func(s string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, mtime, mtime)
	}
	const alice = "alice:$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.\n"
	t0 := time.Now().Add(-time.Hour)
	write(alice, t0)
	var panics []string
	f, err := OpenPasswdFile(path, func(s string) { panics = append(panics, s) })
	if err != nil {
		t.Fatal(err)
	}
	check := func(user string, want bool) {
		t.Helper()
		f.mu.Lock()
		f.checked = time.Time{} // past the once-a-second look
		f.mu.Unlock()
		if got, err := f.Check(context.Background(), user, "secret"); got != want || err != nil {
			t.Errorf("Check(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	check("alice", true)
	write(strings.Replace(alice, "alice", "bob", 1), t0.Add(time.Minute))
	check("alice", false)
	check("bob", true)
	write("bob\n", t0.Add(2*time.Minute))
	check("bob", true)
	if len(panics) != 1 || !strings.Contains(panics[0], ":1: want user:hash; the previous version stays in use") {
		t.Errorf("paniclog lines %q", panics)
	}
	if _, err := OpenPasswdFile(filepath.Join(t.TempDir(), "none"), nil); err == nil {
		t.Error("OpenPasswdFile of a missing file: no error")
	}
}

// TestPasswdFileUnreadable: a file that can no longer be read (the
// daemon dropped its privileges, the file was removed) keeps the users
// read before, and the paniclog says so once per failure, not on every
// look.
func TestPasswdFileUnreadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	const alice = "alice:$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.\n"
	if err := os.WriteFile(path, []byte(alice), 0o600); err != nil {
		t.Fatal(err)
	}
	var panics []string
	f, err := OpenPasswdFile(path, func(s string) { panics = append(panics, s) })
	if err != nil {
		t.Fatal(err)
	}
	look := func(n int) {
		t.Helper()
		for range n {
			f.mu.Lock()
			f.checked = time.Time{} // past the once-a-second look
			f.mu.Unlock()
			if ok, err := f.Check(context.Background(), "alice", "secret"); !ok || err != nil {
				t.Fatalf("Check(alice) = %v, %v; want the old users kept", ok, err)
			}
		}
	}
	steps := []struct {
		name  string
		do    func() error
		panic string // the paniclog line it adds, "" for none
	}{
		{"removed", func() error { return os.Remove(path) },
			"passwd-file: stat " + path + ": no such file or directory; the previous version stays in use"},
		{"a directory, not readable as a file", func() error { return os.Mkdir(path, 0o700) },
			"passwd-file: read " + path + ": is a directory; the previous version stays in use"},
		{"readable again", func() error { os.Remove(path); return os.WriteFile(path, []byte(alice), 0o600) }, ""},
		{"removed again", func() error { return os.Remove(path) },
			"passwd-file: stat " + path + ": no such file or directory; the previous version stays in use"},
	}
	var want []string
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatal(err)
		}
		look(3)
		if s.panic != "" {
			want = append(want, s.panic)
		}
		if strings.Join(panics, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: paniclog lines\n%s\nwant\n%s", s.name, strings.Join(panics, "\n"), strings.Join(want, "\n"))
		}
	}
	if h, ok := f.Hash("alice"); !ok || !strings.HasPrefix(h, "$6$") {
		t.Errorf("Hash(alice) = %q, %v", h, ok)
	}
}

func FuzzParsePasswd(f *testing.F) {
	seed, err := os.ReadFile("testdata/passwd")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("a:$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA\n"))
	f.Add([]byte("a:{X"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := ParsePasswd("p", data)
		if err != nil {
			return
		}
		for u, h := range users {
			if u == "" || strings.ContainsAny(u, ":\n") || h == "" {
				t.Fatalf("parsed user %q hash %q", u, h)
			}
		}
	})
}
