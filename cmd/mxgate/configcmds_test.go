package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxgate/internal/peertest"
)

// TestConfigCheckCommand: what config check prints and its exit status,
// for its flags and for a config with a warning or a peer down.
func TestConfigCheckCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	base := "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"maildir://" + dir + "\"\noutbound.mode = \"none\"\n"
	good := write("good.toml", base)
	hostBits := write("bits.toml", base+"relay.trusted_networks = [\"10.1.2.3/8\"]\n")
	closed := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	down := write("down.toml", base+"spamd.address = \""+closed+"\"\n")
	tests := []struct {
		name   string
		args   []string
		status int
		stdout string // a line stdout must have; "" for none
		stderr string // stderr, exactly
	}{
		{"help", []string{"config", "check", "--help"}, 0, "usage: mxgate [-config FILE] config check [--probe]", ""},
		{"unknown flag", []string{"config", "check", "--frobnicate"}, 2, "", "mxgate: config check: flag provided but not defined: -frobnicate\n"},
		{"argument", []string{"config", "check", "extra"}, 2, "", "mxgate: unexpected argument \"extra\"\n"},
		{"good", []string{"-config", good, "config", "check"}, 0, "max_message_size = '50MiB'", ""},
		{"warning", []string{"-config", hostBits, "config", "check"}, 0, "trusted_networks = ['10.0.0.0/8']",
			hostBits + ":5: warning: 10.1.2.3/8 has host bits set: it means 10.0.0.0/8\n"},
		{"probe", []string{"-config", good, "config", "check", "--probe"}, 0, "downstream maildir://" + dir + ": OK (directory, writable, ", ""},
		{"probe, spamd down", []string{"-config", down, "config", "check", "--probe"}, 1, "spamd " + closed + ": FAILED (connection refused)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"mxgate"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if status != tt.status {
				t.Errorf("exit status %d, want %d; stderr:\n%s", status, tt.status, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			// Usage errors go on with the usage text.
			if got, _, _ := strings.Cut(stderr.String(), "usage:"); got != tt.stderr {
				t.Errorf("stderr = %q, want %q", got, tt.stderr)
			}
		})
	}
}
