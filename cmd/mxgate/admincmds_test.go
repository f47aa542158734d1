package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"mxgate/auth"
)

// passwd runs mxgate admin passwd with stdin.
func passwd(stdin string, args ...string) result {
	var out, errs bytes.Buffer
	code := run(append([]string{"mxgate"}, args...), strings.NewReader(stdin), &out, &errs)
	return result{out.String(), errs.String(), code}
}

// usersOf parses a users file as the console reads it.
func usersOf(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.ParsePasswd(path, b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return users
}

func TestAdminPasswd(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "admins")

	r := passwd("first secret\n", "admin", "passwd", "alice", "--file", file)
	if r.code != 0 || r.stdout != "user alice added to "+file+"\n" {
		t.Fatalf("add: %+v", r)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	h := usersOf(t, file)["alice"]
	if cost, _ := bcrypt.Cost([]byte(h)); cost != 12 || bcrypt.CompareHashAndPassword([]byte(h), []byte("first secret")) != nil {
		t.Errorf("alice's hash %q (cost %d) does not verify", h, cost)
	}

	// Another user is added; a second run for alice replaces her line and
	// keeps the rest, comments too.
	os.WriteFile(file, append([]byte("# the console's admins\n"), must(os.ReadFile(file))...), 0o640)
	if os.Geteuid() == 0 {
		if err := os.Chown(file, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	passwd("bobs\n", "admin", "passwd", "--file="+file, "bob")
	if r := passwd("second\r\n", "admin", "passwd", "-file", file, "alice"); r.code != 0 || r.stdout != "password of alice changed in "+file+"\n" {
		t.Errorf("change: %+v", r)
	}
	text := string(must(os.ReadFile(file)))
	if !strings.HasPrefix(text, "# the console's admins\nalice:") || strings.Count(text, "alice:") != 1 || !strings.Contains(text, "\nbob:") {
		t.Errorf("file after the change:\n%s", text)
	}
	users := usersOf(t, file)
	if bcrypt.CompareHashAndPassword([]byte(users["alice"]), []byte("second")) != nil || bcrypt.CompareHashAndPassword([]byte(users["bob"]), []byte("bobs")) != nil {
		t.Errorf("hashes do not verify: %v", users)
	}
	if os.Geteuid() == 0 {
		fi, _ := os.Stat(file)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("owner %d:%d, want the old file's 65534:65534", st.Uid, st.Gid)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".admins.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// The config's [admin] users is the default file, made relative to the
	// config's directory; it need not exist yet.
	cfg := filepath.Join(dir, "mxgate.toml")
	os.WriteFile(cfg, []byte("relay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:25\"\n[admin]\nusers = \"from-config\"\n"), 0o644)
	if r := passwd("pw\n", "-config", cfg, "admin", "passwd", "carol"); r.code != 0 || usersOf(t, filepath.Join(dir, "from-config"))["carol"] == "" {
		t.Errorf("from the config: %+v", r)
	}
	before := string(must(os.ReadFile(file)))
	for _, c := range []struct {
		name, stdin string
		args        []string
		code        int
		stderr      string
	}{
		{"no user", "pw\n", []string{"admin", "passwd", "--file", file}, 2, "give the user's name"},
		{"two users", "pw\n", []string{"admin", "passwd", "--file", file, "a", "b"}, 2, `unexpected argument "b"`},
		{"bad flag", "pw\n", []string{"admin", "passwd", "--force", "a"}, 2, "unknown flag --force"},
		{"colon", "pw\n", []string{"admin", "passwd", "--file", file, "a:b"}, 1, `invalid user name "a:b"`},
		{"space", "pw\n", []string{"admin", "passwd", "--file", file, "a b"}, 1, `invalid user name "a b"`},
		{"empty password", "\n", []string{"admin", "passwd", "--file", file, "alice"}, 1, "empty password; nothing changed"},
		{"no input", "", []string{"admin", "passwd", "--file", file, "alice"}, 1, "reading the password from standard input: EOF"},
		{"no users file", "pw\n", []string{"-config", filepath.Join(repoRoot(t), "testdata/config/minimal.toml"), "admin", "passwd", "alice"}, 1, "the config sets no [admin] users file"},
	} {
		r := passwd(c.stdin, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want %d, %q", c.name, r.code, r.stderr, c.code, c.stderr)
		}
	}
	if after := string(must(os.ReadFile(file))); after != before {
		t.Errorf("a refused run changed the file:\n%s", after)
	}
}

// writeUsersLine keeps an existing file's mode (0640 only for a new
// one), writes through a symbolic link to its target, and two runs at
// once both land.
func TestWriteUsersLine(t *testing.T) {
	const hash = "$2y$04$abcdefghijklmnopqrstuuO4mU.3MNm8Z1gXQpvjyY1Ahu7ZkQ7G."
	for _, c := range []struct {
		name  string
		setup func(dir string) string // returns the path given
		mode  os.FileMode             // of the file written
	}{
		{"new", func(dir string) string { return filepath.Join(dir, "admins") }, 0o640},
		{"0600 kept", func(dir string) string {
			p := filepath.Join(dir, "admins")
			os.WriteFile(p, []byte("bob:"+hash+"\n"), 0o600)
			return p
		}, 0o600},
		{"0400 kept", func(dir string) string {
			p := filepath.Join(dir, "admins")
			os.WriteFile(p, []byte("bob:"+hash+"\n"), 0o400)
			return p
		}, 0o400},
		{"symlink to a file", func(dir string) string {
			os.Mkdir(filepath.Join(dir, "real"), 0o700)
			os.WriteFile(filepath.Join(dir, "real", "admins"), []byte("bob:"+hash+"\n"), 0o600)
			os.Symlink("real/admins", filepath.Join(dir, "admins"))
			return filepath.Join(dir, "admins")
		}, 0o600},
		{"symlink to no file yet", func(dir string) string {
			os.Mkdir(filepath.Join(dir, "real"), 0o700)
			os.Symlink(filepath.Join(dir, "real", "admins"), filepath.Join(dir, "admins"))
			return filepath.Join(dir, "admins")
		}, 0o640},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := c.setup(dir)
			if _, err := writeUsersLine(path, "alice", hash, -1); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			target := path
			if strings.HasPrefix(c.name, "symlink") {
				if fi.Mode()&os.ModeSymlink == 0 {
					t.Fatalf("%s is no longer a symbolic link: %v", path, fi.Mode())
				}
				target = filepath.Join(dir, "real", "admins")
			}
			fi, err = os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != c.mode {
				t.Errorf("mode %04o, want %04o", fi.Mode().Perm(), c.mode)
			}
			if users := usersOf(t, path); users["alice"] != hash {
				t.Errorf("users %v", users)
			}
			if _, err := os.Stat(target + ".lock"); err != nil {
				t.Errorf("no lock file beside the target: %v", err)
			}
		})
	}

	// Runs at once take turns: every user is in the file.
	path := filepath.Join(t.TempDir(), "admins")
	var wg sync.WaitGroup
	const n = 20
	for i := range n {
		wg.Go(func() {
			if _, err := writeUsersLine(path, fmt.Sprintf("user%d", i), hash, -1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if users := usersOf(t, path); len(users) != n {
		t.Errorf("%d users of %d in the file after runs at once", len(users), n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
