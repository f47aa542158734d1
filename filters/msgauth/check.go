package msgauth

import (
	"context"
	"fmt"
	"strings"

	"mxgate/filters"
	"mxgate/spool"
)

// Owns the Authentication-Results fields that claim our authserv-id: only
// we may write them (RFC 8601 §5), and a forged one would contradict ours.
func (f *Filter) Owns(name, value string) bool { return Claims(name, value, f.opts.AuthservID) }

// SignCheck is DKIM signing as the pipeline's final check: it signs mail
// from the trusted networks once its headers are final, and puts the
// DKIM-Signature on top, as Exim's signing at delivery does.
type SignCheck struct{ s *Signer }

// NewSignCheck returns the signing check of s.
func NewSignCheck(s *Signer) *SignCheck { return &SignCheck{s: s} }

func (c *SignCheck) Name() string { return "dkim-sign" }

func (c *SignCheck) Open(context.Context, *filters.Conn) filters.Session {
	return signSession{s: c.s}
}

type signSession struct {
	filters.Pass
	s *Signer
}

func (s signSession) Data(_ context.Context, m *filters.Message) filters.Verdict {
	// Signed: mail from trusted networks and authenticated submissions.
	if !m.Trusted && m.AuthUser == "" {
		return filters.Verdict{}
	}
	h, ok, err := s.s.Sign(m)
	if err != nil {
		v := filters.LocalProblem()
		v.Logs = []filters.LogLine{{Kind: filters.PanicLog, Host: true, Text: fmt.Sprintf("F=<%s>: DKIM signing failed, message not queued: %v", m.Sender, err)}}
		return v
	}
	if !ok {
		return filters.Verdict{Trace: []string{"DKIM: not signed: no key for the From: domain"}}
	}
	return filters.Verdict{
		Headers: []spool.Header{h},
		Logs:    []filters.LogLine{{Text: fmt.Sprintf("DKIM: signed d=%s s=%s", dkimTag(h.Text, "d"), dkimTag(h.Text, "s"))}},
	}
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
