package milter

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"mxgate/address"
	"mxgate/filters"
	"mxgate/filters/msgauth"
)

// The milters as one check of the pipeline, called at every SMTP stage as
// Postfix calls them: HELO and MAIL at the first MAIL (go-smtp has no HELO
// hook), RCPT after the checks before it (relay policy, DNS lists,
// callout), so a milter never sees a recipient the gateway refused, and
// the message at the end of DATA, before the scanners: they then scan the
// message as it will be delivered (a milter's new body, its headers).

// daemonName is the {daemon_name} macro milters see.
const daemonName = "mxgate"

// Check is the milters' check.
type Check struct {
	h        *Host
	hostname string
}

// NewCheck returns the check of the milters of h; hostname is the macro j
// and the authserv-id whose Authentication-Results no client may forge.
func NewCheck(h *Host, hostname string) *Check { return &Check{h: h, hostname: hostname} }

func (c *Check) Name() string { return "milter" }

// Owns X-Spam-* and Authentication-Results in our name: a client's would
// pass for a milter's verdict.
func (c *Check) Owns(name, value string) bool {
	return strings.HasPrefix(strings.ToLower(name), "x-spam-") || msgauth.Claims(name, value, c.hostname)
}

func (c *Check) Open(_ context.Context, conn *filters.Conn) filters.Session {
	return &checkSession{c: c, conn: conn}
}

type checkSession struct {
	c  *Check
	ms *Session // opened at the first HELO

	// conn is read at the first HELO, not at Open: the client's host
	// name is known from the connect stage on.
	conn *filters.Conn
	// refusal is a refusal of the whole connection at HELO: it holds for
	// every later command.
	refusal *Decision
}

func refuses(d Decision) bool { return d.Action == Reject || d.Action == Tempfail }

func (s *checkSession) Connect(context.Context) filters.Verdict { return filters.Verdict{} }

func (s *checkSession) Helo(ctx context.Context, helo string) filters.Verdict {
	if s.ms == nil {
		c := s.conn
		s.ms = s.c.h.NewSession(ctx, ConnInfo{Hostname: s.c.hostname, DaemonName: daemonName,
			ClientIP: c.IP, ClientPort: c.Port, Helo: helo,
			HostName: c.HostName, HostPTR: c.HostPTR, HostResolve: c.HostResolve})
	}
	d := s.ms.Helo(ctx, helo)
	if refuses(d) {
		s.refusal = &d
	}
	return filters.Verdict{Trace: []string{traceLine("HELO "+helo, d)}}
}

func (s *checkSession) Mail(ctx context.Context, tx *filters.Tx) filters.Verdict {
	if s.ms == nil {
		return filters.Verdict{}
	}
	var v filters.Verdict
	d := s.refusal
	if d == nil {
		md := s.ms.Mail(ctx, tx.Sender, tx.AuthUser, strings.ToUpper(tx.AuthMech))
		v.Trace = []string{traceLine("MAIL <"+tx.Sender+">", md)}
		d = &md
	}
	if !refuses(*d) {
		return v
	}
	s.ms.Abort(ctx)
	return refusal(v, *d)
}

func (s *checkSession) Rcpt(ctx context.Context, _ *filters.Tx, rcpt string) filters.Verdict {
	if s.ms == nil {
		return filters.Verdict{}
	}
	if d := s.refusal; d != nil {
		return refusal(filters.Verdict{}, *d)
	}
	d := s.ms.Rcpt(ctx, rcpt)
	v := filters.Verdict{Trace: []string{traceLine("RCPT <"+rcpt+">", d)}}
	if !refuses(d) {
		return v
	}
	return refusal(v, d)
}

// refusal is a milter's refusal of a command as a verdict.
func refusal(v filters.Verdict, d Decision) filters.Verdict {
	v.Action = filters.Reject
	if d.Action == Tempfail {
		v.Action = filters.Tempfail
	}
	v.Code, v.Enhanced, v.Text = d.Code, d.Enhanced, d.Text
	v.Log = "milter " + d.Milter + ": " + d.Reply()
	v.ReasonCode = "milter"
	return v
}

// Data runs the milters' end of message on m and applies their
// modifications to it.
func (s *checkSession) Data(ctx context.Context, m *filters.Message) filters.Verdict {
	if s.ms == nil {
		return filters.Verdict{}
	}
	id := string(m.ID)
	body, err := m.OpenBody()
	if err != nil {
		v := filters.LocalProblem()
		v.Logs = []filters.LogLine{{Kind: filters.PanicLog, Text: fmt.Sprintf("reading the spooled body for the milters: %v", err)}}
		return v
	}
	// The milters get the body alone, the headers go field by field. The
	// wrapper hides the spool file's Seek: rewinding it would put the -D
	// file's "ID-D" line in front of the body.
	d, mods := s.ms.Data(ctx, id, m.Headers, struct{ io.Reader }{body})
	body.Close()
	trace := []string{traceLine("end of message", d)}
	switch d.Action {
	case Reject, Tempfail, Discard:
		v := verdictOf(d)
		v.Trace = trace
		return v
	}
	changes, err := applyMods(m, mods)
	var logs []filters.LogLine
	if len(changes) > 0 {
		logs = append(logs, filters.LogLine{Text: "milter changed the message: " + strings.Join(changes, "; ")})
	}
	if err != nil {
		v := filters.LocalProblem()
		v.Logs = append(logs, filters.LogLine{Kind: filters.PanicLog, Text: fmt.Sprintf("applying the milters' modifications: %v", err)})
		v.Trace = trace
		return v
	}
	var v filters.Verdict
	if len(m.Recipients) == 0 {
		v = filters.Verdict{Action: filters.Discard, Reason: "milters removed every recipient", Log: "milter " + d.Milter}
	} else {
		v = verdictOf(d)
	}
	v.Logs, v.Trace = logs, trace
	return v
}

func (s *checkSession) Reset(ctx context.Context) {
	if s.ms != nil {
		s.ms.Abort(ctx)
	}
}

func (s *checkSession) Close() {
	if s.ms != nil {
		s.ms.Close()
	}
}

// verdictOf is a milter decision at end of message as a verdict.
func verdictOf(d Decision) filters.Verdict {
	v := filters.Verdict{Code: d.Code, Enhanced: d.Enhanced, Text: d.Text, Reason: d.Reason,
		Log: "milter " + d.Milter, ReasonCode: "milter"}
	switch d.Action {
	case Reject:
		v.Action = filters.Reject
	case Tempfail:
		v.Action = filters.Tempfail
	case Discard:
		v.Action = filters.Discard
		if v.Reason == "" {
			v.Reason = "discarded by milter " + d.Milter
		}
	case Quarantine:
		v.Action = filters.Quarantine
		v.Reason = fmt.Sprintf("milter %s: %s", d.Milter, d.Reason)
	}
	return v
}

// applyMods applies the milters' end-of-message modifications to m and
// says what changed, for the mainlog.
func applyMods(m *filters.Message, mods Modifications) ([]string, error) {
	if mods.Empty() {
		return nil, nil
	}
	var changes []string
	if len(mods.AddHeaders) > 0 || len(mods.ChangeHeaders) > 0 {
		m.Headers = mods.ApplyHeaders(m.Headers)
		for _, h := range mods.AddHeaders {
			name := h.Name()
			changes = append(changes, "added header "+name)
		}
		for _, c := range mods.ChangeHeaders {
			what := "changed"
			if c.Value == "" {
				what = "deleted"
			}
			changes = append(changes, fmt.Sprintf("%s header %s #%d", what, c.Name, c.Index))
		}
	}
	if mods.ReplaceBody != nil {
		if m.ReplaceBody == nil {
			changes = append(changes, "replaced the body (not applied: -bh test session)")
		} else {
			n, err := m.ReplaceBody(mods.ReplaceBody)
			if err != nil {
				return changes, fmt.Errorf("replacing the body: %w", err)
			}
			m.BodySize = n
			changes = append(changes, fmt.Sprintf("replaced the body (%d bytes)", n))
		}
	}
	if mods.ChangeFrom != "" {
		if a, err := address.Parse(unbracket(mods.ChangeFrom)); err != nil {
			changes = append(changes, fmt.Sprintf("sender <%s> ignored: %v", mods.ChangeFrom, err))
		} else {
			changes = append(changes, fmt.Sprintf("sender <%s> changed to <%s>", m.Sender, a.String()))
			m.Sender = a.String()
		}
	}
	rcpts := m.Recipients
	for _, r := range mods.DelRcpts {
		r = unbracket(r)
		a, err := address.Parse(r)
		if err != nil || !slices.Contains(rcpts, a.String()) {
			changes = append(changes, fmt.Sprintf("recipient <%s> to remove not found", r))
			continue
		}
		rcpts = slices.DeleteFunc(rcpts, func(x string) bool { return x == a.String() })
		changes = append(changes, fmt.Sprintf("removed recipient <%s>", a))
	}
	for _, r := range mods.AddRcpts {
		r = unbracket(r)
		a, err := address.Parse(r)
		if err != nil {
			changes = append(changes, fmt.Sprintf("recipient <%s> ignored: %v", r, err))
			continue
		}
		if !slices.Contains(rcpts, a.String()) {
			rcpts = append(rcpts, a.String())
		}
		changes = append(changes, fmt.Sprintf("added recipient <%s>", a))
	}
	m.Recipients = rcpts
	return changes, nil
}

// unbracket strips the angle brackets a milter writes around an address
// (libmilter's smfi_addrcpt passes them through as given).
func unbracket(a string) string {
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		return a[1 : len(a)-1]
	}
	return a
}

// traceLine is a milter decision as a -bh trace line.
func traceLine(stage string, d Decision) string {
	switch d.Action {
	case Reject, Tempfail:
		return fmt.Sprintf("milter %s: %s: %s", d.Milter, stage, d.Reply())
	case Continue:
		return fmt.Sprintf("milters: %s: continue", stage)
	default:
		return fmt.Sprintf("milter %s: %s: %s %s", d.Milter, stage, d.Action, d.Reason)
	}
}
