package config

import (
	"fmt"
	"os"
	"path/filepath"
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
