package gateway

import (
	"mxgate/event"
	"mxgate/filters"
)

// Reporter is how a server that runs the pipeline for another MTA (the
// policy server) says what a stage decided exactly as a gateway session
// does: the same mainlog, rejectlog and paniclog lines (LogOutcome), the
// same Check and Refused events (EmitChecks, FillRefusal).
type Reporter struct {
	Log Logger
	Bus *event.Bus // nil emits nothing
}

// Stage writes the lines the events of one stage's outcome want logged
// and emits one Check event per answer. id is the message's ID ("" when
// there is none yet), host the client's H=; base is the connection's
// part of every event (Conn, Txn, Client, HostName, Listener).
func (r Reporter) Stage(out filters.Outcome, id, host string, base event.Event) {
	EmitChecks(r.Bus, out, base, id)
	LogOutcome(r.Log, out, id, host)
}

// Refused emits the Refused event of a stage whose checks refused: base
// with the Kind, the reply of out's verdict and which check refused and
// why. The caller sets base's Stage, Sender, Recipient, Helo, AuthUser.
func (r Reporter) Refused(out filters.Outcome, base event.Event) {
	if !r.Bus.Enabled() {
		return
	}
	base.Kind = event.Refused
	FillRefusal(&base, out)
	r.Bus.Emit(base)
}
