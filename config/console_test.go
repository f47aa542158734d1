package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The console's users file must be there and readable; hashes readable
// by everyone are a warning. A client config (admin passwd) reads none.
func TestConsoleUsers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "admins")
	if err := os.WriteFile(file, []byte("admin:$2y$12$x\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, admin string
		err, warn   string
		timeout     time.Duration
		noListen    bool
	}{
		{"off", "", "", "", 8 * time.Hour, false},
		{"good", fmt.Sprintf("users = %q\nsession_timeout = \"30m\"", file), "", "", 30 * time.Minute, false},
		{"missing", fmt.Sprintf("users = %q", filepath.Join(dir, "none")), "f.toml:5: key \"admin.users\": open " + filepath.Join(dir, "none") + ": no such file or directory", "", 0, false},
		{"directory", fmt.Sprintf("users = %q", dir), "f.toml:5: key \"admin.users\": " + dir + " is a directory, not a users file", "", 0, false},
		{"world-readable", fmt.Sprintf("users = %q", loose), "", "f.toml:5: warning: " + loose + " has mode 0644: it holds password hashes, make it 0640 or tighter", 8 * time.Hour, false},
		{"no listener", fmt.Sprintf("users = %q", file), "", "f.toml:4: warning: no console is served: admin.listen is not set", 8 * time.Hour, true},
		{"bad timeout", "session_timeout = \"soon\"", "f.toml:5: key \"admin.session_timeout\": invalid duration", "", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			listen := "listen = \"127.0.0.1:8025\"\n"
			if c.noListen {
				listen = ""
			}
			text := "relay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:25\"\n[admin]\n" + listen + c.admin + "\n"
			cfg, err := Parse("f.toml", []byte(text))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := warnings(cfg); got != c.warn {
				t.Errorf("warnings %q, want %q", got, c.warn)
			}
			if time.Duration(cfg.Admin.SessionTimeout) != c.timeout {
				t.Errorf("session_timeout %v, want %v", cfg.Admin.SessionTimeout, c.timeout)
			}
		})
	}
	// mxgate admin passwd creates the file: its config must load first.
	path := filepath.Join(dir, "mxgate.toml")
	if err := os.WriteFile(path, []byte("relay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:25\"\n[admin]\nusers = \"new-admins\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadClient(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Users != filepath.Join(dir, "new-admins") {
		t.Errorf("users = %q, want it relative to the config's directory", cfg.Admin.Users)
	}
}

// The daemon reads the users file again after dropping its privileges:
// config check warns when its user may not read it (the mode bits of
// owner, group or others, as the kernel applies them).
func TestConsoleUsersReadableByUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for _, c := range []struct {
		name     string
		uid, gid int
		mode     os.FileMode
		readable bool
	}{
		{"root's, 0600", 0, 0, 0o600, false},
		{"root's group, 0640", 0, 0, 0o640, false},
		{"the user's group, 0640", 0, gid, 0o640, true},
		{"the user's own, 0400", uid, 0, 0o400, true},
		{"the user's own without the owner bit, 0040", uid, gid, 0o040, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(file, []byte("admin:$2y$12$x\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(file, c.uid, c.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, c.mode); err != nil {
				t.Fatal(err)
			}
			text := fmt.Sprintf("user = \"nobody\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:25\"\n[admin]\nlisten = \"127.0.0.1:8025\"\nusers = %q\n", file)
			cfg, err := Parse("f.toml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("f.toml:6: warning: %s (owner %d, group %d, mode %04o) is not readable by user \"nobody\"", file, c.uid, c.gid, c.mode)
			if got := warnings(cfg); strings.Contains(got, want) == c.readable {
				t.Errorf("warnings %q; want the warning %q: %v", got, want, !c.readable)
			}
		})
	}
}
