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
	return relaySession{p: c.p, ip: conn.IP, byMTA: conn.ByMTA}
}

type relaySession struct {
	filters.Pass
	p     *Policy
	ip    netip.Addr
	byMTA bool
}

// Rcpt decides on rcpt, in the wire form the gateway passes every check
// (a quoted local part stays quoted; ParseWire undoes it); an accepted
// recipient's Log says why it is allowed.
func (s relaySession) Rcpt(_ context.Context, tx *filters.Tx, rcpt string) filters.Verdict {
	if s.byMTA {
		return filters.Verdict{Log: "relay decided by the MTA"}
	}
	a, err := ParseWire(rcpt)
	if err != nil {
		return refusal(*SyntaxRefusal(err), rcpt)
	}
	// An authenticated client may relay, as a trusted one may; the
	// restricted local parts and literals stay refused.
	if tx.AuthUser != "" {
		if ref := AllowAuthenticated(a); ref != nil {
			return refusal(*ref, rcpt)
		}
		return filters.Verdict{Log: "authenticated as " + tx.AuthUser}
	}
	if ref := s.p.Allow(s.ip, a); ref != nil {
		return refusal(*ref, rcpt)
	}
	return filters.Verdict{Log: s.p.Why(s.ip, a)}
}

// RcptSyntax is the verdict on a RCPT argument Parse refused: 501 5.1.3,
// as the relay policy words it.
func RcptSyntax(arg string, err error) filters.Verdict { return refusal(*SyntaxRefusal(err), arg) }

func refusal(ref Refusal, arg string) filters.Verdict {
	code := "relay-denied"
	if ref.Code == refuseSyntax.Code {
		code = "syntax"
	}
	return filters.Verdict{
		Action: filters.Reject, Code: ref.Code, Enhanced: ref.Enhanced, Text: ref.Text,
		Log: ref.Log, ReasonCode: code,
		Trace: []string{"RCPT <" + arg + ">: " + ref.Log},
	}
}
