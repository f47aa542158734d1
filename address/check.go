package address

import (
	"context"
	"net/netip"

	"mxgate/filters"
)

// Check is the relay policy as the pipeline's first check: a recipient is
// accepted only for a relay domain or from a trusted network, never for a
// trick that would make mxgate an open relay.
type Check struct{ p *Policy }

// NewCheck returns the relay check of p.
func NewCheck(p *Policy) *Check { return &Check{p: p} }

func (c *Check) Name() string { return "relay" }

func (c *Check) Open(_ context.Context, conn *filters.Conn) filters.Session {
	return relaySession{p: c.p, ip: conn.IP}
}

type relaySession struct {
	filters.Pass
	p  *Policy
	ip netip.Addr
}

// Rcpt decides on rcpt, which the gateway has parsed already; an accepted
// recipient's Log says why it is allowed.
func (s relaySession) Rcpt(_ context.Context, tx *filters.Tx, rcpt string) filters.Verdict {
	a, ref := s.p.Recipient(s.ip, tx.RcptArg)
	if ref == nil {
		return filters.Verdict{Log: s.p.Why(s.ip, a)}
	}
	act, code := filters.Reject, "relay-denied"
	if ref.Code == refuseSyntax.Code {
		code = "syntax"
	}
	return filters.Verdict{
		Action: act, Code: ref.Code, Enhanced: ref.Enhanced, Text: ref.Text,
		Log: ref.Log, ReasonCode: code,
		Trace: []string{"RCPT <" + tx.RcptArg + ">: " + ref.Log},
	}
}
