package gateway

import (
	"context"
	"strings"
	"testing"

	"mxgate/address"
	"mxgate/config"
	"mxgate/filters"
)

// stageCheck is a check for the gateway's side of the pipeline: it
// refuses a HELO name, and may panic in Reset.
type stageCheck struct {
	refuseHelo string
	panicReset bool
}

func (c *stageCheck) Name() string { return "stage" }

func (c *stageCheck) Open(context.Context, *filters.Conn) filters.Session {
	return &stageSession{c: c}
}

type stageSession struct {
	filters.Pass
	c *stageCheck
}

func (s *stageSession) Helo(_ context.Context, helo string) filters.Verdict {
	if helo != s.c.refuseHelo {
		return filters.Verdict{}
	}
	return filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "HELO name refused", Log: "HELO " + helo + " refused"}
}

func (s *stageSession) Reset(context.Context) {
	if s.c.panicReset {
		panic("reset")
	}
}

func withStageCheck(c *stageCheck) func(*config.Config, filters.Logger) *filters.Pipeline {
	return func(cfg *config.Config, log filters.Logger) *filters.Pipeline {
		policy := address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks)
		return filters.New(filters.Options{Checks: []filters.Step{{Check: address.NewCheck(policy)}, {Check: c}}, Log: log})
	}
}

// TestHeloRefusal: a check's refusal of the greeting answers every MAIL
// until the client greets again with another name.
func TestHeloRefusal(t *testing.T) {
	ts := newTestServerWith(t, nil, withStageCheck(&stageCheck{refuseHelo: "bad.example"}))
	c := dial(t, ts.addr(0))
	c.expect("", "220 ")
	c.expect("EHLO bad.example", "250-")
	c.expect("MAIL FROM:<a@client.test>", "550 5.7.1 HELO name refused")
	c.expect("MAIL FROM:<b@client.test>", "550 5.7.1 HELO name refused")
	c.expect("EHLO good.example", "250-")
	c.expect("MAIL FROM:<a@client.test>", "250 2.1.0")
	c.expect("QUIT", "221 ")
	if rej := ts.logFile("rejectlog"); !strings.Contains(rej, "H=(bad.example) [127.0.0.1] rejected MAIL <a@client.test>: HELO bad.example refused") {
		t.Errorf("rejectlog lacks the refusal:\n%s", rej)
	}
}

// TestCheckPanicsInReset: a check that panics in Reset neither holds the
// connection's checks locked nor stops the session or the shutdown.
func TestCheckPanicsInReset(t *testing.T) {
	ts := newTestServerWith(t, nil, withStageCheck(&stageCheck{panicReset: true}))
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RSET", "250 ")
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("QUIT", "221 ")
	c.rest()
	if p := ts.logFile("paniclog"); !strings.Contains(p, "check stage panicked in Reset from [127.0.0.1]: reset") {
		t.Errorf("paniclog lacks the panic:\n%s", p)
	}
	// The cleanup's Shutdown fails the test if the connection hangs.
}
