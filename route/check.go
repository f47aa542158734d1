package route

import (
	"context"

	"mxgate/address"
	"mxgate/filters"
)

// unrouteable is Exim's word for an address no router takes.
const unrouteable = "Unrouteable address"

// Check refuses at RCPT a recipient the router has no route for, so that
// mail a trusted client relays to a foreign domain with outbound "none" is
// refused while the client is there to hear it, never accepted and
// bounced. It runs after the relay check, which has refused every other
// client's foreign recipients already.
type Check struct{ r *Router }

// NewCheck returns the routing check of r.
func NewCheck(r *Router) *Check { return &Check{r: r} }

// Name names the check in logs and -bh.
func (c *Check) Name() string { return "route" }

// Open starts a connection's session; the check keeps no state.
func (c *Check) Open(context.Context, *filters.Conn) filters.Session {
	return routeSession{r: c.r}
}

type routeSession struct {
	filters.Pass
	r *Router
}

// Rcpt refuses an unroutable recipient with 550 5.1.2 (RFC 3463: bad
// destination system address).
func (s routeSession) Rcpt(_ context.Context, _ *filters.Tx, rcpt string) filters.Verdict {
	a, err := address.ParseWire(rcpt)
	if err != nil {
		// The relay check refused it already; nothing to route.
		return filters.Verdict{}
	}
	if ref := s.r.Refusal(a); ref != nil {
		return filters.Verdict{
			Action: filters.Reject, Code: ref.Code, Enhanced: ref.Enhanced, Text: ref.Text,
			Log: ref.Log, ReasonCode: "unroutable",
			Trace: []string{"RCPT <" + rcpt + ">: " + ref.Log + ": " + a.Domain + ` is not a relay domain, no [[route]] names it, and outbound.mode is "none"`},
		}
	}
	// A routed recipient is not traced: -bt shows its route.
	return filters.Verdict{}
}

// Refusal is why mail for a cannot be taken: nil when a has a route, else
// Exim's "Unrouteable address" with 550 5.1.2 (RFC 3463: bad destination
// system address). The RCPT check and local submission refuse with it, so
// a client and a local program hear the same words.
func (r *Router) Refusal(a address.Address) *address.Refusal {
	if r.Domain(a.Domain).Kind != Unroutable {
		return nil
	}
	return &address.Refusal{Code: 550, Enhanced: [3]int{5, 1, 2}, Text: unrouteable, Log: unrouteable}
}
