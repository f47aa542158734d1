package gateway

import (
	"strings"
	"testing"
	"time"

	"mxgate/address"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/internal/statetest"
	"mxgate/ratelimit"
)

// withRateLimit is the relay policy and one rate limit on the sender's
// domain, 2 per hour, with action, counted in an in-memory store.
func withRateLimit(action string) func(*config.Config, filters.Logger) *filters.Pipeline {
	return func(cfg *config.Config, log filters.Logger) *filters.Pipeline {
		policy := address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks)
		k := ratelimit.New(ratelimit.Options{Store: statetest.New(nil), Limits: []ratelimit.Limit{{
			Name: "domains", Key: ratelimit.KeySenderDomain, Per: ratelimit.PerMail, Action: action, OnError: filters.OnErrorAccept,
			Rate: ratelimit.Rate{Count: 2, Period: time.Hour, Text: "2/1h"},
		}}})
		return filters.New(filters.Options{Checks: []filters.Step{{Check: address.NewCheck(policy)}, {Check: k}}, Log: log})
	}
}

// TestRateLimitDefer: the client over the limit reads Exim's deferral,
// and the rejectlog says why in Exim's ratelimit words.
func TestRateLimitDefer(t *testing.T) {
	ts := newTestServerWith(t, nil, withRateLimit(ratelimit.ActionDefer))
	c := dial(t, ts.addr(0))
	c.greet()
	// Milliseconds apart, the second message is a rate just under 2
	// (Exim's smoothing): the third is over.
	for i := range 2 {
		if got := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: 1\n\nhi\n"); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("message %d: %s", i+1, got)
		}
	}
	c.expect("MAIL FROM:<b@client.test>", "451 4.7.0 Rate limit exceeded")
	c.expect("QUIT", "221 ")
	want := "H=(client.test) [127.0.0.1] temporarily rejected MAIL <b@client.test>: rate limit exceeded: domains sender_domain client.test: Sender rate 3.0 / 1h (limit 2/1h)"
	if rej := ts.logFile("rejectlog"); !strings.Contains(rej, want) {
		t.Errorf("rejectlog lacks\n%s\nin:\n%s", want, rej)
	}
}

// TestRateLimitHold: over a hold limit the message is accepted, frozen in
// the spool under its hold key, and no delivery is started for it; one
// paniclog alert names the key.
func TestRateLimitHold(t *testing.T) {
	ts := newTestServerWith(t, nil, withRateLimit(ratelimit.ActionHold))
	c := dial(t, ts.addr(0))
	c.greet()
	for i := range 4 {
		if got := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: burst\n\nhi\n"); !strings.HasPrefix(got, "250 2.0.0 OK id=") {
			t.Fatalf("message %d: %s, want it accepted", i+1, got)
		}
	}
	c.expect("QUIT", "221 ")
	c.rest()
	ids, err := ts.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, id := range ids {
		env, err := ts.spool.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		if env.Hold != "" {
			if env.Frozen.IsZero() {
				t.Errorf("%s held as %s but not frozen", id, env.Hold)
			}
			held = append(held, string(id)+" "+env.Hold)
			if !strings.Contains(ts.logFile("mainlog"), string(id)+" Frozen (rate limit hold domains:client.test)") {
				t.Errorf("mainlog lacks the Frozen line of %s:\n%s", id, ts.logFile("mainlog"))
			}
		}
	}
	if len(ids) != 4 || len(held) != 2 {
		t.Errorf("spool %v, held %v; want 4 messages, the last 2 held", ids, held)
	}
	ts.mu.Lock()
	commits := len(ts.commits)
	ts.mu.Unlock()
	if commits != 2 {
		t.Errorf("%d deliveries started, want 2 (the held messages wait)", commits)
	}
	if p := ts.logFile("paniclog"); strings.Count(p, "ratelimit hold: domains:client.test over 2/1h (rate 3.0)") != 1 {
		t.Errorf("paniclog, want one alert:\n%s", p)
	}
}
