package gateway

import (
	"mxgate/event"
	"mxgate/filters"
)

// Reporter is how a server that runs the pipeline for another MTA (the
// policy and milter servers) says what a stage decided exactly as a
// gateway session does: the same mainlog, rejectlog and paniclog lines,
// the same Check and Refused events. The gateway's own sessions use it
// too, so there is one place that turns an Outcome into lines and events.
type Reporter struct {
	Log Logger
	Bus *event.Bus // nil emits nothing
}

// Logger is where a Reporter writes: *mainlog.Logger.
type Logger interface {
	Main(id, text string)
	Reject(id, text string, extra ...string)
	Panic(text string)
}

// Stage writes the lines the events of one stage's outcome want logged
// and emits one Check event per answer. id is the message's ID ("" when
// there is none yet), host the client's H=; base is the connection's
// part of every event (Conn, Txn, Client, HostName, Listener). trace, when
// not nil, gets the verdicts' -bh trace lines in order.
func (r Reporter) Stage(out filters.Outcome, id, host string, base event.Event, trace func(string)) {
	if r.Bus.Enabled() {
		for _, fe := range out.Events {
			e := base
			e.Kind, e.ID = event.Check, id
			v := fe.Verdict
			e.Check, e.Stage, e.Action, e.ReasonCode = fe.Check, stageNames[fe.Stage], v.Action.String(), v.ReasonCode
			e.Score, e.Scored, e.Virus, e.List = v.Score, v.Scored, v.Virus, v.List
			e.Reason, e.Err, e.Duration = v.Log, fe.Err, fe.Duration
			r.Bus.Emit(e)
		}
	}
	for _, e := range out.Events {
		if e.Scanner {
			continue // traced together by traceScan
		}
		if trace != nil {
			for _, line := range e.Verdict.Trace {
				trace(line)
			}
		}
		for _, l := range e.Verdict.Logs {
			text := l.Text
			if l.Host {
				text = "H=" + host + " " + text
			}
			switch l.Kind {
			case filters.RejectLog:
				r.Log.Reject(id, text)
			case filters.PanicLog:
				if id != "" {
					text = id + " " + text
				}
				r.Log.Panic(text)
			default:
				r.Log.Main(id, text)
			}
		}
	}
}

// Refused emits the Refused event of a stage whose checks refused: base
// with the Kind, the reply of out's verdict and which check refused and
// why. The caller sets base's Stage, Sender, Recipient, Helo, AuthUser.
func (r Reporter) Refused(out filters.Outcome, base event.Event) {
	if !r.Bus.Enabled() {
		return
	}
	v := out.Verdict
	base.Kind = event.Refused
	base.Code, base.Enhanced, base.Text = v.Code, enhanced(v.Enhanced), v.Text
	why := checkRefusal(out)
	base.Check, base.ReasonCode, base.List, base.Reason = why.check, why.reasonCode, why.list, why.reason
	r.Bus.Emit(base)
}

// RefusalLog is the rejectlog line of a command a check refused, Exim's
// "H=... F=<...> rejected RCPT <...>: reason" after the H= and F=: what
// is the command ("RCPT <a@example.org>").
func RefusalLog(v filters.Verdict, what string) string {
	verb := "rejected"
	if v.Action == filters.Tempfail {
		verb = "temporarily rejected"
	}
	why := v.Log
	if why == "" {
		why = v.Text
	}
	return verb + " " + what + ": " + why
}
