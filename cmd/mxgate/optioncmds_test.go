package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrintOptions(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "smarthost.pw")
	if err := os.WriteFile(pw, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mxgate.toml")
	conf := `hostname = "mx.example.test"
listen = ["127.0.0.1:2525", "[::1]:2525"]
data_dir = "` + filepath.Join(dir, "var") + `"

[relay]
domains = ["example.test", "example.net"]

[outbound]
mode = "smarthost"
smarthost = "smtps://relay.example.net:465"
auth_user = "gw"
auth_password_file = "` + pw + `"

[downstream]
url = "lmtp://127.0.0.1:24"

[[route]]
name = "lists"
domains = ["lists.example.test"]
url = "lmtp://127.0.0.1:24"
`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	mx := func(args ...string) result {
		return runArgs(append([]string{"mxgate", "-config", cfg, "-bP"}, args...)...)
	}

	all := mx()
	if all.code != 0 || all.stderr != "" {
		t.Fatalf("-bP: %+v", all)
	}
	lines := strings.Split(strings.TrimSuffix(all.stdout, "\n"), "\n")
	for _, want := range []string{
		"hostname = mx.example.test",
		"listen = 127.0.0.1:2525, [::1]:2525",
		"listen_tls =",
		"relay.domains = example.test, example.net",
		"outbound.auth_user = gw",
		"outbound.auth_password_file = " + pw,
		"route[0].name = lists",
		"route[0].domains = lists.example.test",
		"smtp.command_timeout = 5m",
		"smtp.max_message_size = 50MiB",
	} {
		found := false
		for _, l := range lines {
			found = found || l == want
		}
		if !found {
			t.Errorf("-bP has no line %q:\n%s", want, all.stdout)
		}
	}
	if strings.Contains(all.stdout, "s3cret") {
		t.Errorf("-bP printed the smarthost password:\n%s", all.stdout)
	}
	// Top-level options first, then the sections', each in name order.
	if !strings.HasPrefix(lines[0], "data_dir = ") || !strings.Contains(lines[len(lines)-1], ".") {
		t.Errorf("-bP order: first %q, last %q", lines[0], lines[len(lines)-1])
	}

	for _, c := range []struct {
		args []string
		want result
	}{
		{[]string{"relay.domains", "hostname"}, result{"relay.domains = example.test, example.net\nhostname = mx.example.test\n", "", 0}},
		{[]string{"route[0].url"}, result{"route[0].url = lmtp://127.0.0.1:24\n", "", 0}},
		{[]string{"relay"}, result{"relay.domains = example.test, example.net\nrelay.trusted_networks =\n", "", 0}},
		{[]string{"outbound.auth_password"}, result{"", "mxgate: unknown option outbound.auth_password\n", 1}},
		{[]string{"hostname", "relay.domain", "data_dir"}, result{"hostname = mx.example.test\ndata_dir = " + filepath.Join(dir, "var") + "\n", "mxgate: unknown option relay.domain\n", 1}},
	} {
		if got := mx(c.args...); got != c.want {
			t.Errorf("-bP %s = %+v, want %+v", strings.Join(c.args, " "), got, c.want)
		}
	}

	// The files the config names are not read: one a user may not read
	// (here: one that is gone) changes nothing.
	if err := os.Remove(pw); err != nil {
		t.Fatal(err)
	}
	if got, want := mx("outbound.auth_password_file"), (result{"outbound.auth_password_file = " + pw + "\n", "", 0}); got != want {
		t.Errorf("-bP without the password file = %+v, want %+v", got, want)
	}
}
