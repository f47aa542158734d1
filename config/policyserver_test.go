package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyServer(t *testing.T) {
	const base = "hostname = \"mx.test\"\n[relay]\ndomains = [\"example.org\"]\n[downstream]\nurl = \"smtp://127.0.0.1:2600\"\n"
	for _, tc := range []struct {
		name, toml string
		listen     string // "" with err
		network    string
		err        string
	}{
		{"tcp", `[policy_server]` + "\nlisten = \"127.0.0.1:10031\"", "127.0.0.1:10031", "tcp", ""},
		{"unix relative", `[policy_server]` + "\nlisten = \"unix:run/policy.sock\"", "unix:DIR/run/policy.sock", "unix", ""},
		{"no SMTP", "listen = []\n[policy_server]\nlisten = \"127.0.0.1:10031\"", "127.0.0.1:10031", "tcp", ""},
		{"bad", `[policy_server]` + "\nlisten = \"10031\"", "", "", `key "policy_server.listen": invalid listen address "10031"`},
		{"unix empty", `[policy_server]` + "\nlisten = \"unix:\"", "", "", "unix: needs a socket path"},
		{"nothing at all", "listen = []", "", "", "no listen address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := base + tc.toml
			if strings.HasPrefix(tc.toml, "listen") {
				text = tc.toml[:strings.Index(tc.toml+"\n", "\n")] + "\n" + base + tc.toml[min(len(tc.toml), strings.Index(tc.toml+"\n", "\n")+1):]
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "mxgate.toml")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Replace(tc.listen, "DIR", dir, 1); c.PolicyServer.Listen != want {
				t.Errorf("listen %q, want %q", c.PolicyServer.Listen, want)
			}
			if n, _ := c.PolicyServer.PolicyNetwork(); n != tc.network {
				t.Errorf("network %q", n)
			}
		})
	}
}
