package rcptverify

import (
	"context"
	"fmt"

	"mxgate/address"
	"mxgate/filters"
)

// Check is recipient verification as a check of the pipeline, asked at
// RCPT after the relay policy and the DNS lists and before the sender
// callout, so that an unknown user costs no callout to the sender's MX.
type Check struct{ v *Verifier }

// NewCheck returns the pipeline check of v.
func NewCheck(v *Verifier) *Check { return &Check{v: v} }

func (k *Check) Name() string { return "rcptverify" }

// Waits at RCPT, for the lookup; the other stages are not its.
func (k *Check) Waits(s filters.Stage) bool { return s == filters.StageRcpt }

func (k *Check) Open(context.Context, *filters.Conn) filters.Session { return session{v: k.v} }

type session struct {
	filters.Pass
	v *Verifier
}

// The replies. Neither says more of the store than that there is one:
// the store's own answer goes to the log.
const (
	unknownText = "Recipient address rejected: User unknown"
	deferText   = "Recipient address verification failed: mail store not available"
)

// Rcpt looks rcpt up at the store of its domain; a domain that is not
// a relay domain, or whose store verifies nothing, passes.
func (s session) Rcpt(ctx context.Context, _ *filters.Tx, rcpt string) filters.Verdict {
	a, err := address.ParseWire(rcpt)
	if err != nil {
		return filters.Verdict{} // the relay policy answers for its syntax
	}
	st, ok := s.v.o.Store(a.Domain)
	if !ok {
		return filters.Verdict{}
	}
	if st.Source == SourceNone || st.Source == "" {
		return trace(fmt.Sprintf("recipient verify for <%s>: not done: route %s has verify_recipients = \"none\"", rcpt, st.Name))
	}
	wctx, cancel := context.WithTimeout(ctx, s.v.o.Timeout)
	res := s.v.Lookup(wctx, st, a.Local, a.Domain)
	cancel()

	how := source(st)
	if res.Key != a.Local+"@"+a.Domain {
		how += " as <" + res.Key + ">"
	}
	if res.Cached {
		how += " (cached)"
	}
	head := fmt.Sprintf("recipient verify for <%s>: %s", rcpt, how)
	var v filters.Verdict
	switch res.Verdict {
	case Found:
		v.Trace = []string{fmt.Sprintf("%s: found (%s): accepted", head, res.Detail)}
	case NotFound:
		v.Action, v.Code, v.Enhanced = filters.Reject, 550, [3]int{5, 1, 1}
		v.Text = "<" + rcpt + ">: " + unknownText
		v.ReasonCode = "recipient-unknown"
		if st.Source == SourceCallout {
			// Exim's line for a failed recipient callout.
			v.Log = res.Detail
		} else {
			// Exim's line for a recipient no router takes.
			v.Log = "Unrouteable address (" + res.Detail + ")"
		}
		v.Trace = []string{fmt.Sprintf("%s: not found (%s): rejected", head, res.Detail)}
	default:
		if s.v.o.DeferOK {
			v.Trace = []string{fmt.Sprintf("%s: no answer (%s): accepted (recipient_verify.defer_ok)", head, res.Detail)}
			v.Logs = []filters.LogLine{{Kind: filters.MainLog, Host: true, Text: fmt.Sprintf("recipient verify defer for <%s>: %s; accepted (defer_ok)", rcpt, res.Detail)}}
			break
		}
		v.Action, v.Code, v.Enhanced = filters.Tempfail, 451, [3]int{4, 4, 3}
		v.Text = "<" + rcpt + ">: " + deferText
		v.ReasonCode = "recipient-verify-defer"
		v.Log = "Could not complete recipient verify: " + res.Detail
		v.Trace = []string{fmt.Sprintf("%s: no answer (%s): deferred", head, res.Detail)}
	}
	return v
}

// source names where st looks recipients up, for -bh.
func source(st Store) string {
	switch st.Source {
	case SourceCallout:
		_, addr := st.Target.endpoint()
		return "callout to " + st.Target.Scheme + " " + addr
	case SourceFile:
		return "file " + st.Path
	case SourceDovecot:
		return "dovecot " + st.Path
	}
	return st.Source
}

func trace(line string) filters.Verdict { return filters.Verdict{Trace: []string{line}} }
