package gateway

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"mxgate/address"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/filters/milter"
)

// Milters ([[milter]]) are called at every SMTP stage, as Postfix calls
// them: HELO and MAIL at MAIL (go-smtp has no HELO hook), RCPT after the
// gateway's own recipient checks (relay policy, DNS lists, callout), so a
// milter never sees a recipient the gateway refused, and the message at
// the end of DATA, from the spooled copy, before the content filters.
// Running them first means the scanners see the message as it will be
// delivered (a milter's new body, its headers), and their modifications
// are applied to the spool before commit. The two verdicts combine, the
// strictest winning (filters.Action order): the content filters still
// run after a milter's discard, quarantine or tempfail, since one of
// them may refuse the message outright.

// milterDaemon is the {daemon_name} macro milters see.
const milterDaemon = "mxgate"

// newMilters builds the milter host of the config; nil without [[milter]].
func newMilters(cfg *config.Config, log logger) (*milter.Host, error) {
	if len(cfg.Milters) == 0 {
		return nil, nil
	}
	opts := make([]milter.Options, len(cfg.Milters))
	for i, m := range cfg.Milters {
		opts[i] = milter.Options{
			Address: m.Address, Name: m.Name, OnError: m.OnError,
			ConnectTimeout: time.Duration(m.ConnectTimeout),
			CommandTimeout: time.Duration(m.CommandTimeout),
			EOMTimeout:     time.Duration(m.EOMTimeout),
		}
	}
	h, err := milter.NewHost(opts, func(text string) { log.Main("", text) })
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return h, nil
}

// milterSession opens the connection's milter session at its first MAIL
// and sends HELO; later calls return the same session. It returns nil
// without milters.
func (s *session) milterSession(helo string) *milter.Session {
	if s.srv.milters == nil {
		return nil
	}
	if s.milter == nil {
		s.milter = s.srv.milters.NewSession(s.conn.ctx, milter.ConnInfo{
			Hostname: s.srv.cfg.Hostname, DaemonName: milterDaemon,
			ClientIP: s.conn.ip, ClientPort: s.conn.port, Helo: helo,
		})
		d := s.milter.Helo(s.conn.ctx, helo)
		s.srv.traceMilter("HELO "+helo, d)
		if refuses(d) {
			// A refusal of the connection holds for every later command.
			s.milterRefusal = &d
		}
	}
	return s.milter
}

func refuses(d milter.Decision) bool {
	return d.Action == milter.Reject || d.Action == milter.Tempfail
}

// milterMail asks the milters about MAIL; a non-nil error is the reply
// refusing it. A discard at MAIL or RCPT is the milter package's to
// remember: Data answers it.
func (s *session) milterMail(tx *transaction, from string) error {
	ms := s.milterSession(tx.helo)
	if ms == nil {
		return nil
	}
	d := s.milterRefusal
	if d == nil {
		md := ms.Mail(s.conn.ctx, tx.sender, "")
		s.srv.traceMilter("MAIL <"+from+">", md)
		d = &md
	}
	if !refuses(*d) {
		return nil
	}
	ms.Abort(s.conn.ctx)
	s.srv.log.Reject("", fmt.Sprintf("H=%s rejected MAIL <%s>: milter %s: %s", s.hostDesc(tx.helo), from, d.Milter, d.Reply()))
	return s.refuse(tx.helo, d.Code, d.Enhanced, d.Text)
}

// milterRcpt asks the milters about one recipient the gateway accepted;
// a non-nil error is the reply refusing that recipient.
func (s *session) milterRcpt(tx *transaction, rcpt string) error {
	if s.milter == nil {
		return nil
	}
	if d := s.milterRefusal; d != nil {
		return s.refuse(tx.helo, d.Code, d.Enhanced, d.Text)
	}
	d := s.milter.Rcpt(s.conn.ctx, rcpt)
	s.srv.traceMilter("RCPT <"+rcpt+">", d)
	if !refuses(d) {
		return nil
	}
	s.srv.log.Reject("", fmt.Sprintf("H=%s F=<%s> rejected RCPT <%s>: milter %s: %s", s.hostDesc(tx.helo), tx.sender, rcpt, d.Milter, d.Reply()))
	return s.refuse(tx.helo, d.Code, d.Enhanced, d.Text)
}

// milterReset ends the milters' transaction on RSET and after DATA; the
// milter session aborts only milters still inside a message.
func (s *session) milterReset() {
	if s.milter != nil {
		s.milter.Abort(s.conn.ctx)
	}
}

func (s *session) milterClose() {
	if s.milter != nil {
		s.milter.Close()
	}
}

// milterData runs the milters' end of message on the spooled message m
// and applies their modifications to m.env, m.tx and the body. It
// returns their verdict as the content filters spell it (Accept when
// they had no objection).
func (s *session) milterData(m *scanned) filters.Verdict {
	srv := s.srv
	id := string(m.env.ID)
	msg := &filters.Message{OpenBody: m.openBody}
	body, err := msg.Open(false)
	if err != nil {
		srv.log.Panic(fmt.Sprintf("%s: reading the spooled body for the milters: %v", id, err))
		return filters.Verdict{Action: filters.Tempfail, Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "Local problem: message not queued"}
	}
	d, mods := s.milter.Data(s.conn.ctx, id, m.env.Headers, body)
	body.Close()
	srv.traceMilter("end of message", d)
	switch d.Action {
	case milter.Reject, milter.Tempfail, milter.Discard:
		return verdictOf(d)
	}
	changes, err := s.applyMilterMods(m, mods)
	if len(changes) > 0 {
		srv.log.Main(id, "milter changed the message: "+strings.Join(changes, "; "))
	}
	if err != nil {
		srv.log.Panic(fmt.Sprintf("%s: applying the milters' modifications: %v", id, err))
		return filters.Verdict{Action: filters.Tempfail, Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "Local problem: message not queued"}
	}
	if len(m.env.Recipients) == 0 {
		return filters.Verdict{Action: filters.Discard, Reason: "milters removed every recipient", Log: "milter " + d.Milter}
	}
	return verdictOf(d)
}

// verdictOf is a milter decision as a content filter verdict.
func verdictOf(d milter.Decision) filters.Verdict {
	v := filters.Verdict{Code: d.Code, Enhanced: d.Enhanced, Text: d.Text, Reason: d.Reason,
		Log: "milter " + d.Milter}
	switch d.Action {
	case milter.Reject:
		v.Action = filters.Reject
	case milter.Tempfail:
		v.Action = filters.Tempfail
	case milter.Discard:
		v.Action = filters.Discard
		if v.Reason == "" {
			v.Reason = "discarded by milter " + d.Milter
		}
	case milter.Quarantine:
		v.Action = filters.Quarantine
		v.Reason = fmt.Sprintf("milter %s: %s", d.Milter, d.Reason)
	}
	return v
}

// applyMilterMods applies the milters' end-of-message modifications and
// says what changed, for the mainlog.
func (s *session) applyMilterMods(m *scanned, mods milter.Modifications) ([]string, error) {
	if mods.Empty() {
		return nil, nil
	}
	var changes []string
	if len(mods.AddHeaders) > 0 || len(mods.ChangeHeaders) > 0 {
		m.env.Headers = mods.ApplyHeaders(m.env.Headers)
		for _, h := range mods.AddHeaders {
			name, _, _ := strings.Cut(h.Text, ":")
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
		switch {
		case m.w == nil:
			changes = append(changes, "replaced the body (not applied: -bh test session)")
		default:
			n, err := m.w.ReplaceBody(&lineEnds{r: mods.ReplaceBody})
			if err != nil {
				return changes, fmt.Errorf("replacing the body: %w", err)
			}
			m.bodySize = n
			changes = append(changes, fmt.Sprintf("replaced the body (%d bytes)", n))
		}
	}
	if mods.ChangeFrom != "" {
		if a, err := address.Parse(unbracket(mods.ChangeFrom)); err != nil {
			changes = append(changes, fmt.Sprintf("sender <%s> ignored: %v", mods.ChangeFrom, err))
		} else {
			changes = append(changes, fmt.Sprintf("sender <%s> changed to <%s>", m.tx.sender, a.String()))
			m.tx.sender, m.env.Sender = a.String(), a.String()
		}
	}
	rcpts := m.tx.rcpts
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
	m.tx.rcpts, m.env.Recipients = rcpts, rcpts
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

// traceMilter writes a milter decision to a test session's trace.
func (s *Server) traceMilter(stage string, d milter.Decision) {
	if s.trace == nil {
		return
	}
	switch d.Action {
	case milter.Reject, milter.Tempfail:
		s.trace.printf("milter %s: %s: %s", d.Milter, stage, d.Reply())
	case milter.Continue:
		s.trace.printf("milters: %s: continue", stage)
	default:
		s.trace.printf("milter %s: %s: %s %s", d.Milter, stage, d.Action, d.Reason)
	}
}
