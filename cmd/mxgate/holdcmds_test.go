package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/internal/statetest"
	"mxgate/ratelimit"
	"mxgate/spool"
	"mxgate/state"
)

// heldAs freezes a message under hold key key, as the gateway does.
func heldAs(key string) func(*spool.Envelope) {
	return func(env *spool.Envelope) { env.Frozen, env.Hold = queueNow, key }
}

// TestHoldCommands: list per key, release by the whole key or by the
// user alone (thawed, delivered, the rate cleared), drop, and the errors.
func TestHoldCommands(t *testing.T) {
	q := newQueueTest(t)
	st := statetest.New(nil)
	saved := checks.OpenStore
	checks.OpenStore = func(*config.Config, bool) (state.Store, error) { return st, nil }
	t.Cleanup(func() { checks.OpenStore = saved })
	ctx := context.Background()
	for _, k := range []string{"users:joe", "users:ann"} {
		for _, sk := range ratelimit.HoldKeys(k) {
			if err := st.Set(ctx, sk, []byte("5"), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := q.fill(
		message{sender: "joe@example.test", rcpts: []string{"bob@example.test"}, age: 25 * time.Minute, body: "one\n", edit: heldAs("users:joe")},
		message{sender: "ann@example.test", rcpts: []string{"carol@example.test"}, age: 20 * time.Minute, body: "two\n", edit: heldAs("users:ann")},
		message{sender: "joe@example.test", rcpts: []string{"dave@example.test"}, age: 10 * time.Minute, body: "three\n", edit: heldAs("users:joe")},
		message{sender: "eve@example.test", rcpts: []string{"bob@example.test"}, age: 5 * time.Minute, body: "not held\n",
			edit: func(env *spool.Envelope) { env.Frozen = queueNow }},
	)
	r := strings.NewReplacer("ID1", ids[0], "ID2", ids[1], "ID3", ids[2], "ID4", ids[3])
	user := userName()

	q.check("hold list", q.mxgate("mxgate", "hold", "list"), result{r.Replace(
		"users:ann: 1 held\n" +
			"20m    19 ID2 <ann@example.test> *** frozen ***\n          carol@example.test\n\n" +
			"users:joe: 2 held\n" +
			"25m    19 ID1 <joe@example.test> *** frozen ***\n          bob@example.test\n\n" +
			"10m    21 ID3 <joe@example.test> *** frozen ***\n          dave@example.test\n\n"), "", 0})

	for _, c := range []struct {
		name string
		args []string
		want result
	}{
		{"list with argument", []string{"hold", "list", "x"}, result{"", "mxgate: unexpected argument \"x\"\n", 2}},
		{"release without key", []string{"hold", "release"}, result{"", "mxgate: give one or more hold keys\n", 2}},
		{"drop without key", []string{"hold", "drop"}, result{"", "mxgate: give one or more hold keys\n", 2}},
		{"release unknown", []string{"hold", "release", "users:nobody"}, result{"",
			"mxgate: no message is held as \"users:nobody\" (see `mxgate hold list`)\n", 1}},
		{"drop unknown", []string{"hold", "drop", "eve@example.test"}, result{"",
			"mxgate: no message is held as \"eve@example.test\" (see `mxgate hold list`)\n", 1}},
	} {
		got := q.mxgate("mxgate", c.args...)
		if c.want.code == 2 {
			got.stderr, _, _ = strings.Cut(got.stderr, "usage:")
			got.stderr = strings.TrimSuffix(got.stderr, "\n") + "\n"
		}
		q.check(c.name, got, c.want)
	}

	// By the user alone: every limit's hold of joe.
	q.check("hold release", q.mxgate("mxgate", "hold", "release", "JOE"),
		result{r.Replace("Message ID1 is no longer frozen\nMessage ID3 is no longer frozen\n"), "", 0})
	q.requireLog(
		r.Replace("ID1 unfrozen by "+user+": hold users:joe released"),
		r.Replace("ID1 => bob@example.test R=downstream T=maildir"),
		r.Replace("ID1 Completed"),
		r.Replace("ID3 unfrozen by "+user+": hold users:joe released"),
		r.Replace("ID3 => dave@example.test R=downstream T=maildir"),
		r.Replace("ID3 Completed"),
	)
	for _, rcpt := range []string{"bob", "dave"} {
		if got, _ := filepath.Glob(filepath.Join(q.dataDir, "maildir", "example.test", rcpt, "new", "*")); len(got) != 1 {
			t.Errorf("%s's maildir holds %q, want the released message", rcpt, got)
		}
	}
	for _, sk := range ratelimit.HoldKeys("users:joe") {
		if _, ok, _ := st.Get(ctx, sk); ok {
			t.Errorf("%s still in the store after the release", sk)
		}
	}
	if _, ok, _ := st.Get(ctx, ratelimit.StoreKey("users:ann")); !ok {
		t.Error("ann's rate cleared by joe's release")
	}

	q.check("hold drop", q.mxgate("mxgate", "hold", "drop", "users:ann"), result{r.Replace("Message ID2 has been removed\n"), "", 0})
	q.requireLog(r.Replace("ID2 removed by "+user+": hold users:ann dropped"), r.Replace("ID2 Completed"))
	if _, err := os.Stat(filepath.Join(q.dataDir, "maildir", "example.test", "carol")); !os.IsNotExist(err) {
		t.Errorf("dropped message delivered: %v", err)
	}
	// The frozen message no limit held is the admin's (-Mt), not hold's.
	q.check("list after", q.mxgate("mxgate", "hold", "list"), result{"", "", 0})
	q.check("queue after", q.mxgate("mxgate", "-bpc"), result{"1\n", "", 0})
}

// TestHostTestRateLimit: -bh traces each rate limit (key, rate, limit,
// verdict) and greylisting, on a store of its own.
func TestHostTestRateLimit(t *testing.T) {
	saved := checks.OpenStore
	checks.OpenStore = func(*config.Config, bool) (state.Store, error) { return statetest.New(nil), nil }
	t.Cleanup(func() { checks.OpenStore = saved })
	cfg, _ := routedConfig(t, `mode = "none"`, `
[[ratelimit]]
name   = "senders"
key    = "sender"
rate   = "2/1h"
action = "reject"

[greylist]
enabled = true
`, `url = "smtp://127.0.0.1:2600"`)
	session := "EHLO client.test\r\n" +
		"MAIL FROM:<a@client.test>\r\n" +
		"RCPT TO:<u@example.test>\r\n" +
		"RSET\r\n" +
		"MAIL FROM:<a@client.test>\r\n" +
		"RSET\r\n" +
		"MAIL FROM:<a@client.test>\r\n" +
		"QUIT\r\n"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"mxgate", "-config", cfg, "-bh", "192.0.2.1"}, strings.NewReader(session), &stdout, &stderr); code != 0 {
		t.Errorf("exit %d, stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{
		"451 4.7.1 Greylisted, please try again in 300 seconds\r\n",
		"550 5.7.1 Rate limit exceeded\r\n",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, want := range []string{
		">>> ratelimit senders: sender a@client.test: rate 1.0 / 1h, limit 2/1h: under\n",
		">>> greylist: triplet (192.0.2.0/24, <a@client.test>, <u@example.test>) first seen: deferred for 300 seconds\n",
		"/ 1h, limit 2/1h: over: rejected\n",
		"rejected MAIL <a@client.test>: rate limit exceeded: senders sender a@client.test: Sender rate 3.0 / 1h (limit 2/1h)\n",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("trace lacks %q:\n%s", want, stderr.String())
		}
	}
}
