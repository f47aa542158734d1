package gateway

import (
	"fmt"
	"slices"
	"strings"

	"mxgate/config"
	"mxgate/filters"
	"mxgate/filters/msgauth"
	"mxgate/spool"
)

// Sender authentication ([msgauth]) is checked by the msgauth content
// filter (newFilters); what the session does around it is here: removing
// forged Authentication-Results before any filter or milter sees the
// message, and DKIM-signing mail from the trusted networks once its
// headers are final.

// newSigner loads the [[msgauth.dkim_sign]] keys, so a bad key file stops
// the start instead of leaving mail unsigned; nil when nothing is signed.
func newSigner(cfg *config.Config) (*msgauth.Signer, error) {
	a := cfg.MsgAuth
	if !a.Enabled || len(a.DKIMSign) == 0 {
		return nil, nil
	}
	keys := make([]msgauth.SignKey, len(a.DKIMSign))
	for i, k := range a.DKIMSign {
		keys[i] = msgauth.SignKey{Domain: k.Domain, Selector: k.Selector, KeyFile: k.KeyFile}
	}
	s, err := msgauth.NewSigner(keys)
	if err != nil {
		return nil, fmt.Errorf("gateway: msgauth.dkim_sign: %w", err)
	}
	return s, nil
}

// removeForgedAuthres marks deleted every Authentication-Results claiming
// our hostname, which only we may write (RFC 8601 §5). It runs with
// msgauth, whose stamp a forged one would contradict, and with milters,
// which may stamp under our name too.
func (s *Server) removeForgedAuthres(headers []spool.Header) {
	if n := msgauth.RemoveForged(headers, s.cfg.Hostname); n > 0 {
		s.trace.printf("DATA: %d Authentication-Results header(s) claiming %s removed", n, s.cfg.Hostname)
	}
}

// dkimSign puts a DKIM-Signature on top of m's headers when the client is
// in relay.trusted_networks and a key matches its From: domain. It runs
// after the filters and milters, so it signs the headers as committed;
// first in the header, as Exim's signing at delivery puts it. An error
// means the spooled body could not be read.
func (s *session) dkimSign(m scanned) error {
	srv := s.srv
	if srv.signer == nil || !srv.policy.Trusted(s.conn.ip) {
		return nil
	}
	h, ok, err := srv.signer.Sign(&filters.Message{
		ID: m.env.ID, Sender: m.tx.sender, Recipients: m.tx.rcpts, ClientIP: s.conn.ip,
		Helo: m.tx.helo, Headers: m.env.Headers, OpenBody: m.openBody,
	})
	if err != nil {
		return err
	}
	if !ok {
		srv.trace.printf("DKIM: not signed: no key for the From: domain")
		return nil
	}
	m.env.Headers = slices.Insert(m.env.Headers, 0, h)
	srv.log.Main(string(m.env.ID), fmt.Sprintf("DKIM: signed d=%s s=%s", dkimTag(h.Text, "d"), dkimTag(h.Text, "s")))
	return nil
}

// dkimTag is the value of tag in a DKIM-Signature header field.
func dkimTag(field, tag string) string {
	_, value, _ := strings.Cut(field, ":")
	for t := range strings.SplitSeq(value, ";") {
		name, v, ok := strings.Cut(t, "=")
		if ok && strings.TrimSpace(name) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
