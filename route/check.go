package route

import (
	"context"
	"fmt"

	"mxgate/address"
	"mxgate/deliver"
	"mxgate/filters"
)

// unrouteable is Exim's word for an address no router takes.
const unrouteable = "Unrouteable address"

// Check refuses at RCPT a recipient the router cannot deliver: mail a
// trusted client relays to a foreign domain with outbound "none", and mail
// for a Maildir store that has no Maildir for it (a {user} layout whose
// users file does not list the domain). Either is refused while the
// client is there to hear it, never accepted and bounced to a sender who
// may be forged. It runs after the relay check, which has refused every
// other client's foreign recipients already.
type Check struct{ r *Router }

// NewCheck returns the routing check of r.
func NewCheck(r *Router) *Check { return &Check{r: r} }

// Name names the check in logs and -bh.
func (c *Check) Name() string { return "route" }

// Open starts a connection's session; the check keeps no state.
func (c *Check) Open(_ context.Context, conn *filters.Conn) filters.Session {
	if conn.ByMTA {
		return filters.Pass{} // the MTA routes its mail itself
	}
	return routeSession{r: c.r}
}

type routeSession struct {
	filters.Pass
	r *Router
}

// Rcpt refuses a recipient the router has no destination for.
func (s routeSession) Rcpt(_ context.Context, _ *filters.Tx, rcpt string) filters.Verdict {
	a, err := address.ParseWire(rcpt)
	if err != nil {
		// The relay check refused it already; nothing to route.
		return filters.Verdict{}
	}
	ref, why := s.r.refusal(a)
	if ref == nil {
		// A routed recipient is not traced: -bt shows its route.
		return filters.Verdict{}
	}
	action := filters.Reject
	if ref.Code/100 == 4 {
		action = filters.Tempfail
	}
	return filters.Verdict{
		Action: action, Code: ref.Code, Enhanced: ref.Enhanced, Text: ref.Text,
		Log: ref.Log, ReasonCode: "unroutable",
		Trace: []string{"RCPT <" + rcpt + ">: " + ref.Log + ": " + why},
	}
}

// Refusal is why mail for a cannot be taken now, nil when it can: Exim's
// "Unrouteable address" with 550 5.1.2 (RFC 3463: bad destination system
// address) when no route takes it or its Maildir store has no Maildir for
// it, and 451 4.3.0 when that store cannot tell now (its users file
// cannot be read). Log says why, as the rejectlog and -bt word it. The
// RCPT check and local submission refuse with it, so a client and a local
// program hear the same words.
func (r *Router) Refusal(a address.Address) *address.Refusal {
	ref, _ := r.refusal(a)
	return ref
}

// refusal is Refusal with the -bh trace's explanation.
func (r *Router) refusal(a address.Address) (*address.Refusal, string) {
	d := r.routeDomain(a.Domain)
	switch d.Kind {
	case Unroutable:
		return &address.Refusal{Code: 550, Enhanced: [3]int{5, 1, 2}, Text: unrouteable, Log: unrouteable},
			a.Domain + ` is not a relay domain, no [[route]] names it, and outbound.mode is "none"`
	case Store:
		if _, err := maildirOf(d.store, a.String()); err != nil {
			return maildirRefusal(err), "store " + d.Router + " has no Maildir for it"
		}
	}
	return nil, ""
}

// maildirOf is the Maildir a Maildir store delivers rcpt into, as its
// transport decides when it delivers; "" for a store of another kind.
func maildirOf(s *StoreRoute, rcpt string) (string, error) {
	md, ok := s.Transport.(*deliver.Maildir)
	if !ok {
		return "", nil
	}
	return md.Dir(rcpt)
}

// maildirRefusal is the refusal of an error of (*deliver.Maildir).Dir:
// temporary (the users file cannot be read) or for good (no user for the
// domain, a part unsafe as a path). Log, which names no path but may name
// the users file, goes to the rejectlog and -bt only.
func maildirRefusal(err error) *address.Refusal {
	if deliver.DirTemporary(err) {
		return &address.Refusal{Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "Temporary local problem - please try later",
			Log: "Could not complete recipient verify: " + err.Error()}
	}
	return &address.Refusal{Code: 550, Enhanced: [3]int{5, 1, 2}, Text: unrouteable, Log: fmt.Sprintf("%s (%v)", unrouteable, err)}
}
