package milter

import (
	"fmt"
	"io"
	"strings"

	"mxgate/smtptext"
	"mxgate/spool"
)

// Action is what the SMTP side does with a stage.
type Action int

const (
	// Continue: go on; no milter objects.
	Continue Action = iota
	// Accept: the milter accepts; it gets no further events for this
	// message (for the connection, when given at connect or HELO).
	Accept
	// Reject: refuse with a 5xx reply (only this recipient, at RCPT).
	Reject
	// Tempfail: refuse with a 4xx reply (only this recipient, at RCPT).
	Tempfail
	// Discard: accept the message, then drop it silently.
	Discard
	// Quarantine: accept the message into the quarantine (end of message
	// only), with Decision.Reason.
	Quarantine
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Tempfail:
		return "tempfail"
	case Discard:
		return "discard"
	case Quarantine:
		return "quarantine"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the chain's verdict for one stage.
type Decision struct {
	Action   Action
	Code     int    // SMTP reply code for Reject and Tempfail
	Enhanced [3]int // enhanced status code
	Text     string // reply text without codes
	Milter   string // the milter that decided ("" for Continue)
	Reason   string // quarantine reason, or what went wrong on a milter failure
}

// Reply is the SMTP reply line for a Reject or Tempfail decision, e.g.
// "550 5.7.1 Command rejected".
func (d Decision) Reply() string {
	return smtptext.Reply(d.Code, d.Enhanced, d.Text)
}

// Postfix's texts for a milter's plain reject and tempfail.
func rejectDecision(milter string) Decision {
	return Decision{Action: Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Command rejected", Milter: milter}
}

func tempfailDecision(milter string) Decision {
	return Decision{Action: Tempfail, Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "Service unavailable - try again later", Milter: milter}
}

// stops reports whether the decision ends the chain for this stage: later
// milters are not asked after a reject, tempfail or discard.
func (d Decision) stops() bool {
	return d.Action == Reject || d.Action == Tempfail || d.Action == Discard
}

// HeaderChange is one CHGHEADER modification: the Index-th (1-based) header
// named Name, counted as the milter saw the headers, gets Value; an empty
// Value deletes it.
type HeaderChange struct {
	Name  string
	Index int
	Value string
}

// Modifications are the end-of-message edits of every milter in the chain,
// to apply to the spooled message before it is committed.
type Modifications struct {
	AddHeaders    []spool.Header // added or inserted headers, "Name: value\n", LF endings
	InsertAt      []int          // parallel to AddHeaders: -1 append, n insert before header n (0-based, deleted headers not counted)
	ChangeHeaders []HeaderChange
	ReplaceBody   io.Reader // the new body with LF line endings; nil = unchanged
	AddRcpts      []string
	DelRcpts      []string
	ChangeFrom    string // new envelope sender without <>; "" = unchanged

	// ops is every header edit in the order the milters sent them: a later
	// milter's indexes count the headers an earlier one added.
	ops []headerOp
}

type headerOp struct {
	insertAt int // for adds: -1 append, n insert before visible header n
	add      bool
	name     string
	index    int // for changes: 1-based occurrence of name
	value    string
}

// Empty reports whether no milter asked for any modification.
func (m Modifications) Empty() bool {
	return len(m.AddHeaders) == 0 && len(m.ChangeHeaders) == 0 && m.ReplaceBody == nil &&
		len(m.AddRcpts) == 0 && len(m.DelRcpts) == 0 && m.ChangeFrom == ""
}

// ApplyHeaders returns h with the header modifications applied in the order
// the milters sent them. Deleted headers stay in the list marked '*', as in
// Exim's -H file, and are not counted by indexes. h itself is not changed.
func (m Modifications) ApplyHeaders(h []spool.Header) []spool.Header {
	out := append([]spool.Header(nil), h...)
	ops := m.ops
	if ops == nil {
		// Built by hand, not by a Session: changes first, then additions.
		for _, c := range m.ChangeHeaders {
			ops = append(ops, headerOp{name: c.Name, index: c.Index, value: c.Value})
		}
		for i, a := range m.AddHeaders {
			at := -1
			if i < len(m.InsertAt) {
				at = m.InsertAt[i]
			}
			name, value := a.Name(), a.Value()
			ops = append(ops, headerOp{add: true, insertAt: at, name: name, value: value})
		}
	}
	for _, op := range ops {
		out = op.apply(out)
	}
	return out
}

func (op headerOp) apply(h []spool.Header) []spool.Header {
	if op.add {
		nh := newHeader(op.name, op.value)
		if op.insertAt < 0 {
			return append(h, nh)
		}
		pos := len(h)
		seen := 0
		for i, x := range h {
			if x.Type == '*' {
				continue
			}
			if seen == op.insertAt {
				pos = i
				break
			}
			seen++
		}
		return append(h[:pos], append([]spool.Header{nh}, h[pos:]...)...)
	}
	seen := 0
	for i, x := range h {
		if x.Type == '*' {
			continue
		}
		name := x.Name()
		if !strings.EqualFold(name, op.name) {
			continue
		}
		seen++
		if seen != op.index {
			continue
		}
		if op.value == "" {
			h[i].Type = '*'
		} else {
			h[i] = newHeader(name, op.value)
		}
		return h
	}
	// libmilter: an index beyond the headers of that name adds one.
	if op.value != "" {
		h = append(h, newHeader(op.name, op.value))
	}
	return h
}

// newHeader formats a header as the spool keeps it. Milters send folded
// values with LF (go-milter's server turns CRLF into LF); a stray CR is
// dropped so the -H file stays LF-only.
func newHeader(name, value string) spool.Header {
	value = strings.ReplaceAll(value, "\r", "")
	return spool.Header{Type: spool.HeaderType(name), Text: name + ": " + value + "\n"}
}
