package gateway

import (
	"fmt"
	"strings"

	"mxgate/filters"
	"mxgate/smtptext"
)

// The pipeline's events are the only source of what a session says about
// its checks: the -bh trace, the log lines and the SMTP reply are made
// here, each in one place.

// report writes what the events of one stage want traced and logged. id
// is the message's ID at DATA, "" before; host is the client's H=.
func (srv *Server) report(out filters.Outcome, id, host string) {
	for _, line := range out.Trace {
		srv.trace.printf("%s", line)
	}
	for _, e := range out.Events {
		if e.Scanner {
			continue // traced together by traceScan
		}
		for _, line := range e.Verdict.Trace {
			srv.trace.printf("%s", line)
		}
		for _, l := range e.Verdict.Logs {
			text := l.Text
			if l.Host {
				text = "H=" + host + " " + text
			}
			switch l.Kind {
			case filters.RejectLog:
				srv.log.Reject(id, text)
			case filters.PanicLog:
				if id != "" {
					text = id + " " + text
				}
				srv.log.Panic(text)
			default:
				srv.log.Main(id, text)
			}
		}
	}
}

// refusalLog is the rejectlog line of a command a check refused, Exim's
// "H=... F=<...> rejected RCPT <...>: reason" after the H= and F=.
func refusalLog(v filters.Verdict, what string) string {
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

// scanEvents are the events of the content scanners of a DATA outcome.
func scanEvents(out filters.Outcome) []filters.Event {
	var es []filters.Event
	for _, e := range out.Events {
		if e.Scanner {
			es = append(es, e)
		}
	}
	return es
}

// scanFacts is the per-scanner part of the "content scan" mainlog line:
// each scanner's facts (which name it), or why it failed, with its action
// and the time it took: "spamd score=12.1 required=5.0 (accept, 130ms)".
func scanFacts(es []filters.Event) string {
	parts := make([]string, len(es))
	for i, e := range es {
		facts := e.Verdict.Log
		switch {
		case e.Err != nil:
			facts = e.Check + " failed: " + e.Err.Error()
		case facts == "":
			facts = e.Check
		}
		parts[i] = fmt.Sprintf("%s (%s, %dms)", facts, e.Verdict.Action, e.Duration.Milliseconds())
	}
	return strings.Join(parts, "; ")
}

// traceScan writes every scanner's verdict to a test session's trace.
func (s *Server) traceScan(es []filters.Event) {
	if s.trace == nil || len(es) == 0 {
		return
	}
	for _, e := range es {
		switch {
		case e.Err != nil:
			s.trace.printf("content scan: %s failed: %v: %s", e.Check, e.Err, e.Verdict.Action)
		case e.Verdict.Log != "":
			s.trace.printf("content scan: %s: %s", e.Verdict.Log, e.Verdict.Action)
		default:
			s.trace.printf("content scan: %s: %s", e.Check, e.Verdict.Action)
		}
	}
	v := filters.Strictest(es)
	switch v.Action {
	case filters.Reject, filters.Tempfail:
		s.trace.printf("content scan: verdict %s: %s", v.Action, smtptext.Reply(v.Code, v.Enhanced, v.Text))
	case filters.Quarantine, filters.Discard:
		s.trace.printf("content scan: verdict %s: %s", v.Action, discardText(v))
	default:
		s.trace.printf("content scan: verdict %s", v.Action)
	}
	if v.Action <= filters.Tag || v.Action == filters.Quarantine {
		for _, e := range es {
			for _, h := range e.Verdict.Headers {
				s.trace.printf("content scan: stamped %s", strings.TrimSuffix(h.Text, "\n"))
			}
		}
	}
}

func discardText(v filters.Verdict) string {
	if v.Reason != "" {
		return v.Reason
	}
	return v.Text
}

// warnings are the mainlog Warning lines of an accepted message: the Log
// of every Tag verdict (Exim's "warn" ACL lines).
func warnings(out filters.Outcome) []string {
	var ws []string
	for _, e := range out.Events {
		if e.Verdict.Action == filters.Tag && e.Verdict.Log != "" {
			ws = append(ws, e.Verdict.Log)
		}
	}
	return ws
}
