package miltersrv

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-milter"

	"mxgate/event"
	"mxgate/filters"
	"mxgate/gateway"
	"mxgate/spool"
)

// Body is the end of the message: the DATA stage runs on the spooled
// copy and its verdict becomes the reply, or the message's
// modifications.
func (s *session) Body(m *milter.Modifier) (milter.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.resetTx()
	if r := s.cannot(true); r != nil {
		return r, nil
	}
	if id := m.Macros["i"]; id != "" {
		s.id = spool.ID(id)
	}
	if s.id == "" {
		s.id = s.srv.ids.Next()
	}
	tx, id, host := s.tx, string(s.id), s.host()
	if s.body == nil { // a message without a body
		b, err := newBodyFile(s.srv.tmpDir)
		if err != nil {
			s.srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: %v", id, host, tx.Sender, err))
			return reply(filters.LocalProblem()), nil
		}
		s.body = b
	}
	if err := s.body.flush(); err != nil {
		s.srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: %v", id, host, tx.Sender, err))
		return reply(filters.LocalProblem()), nil
	}
	// The MTA never shows a milter its own Received line (the client's
	// address and HELO, which spamd scores): a stand-in in gateway
	// mode's form goes on top, as the gateway's own line does there.
	recv := s.received(tx)
	msg := &filters.Message{
		ID:          s.id,
		Sender:      tx.Sender,
		Recipients:  slices.Clone(tx.Rcpts),
		ClientIP:    s.fconn.IP,
		Helo:        tx.Helo,
		Trusted:     s.gen.policy.Trusted(s.fconn.IP),
		AuthUser:    tx.AuthUser,
		Headers:     append([]spool.Header{recv}, s.headers...),
		BodySize:    s.body.n,
		OpenBody:    s.body.open,
		ReplaceBody: s.body.replace,
	}
	out := s.flow.Data(s.ctx, msg)
	s.report(out, id)
	if es := gateway.ScanEvents(out); len(es) > 0 {
		s.srv.log.Main(id, fmt.Sprintf("H=%s F=<%s> content scan: %s: %s", host, tx.Sender, filters.Strictest(es).Action, gateway.ScanFacts(es)))
	}
	size := spool.HeaderSize(msg.Headers) + 1 + msg.BodySize
	arrival := sender(tx.Sender) + " " + gateway.Arrival(host, s.port, "milter", "", tx.AuthMech, tx.AuthUser, size, msg.Headers)
	v := out.Verdict
	if s.srv.dryRun {
		return s.dryRunEnd(m, out, msg, arrival)
	}
	switch v.Action {
	case filters.Reject, filters.Tempfail:
		s.srv.log.Reject(id, fmt.Sprintf("H=%s F=<%s> %s", host, tx.Sender, gateway.RefusalLog(filters.Verdict{Action: v.Action, Log: v.Text}, "after DATA")))
		if s.srv.bus.Enabled() {
			e := s.base(event.Refused)
			e.Stage, e.ID, e.Helo, e.AuthUser, e.Sender, e.Recipients = "data", id, tx.Helo, tx.AuthUser, tx.Sender, tx.Rcpts
			gateway.FillRefusal(&e, out)
			s.emit(e)
		}
		return reply(v), nil
	case filters.Discard:
		// Exim's log of a message its DATA ACL discarded.
		s.srv.log.Main(id, "<= "+arrival)
		s.srv.log.Main(id, "=> blackhole (DATA ACL discarded recipients): "+gateway.DiscardText(v))
		s.srv.log.Main(id, "Completed")
		s.emitMessage(event.Discarded, out, msg, size)
		return milter.RespDiscard, nil
	}
	if err := s.modify(m, tx, msg, recv); err != nil {
		return nil, fmt.Errorf("miltersrv: %s: sending modifications: %w", id, err)
	}
	if v.Action == filters.Quarantine {
		if err := m.Quarantine(v.Reason); err != nil {
			return nil, fmt.Errorf("miltersrv: %s: quarantine: %w", id, err)
		}
		s.srv.log.Main(id, fmt.Sprintf("quarantined: %s: %s", arrival, v.Reason))
		s.emitMessage(event.Quarantined, out, msg, size)
		return accept, nil
	}
	for _, w := range gateway.Warnings(out) {
		s.srv.log.Main(id, fmt.Sprintf("H=%s Warning: %s", host, w))
	}
	s.srv.log.Main(id, "<= "+arrival)
	s.emitMessage(event.Accepted, out, msg, size)
	if hold := gateway.HoldOf(out); hold != "" {
		// The MTA's hold queue is the milter's quarantine: the message
		// waits there until released (postsuper -H).
		info := "rate limit hold " + hold
		if err := m.Quarantine(info); err != nil {
			return nil, fmt.Errorf("miltersrv: %s: quarantine: %w", id, err)
		}
		s.srv.log.Main(id, "Frozen ("+info+")")
	}
	return accept, nil
}

// dryRunEnd is the end of a message in a dry run: the verdict is logged
// as it would be and named in an X-mxgate-DryRun field; the message goes
// on unchanged otherwise.
func (s *session) dryRunEnd(m *milter.Modifier, out filters.Outcome, msg *filters.Message, arrival string) (milter.Response, error) {
	v, id := out.Verdict, string(s.id)
	what := v.Action.String()
	switch v.Action {
	case filters.Reject, filters.Tempfail:
		s.wouldRefuse(fmt.Sprintf("H=%s F=<%s>", s.host(), msg.Sender), "after DATA", v)
		what += ": " + strings.ReplaceAll(v.Text, "\n", " ")
	case filters.Discard, filters.Quarantine:
		s.srv.log.Main(id, fmt.Sprintf("H=%s F=<%s> dry run: would %s: %s", s.host(), msg.Sender, v.Action, gateway.DiscardText(v)))
		what += ": " + gateway.DiscardText(v)
	}
	if err := m.AddHeader("X-mxgate-DryRun", " would "+what); err != nil {
		return nil, fmt.Errorf("miltersrv: %s: sending modifications: %w", id, err)
	}
	s.srv.log.Main(id, "<= "+arrival)
	s.emitMessage(event.Accepted, out, msg, spool.HeaderSize(msg.Headers)+1+msg.BodySize)
	return accept, nil
}

// received is the stand-in of the MTA's Received line, from what the
// MTA told: its name (macro j, else our hostname), the client's HELO,
// name and address, the queue ID; the protocol is Exim's ESMTP with S
// for TLS and A for a login (Postfix sends no macro for it).
func (s *session) received(tx *filters.Tx) spool.Header {
	with := "ESMTP"
	if s.tls {
		with += "S"
	}
	if tx.AuthUser != "" {
		with += "A"
	}
	by := s.mtaName
	if by == "" {
		by = s.gen.cfg.Hostname
	}
	return gateway.Received(gateway.ReceivedInfo{
		Helo: tx.Helo, Name: s.fconn.HostName, IP: s.fconn.IP.String(), Hostname: by,
		With: with, ID: s.id, Sender: tx.Sender, Recipients: tx.Rcpts, Time: time.Now(),
	})
}

func sender(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// emitMessage is the Accepted, Quarantined or Discarded event of the
// message.
func (s *session) emitMessage(k event.Kind, out filters.Outcome, msg *filters.Message, size int64) {
	if !s.srv.bus.Enabled() {
		return
	}
	e := s.base(k)
	e.ID, e.Helo, e.AuthUser = string(s.id), s.tx.Helo, s.tx.AuthUser
	e.Sender, e.Recipients, e.Size = msg.Sender, msg.Recipients, size
	gateway.FillMessage(&e, out, msg.Headers)
	e.Source = event.SourceMilter
	s.emit(e)
}

// modify sends what the checks changed: the envelope (a milter check's
// new sender or recipients), the header fields, the body.
func (s *session) modify(m *milter.Modifier, tx *filters.Tx, msg *filters.Message, recv spool.Header) error {
	if msg.Sender != tx.Sender {
		if err := m.ChangeFrom("<" + msg.Sender + ">"); err != nil {
			return err
		}
	}
	for _, r := range tx.Rcpts {
		if !slices.Contains(msg.Recipients, r) {
			if err := m.DeleteRecipient(r); err != nil {
				return err
			}
		}
	}
	for _, r := range msg.Recipients {
		if !slices.Contains(tx.Rcpts, r) {
			if err := m.AddRecipient(r); err != nil {
				return err
			}
		}
	}
	for _, o := range headerOps(recv, s.headers, msg.Headers) {
		var err error
		if o.insert {
			err = m.InsertHeader(o.index, o.name, o.value)
		} else {
			err = m.ChangeHeader(o.index, o.name, o.value)
		}
		if err != nil {
			return err
		}
	}
	if s.body.replaced {
		return s.body.send(m.ReplaceBody)
	}
	return nil
}
