package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// configCheck runs `mxgate config check -config FILE` and returns its
// stdout, stderr and exit status.
func configCheck(t *testing.T, file string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "config", "check", "-config", file)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running %s config check: %v", binary, err)
		}
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestConfigCheckBad: a config with a mistake makes `config check` name
// the file and line of the mistake and exit non-zero.
func TestConfigCheckBad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		line string // FILE:LINE the error must name
		key  string // the key it must name
	}{
		{"bad-cidr.toml", "7", "relay.trusted_networks"},
		{"bad-unknown-key.toml", "7", "smtp.max_recipents"},
		{"bad-duration.toml", "12", "queue.run_interval"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := testdata(tc.file)
			stdout, stderr, status := configCheck(t, path)
			if status == 0 {
				t.Errorf("config check %s: exit status 0, want non-zero; stdout:\n%s", tc.file, stdout)
			}
			if want := path + ":" + tc.line + ":"; !strings.Contains(stderr, want) {
				t.Errorf("config check %s: stderr %q does not name %s", tc.file, stderr, want)
			}
			if !strings.Contains(stderr, tc.key) {
				t.Errorf("config check %s: stderr %q does not name the key %s", tc.file, stderr, tc.key)
			}
		})
	}
}

// TestConfigCheckGood: a valid config prints the effective configuration,
// its own values and the defaults filled in, as TOML, and exits 0.
func TestConfigCheckGood(t *testing.T) {
	t.Parallel()
	stdout, stderr, status := configCheck(t, testdata("good.toml"))
	if status != 0 {
		t.Fatalf("config check good.toml: exit status %d, want 0; stderr:\n%s", status, stderr)
	}
	var eff struct {
		Hostname string   `toml:"hostname"`
		Listen   []string `toml:"listen"`
		DataDir  string   `toml:"data_dir"`
		SMTP     struct {
			MaxRecipients int `toml:"max_recipients"`
		} `toml:"smtp"`
		Relay struct {
			Domains []string `toml:"domains"`
		} `toml:"relay"`
		Downstream struct {
			URL string `toml:"url"`
		} `toml:"downstream"`
	}
	if err := toml.Unmarshal([]byte(stdout), &eff); err != nil {
		t.Fatalf("config check output is not TOML: %v\n%s", err, stdout)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"hostname", eff.Hostname, "mx.example.test"},
		{"listen", strings.Join(eff.Listen, ","), "127.0.0.1:2525"},
		{"data_dir", eff.DataDir, "/var/spool/mxgate"},
		{"relay.domains", strings.Join(eff.Relay.Domains, ","), "example.test"},
		{"downstream.url", eff.Downstream.URL, "lmtp://127.0.0.1:24"},
		{"smtp.max_recipients (default)", eff.SMTP.MaxRecipients, 100},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("effective %s = %v, want %v; output:\n%s", c.name, c.got, c.want, stdout)
		}
	}
}
