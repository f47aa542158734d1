package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/internal/statetest"
	"mxgate/state"
)

// `mxgate policy -bh` answers each request on stdin as the policy server
// would and traces the checks' decisions on stderr, as -bh does: a rate
// limit of 2 an hour per sender lets two transactions through and
// refuses the third, with gateway mode's reply.
func TestPolicyTestCommand(t *testing.T) {
	saved := checks.OpenStore
	checks.OpenStore = func(*config.Config, bool) (state.Store, error) { return statetest.New(nil), nil }
	t.Cleanup(func() { checks.OpenStore = saved })
	cfg, dataDir := routedConfig(t, `mode = "none"`, `
[[ratelimit]]
name   = "senders"
key    = "sender"
rate   = "2/1h"
action = "reject"
`, `url = "smtp://127.0.0.1:2600"`)
	reqs, err := os.ReadFile(filepath.Join("testdata", "policy-bh.requests"))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"mxgate", "-config", cfg, "policy", "-bh"}, bytes.NewReader(reqs), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	want := "action=DUNNO\n\naction=DUNNO\n\naction=DUNNO\n\naction=550 5.7.1 Rate limit exceeded\n\n"
	if stdout.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), want)
	}
	for _, line := range []string{
		">>> MAIL: accept",
		">>> RCPT: accept",
		">>> ratelimit senders: sender a@client.test: rate 3.0 / 1h, limit 2/1h: over: rejected",
		">>> MAIL: reject: 550 5.7.1 Rate limit exceeded",
		"LOG: H=(client.test) [192.0.2.7] rejected MAIL <a@client.test>: rate limit exceeded",
	} {
		if !strings.Contains(stderr.String(), line) {
			t.Errorf("stderr lacks %q:\n%s", line, stderr.String())
		}
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Errorf("-bh made %s: it must leave nothing", dataDir)
	}
}
