package gateway

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/config"
	"mxgate/filters"
	"mxgate/filters/clamd"
	"mxgate/filters/msgauth"
	"mxgate/filters/spamd"
	"mxgate/spool"
)

// Content scanning ([spamd], [clamd]) runs at the end of DATA on the
// message as the spool holds it, body on disk and not yet committed, so
// the verdict decides the reply to DATA: a refusal is a 550 or 451 and the
// message never existed; a quarantined message goes to the quarantine
// area; an accepted one is stamped and committed. Filters run in parallel
// (filters.Chain), so a message waits for the slowest scanner, not their
// sum.

// A scanner that fails this many messages in a row is not called for
// breakerCoolDown, after which one message probes it: a dead spamd then
// costs each message nothing but the on_error policy, instead of a
// connect timeout each.
const (
	breakerAfter    = 5
	breakerCoolDown = 30 * time.Second
)

// spamPrefix is the name prefix of the headers spamd's verdict is read
// from downstream; the client's own are removed, so no sender can vouch
// for itself.
const spamPrefix = "x-spam-"

// newFilters builds the chain of the configured scanners, spamd first
// (so X-Spam-* come before X-Virus-Scanned); nil when none is. The
// connect timeouts stay the clients' own, shorter than the per-message
// timeout, so a second address is still tried when the first is dead.
func newFilters(cfg *config.Config, log logger) *filters.Chain {
	var entries []filters.Entry
	if a := cfg.MsgAuth; a.Enabled {
		// First, so Authentication-Results sits right under our Received.
		// It fails only when the spool cannot be read: no breaker.
		entries = append(entries, filters.Entry{
			Filter: msgauth.New(msgauth.Options{
				AuthservID: cfg.Hostname, Resolvers: a.Resolver, Timeout: time.Duration(a.Timeout),
				SPFFailReject: a.SPFFail == "reject", DMARCReject: a.DMARCReject == "honour",
			}),
			Timeout: time.Duration(a.Timeout), OnError: filters.OnErrorTempfail,
		})
	}
	if s := cfg.Spamd; s.Enabled() {
		entries = append(entries, filters.Entry{
			Filter: spamd.New(spamd.Options{
				Addresses:       s.Address,
				User:            s.User,
				MaxSize:         int64(s.MaxSize),
				TagScore:        optional(s.TagScore),
				QuarantineScore: optional(s.QuarantineScore),
				RejectScore:     s.RejectScore,
				Report:          s.Report,
			}),
			Timeout: time.Duration(s.Timeout), OnError: s.OnError,
			BreakAfter: breakerAfter, CoolDown: breakerCoolDown,
		})
	}
	if c := cfg.Clamd; c.Enabled() {
		entries = append(entries, filters.Entry{
			Filter:  clamd.New(clamd.Options{Addresses: c.Address, OnVirus: c.OnVirus, StampClean: c.StampClean}),
			Timeout: time.Duration(c.Timeout), OnError: c.OnError,
			BreakAfter: breakerAfter, CoolDown: breakerCoolDown,
		})
	}
	if len(entries) == 0 {
		return nil
	}
	return filters.NewChain(entries, func(text string) { log.Main("", text) })
}

// optional is an unset score as spamd.Options spells it: 0.
func optional(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}

// removeSpamHeaders marks every X-Spam-* header deleted, as Exim does, so
// the -H file still shows what the client sent.
func (s *Server) removeSpamHeaders(headers []spool.Header) {
	for i, h := range headers {
		name, _, _ := strings.Cut(h.Text, ":")
		if h.Type != '*' && strings.HasPrefix(strings.ToLower(name), spamPrefix) {
			headers[i].Type = '*'
			s.trace.printf("DATA: %s header from the client removed", strings.TrimRight(name, " \t"))
		}
	}
}

// scanned is a message on its way through the filters: what the session
// knows of it, and how its body is read and dropped.
type scanned struct {
	tx       transaction
	env      *spool.Envelope // headers: our Received first
	bodySize int64
	openBody func() (io.ReadCloser, error)
	w        *spool.Writer // nil in a test session
	abort    func()
	milter   filters.Verdict // the milters' verdict (milter.go), combined with the filters'
}

// filter runs the content filters on m and acts on their verdict. It
// returns nil when the message is to be committed as usual, its verdict
// headers stamped into m.env after our Received; otherwise the reply to
// DATA, with the message refused, dropped or quarantined.
func (s *session) filter(m scanned) error {
	srv := s.srv
	msg := &filters.Message{
		ID:         m.env.ID,
		Sender:     m.tx.sender,
		Recipients: m.tx.rcpts,
		ClientIP:   s.conn.ip,
		Helo:       m.tx.helo,
		Headers:    m.env.Headers,
		Size:       m.env.HeaderSize() + 1 + m.bodySize,
		OpenBody:   m.openBody,
	}
	id := string(m.env.ID)
	host := s.hostDesc(m.tx.helo)
	var v filters.Verdict
	if srv.filters != nil {
		res := srv.filters.Run(s.conn.ctx, msg)
		v = res.Verdict
		srv.traceScan(res)
		srv.log.Main(id, fmt.Sprintf("H=%s F=<%s> content scan: %s: %s", host, m.tx.sender, v.Action, scanFacts(res)))
	}
	if m.milter.Action > v.Action { // the strictest wins; the filters' stamps stay
		hs := v.Headers
		v = m.milter
		v.Headers = hs
	}

	switch v.Action {
	case filters.Reject, filters.Tempfail:
		m.abort()
		what := "rejected"
		if v.Action == filters.Tempfail {
			what = "temporarily rejected"
		}
		srv.log.Reject(id, fmt.Sprintf("H=%s F=<%s> %s after DATA: %s", host, m.tx.sender, what, v.Text))
		return s.refuse(m.tx.helo, v.Code, v.Enhanced, v.Text)
	case filters.Discard:
		m.abort()
		if srv.trace != nil {
			return acceptedReply(m.env.ID, " (discarded; not queued: -bh test session)")
		}
		// Exim's log of a message its DATA ACL discarded: received, and
		// "delivered" nowhere.
		srv.log.Main(id, "<= "+senderText(m.tx.sender)+" "+s.arrival(m.tx, m.env.HeaderSize()+1+m.bodySize, m.env.Headers))
		srv.log.Main(id, "=> blackhole (DATA ACL discarded recipients): "+discardText(v))
		srv.log.Main(id, "Completed")
		return acceptedReply(m.env.ID, "")
	}

	stamp(m.env, v.Headers)
	if v.Action != filters.Quarantine {
		return nil
	}
	size := m.env.HeaderSize() + 1 + m.bodySize
	if srv.trace != nil {
		return acceptedReply(m.env.ID, " (quarantined; not queued: -bh test session)")
	}
	m.env.Received = time.Now()
	ctx, cancel := context.WithTimeout(srv.ctx, time.Duration(srv.cfg.SMTP.CommandTimeout))
	err := srv.spool.Quarantine(ctx, m.w, m.env, v.Reason)
	cancel()
	if err != nil { // the files are gone: the client must retry
		srv.log.Panic(fmt.Sprintf("%s H=%s F=<%s>: quarantine commit failed, message not kept: %v", id, host, m.tx.sender, err))
		return errLocal
	}
	srv.log.Main(id, fmt.Sprintf("quarantined: %s %s: %s", senderText(m.tx.sender), s.arrival(m.tx, size, m.env.Headers), v.Reason))
	return acceptedReply(m.env.ID, "")
}

// stamp inserts the verdict headers right after our Received, so they sit
// with the trace header of the hop that vouches for them.
func stamp(env *spool.Envelope, hs []spool.Header) {
	if len(hs) == 0 {
		return
	}
	env.Headers = slices.Insert(env.Headers, min(1, len(env.Headers)), hs...)
}

func acceptedReply(id spool.ID, note string) error {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK id=" + string(id) + note}
}

func senderText(sender string) string {
	if sender == "" {
		return "<>"
	}
	return sender
}

func discardText(v filters.Verdict) string {
	if v.Reason != "" {
		return v.Reason
	}
	return v.Text
}

// scanFacts is the per-filter part of the mainlog line: each filter's
// facts (which name the filter), or why it failed, with its action and
// the time it took: "spamd score=12.1 required=5.0 (accept, 130ms)".
func scanFacts(res filters.Result) string {
	parts := make([]string, len(res.PerFilter))
	for i, fr := range res.PerFilter {
		facts := fr.Verdict.Log
		switch {
		case fr.Err != nil:
			facts = fr.Name + " failed: " + fr.Err.Error()
		case facts == "":
			facts = fr.Name
		}
		parts[i] = fmt.Sprintf("%s (%s, %dms)", facts, fr.Verdict.Action, fr.Duration.Milliseconds())
	}
	return strings.Join(parts, "; ")
}

// traceScan writes every filter's verdict to a test session's trace.
func (s *Server) traceScan(res filters.Result) {
	if s.trace == nil {
		return
	}
	for _, fr := range res.PerFilter {
		switch {
		case fr.Err != nil:
			s.trace.printf("content scan: %s failed: %v: %s", fr.Name, fr.Err, fr.Verdict.Action)
		case fr.Verdict.Log != "":
			s.trace.printf("content scan: %s: %s", fr.Verdict.Log, fr.Verdict.Action)
		default:
			s.trace.printf("content scan: %s: %s", fr.Name, fr.Verdict.Action)
		}
	}
	v := res.Verdict
	switch v.Action {
	case filters.Reject, filters.Tempfail:
		s.trace.printf("content scan: verdict %s: %d %d.%d.%d %s", v.Action, v.Code, v.Enhanced[0], v.Enhanced[1], v.Enhanced[2], v.Text)
	case filters.Quarantine, filters.Discard:
		s.trace.printf("content scan: verdict %s: %s", v.Action, discardText(v))
	default:
		s.trace.printf("content scan: verdict %s", v.Action)
	}
	if v.Action == filters.Accept || v.Action == filters.Quarantine {
		for _, h := range v.Headers {
			s.trace.printf("content scan: stamped %s", strings.TrimSuffix(h.Text, "\n"))
		}
	}
}

// traceBody keeps a test session's message body, so its content filters
// scan it as they would a spooled one. The file is unlinked at once: it
// never outlives the session.
type traceBody struct {
	f *os.File
	n int64
}

// newTraceBody returns nil when no filter would read the body.
func (s *Server) newTraceBody() (*traceBody, error) {
	if s.filters == nil {
		return nil, nil
	}
	f, err := os.CreateTemp("", "mxgate-bh-")
	if err != nil {
		return nil, fmt.Errorf("temporary file for the message body: %w", err)
	}
	os.Remove(f.Name())
	return &traceBody{f: f}, nil
}

func (b *traceBody) Write(p []byte) (int, error) {
	n, err := b.f.Write(p)
	b.n += int64(n)
	return n, err
}

func (b *traceBody) open() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(b.f, 0, b.n)), nil
}

func (b *traceBody) Close() error { return b.f.Close() }
