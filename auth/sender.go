package auth

import (
	"context"
	"fmt"
	"net/mail"
	"strings"

	"mxgate/filters"
	"mxgate/spool"
)

// SenderCheck is the sender policy of authenticated mail (auth.sender_policy),
// at MAIL on the envelope sender and at DATA on the From: addresses:
// "login" wants the login itself, "login_domain" its domain, "any"
// anything; owned (auth.sender_map) adds, per lower-cased login, the
// addresses and "@domain"s it may use besides. A login that is not an
// address owns only what the map gives it. The null
// sender is always allowed (bounces, vacation replies). With SetSender,
// a From: other than the login gets "Sender: LOGIN", replacing any
// Sender: the client wrote. Mail without AUTH is not its business.
type SenderCheck struct {
	policy    string
	setSender bool
	owned     map[string][]string
}

// NewSenderCheck is the check for policy ("login", "login_domain", "any")
// and the map owned.
func NewSenderCheck(policy string, setSender bool, owned map[string][]string) *SenderCheck {
	return &SenderCheck{policy: policy, setSender: setSender, owned: owned}
}

func (c *SenderCheck) Name() string { return "sender_policy" }

func (c *SenderCheck) Open(context.Context, *filters.Conn) filters.Session {
	return senderSession{c: c}
}

// Waits: the check only compares strings, so it runs without a timeout
// goroutine.
func (c *SenderCheck) Waits(filters.Stage) bool { return false }

type senderSession struct {
	filters.Pass
	c *SenderCheck
}

// Owns tells whether the authenticated login may use addr under policy,
// or by owned, its entries of the sender map.
func Owns(policy, login, addr string, owned []string) bool {
	if policy == "any" {
		return true
	}
	at := strings.LastIndexByte(addr, '@')
	for _, o := range owned {
		if strings.EqualFold(o, addr) || (o[0] == '@' && at >= 0 && strings.EqualFold(o[1:], addr[at+1:])) {
			return true
		}
	}
	_, ldom, ok := strings.Cut(login, "@")
	if !ok {
		return false
	}
	if policy == "login" {
		return strings.EqualFold(addr, login)
	}
	return at >= 0 && strings.EqualFold(addr[at+1:], ldom)
}

func (s senderSession) Mail(_ context.Context, tx *filters.Tx) filters.Verdict {
	if tx.AuthUser == "" || tx.Sender == "" {
		return filters.Verdict{}
	}
	if Owns(s.c.policy, tx.AuthUser, tx.Sender, s.c.owned[strings.ToLower(tx.AuthUser)]) {
		return filters.Verdict{Trace: []string{fmt.Sprintf("MAIL <%s>: sender allowed for %s by auth.sender_policy %s", tx.Sender, tx.AuthUser, s.c.policy)}}
	}
	return s.refuse("Sender address", tx.Sender, tx.AuthUser)
}

func (s senderSession) refuse(what, addr, login string) filters.Verdict {
	why := fmt.Sprintf("%s <%s> not owned by authenticated user %s", what, addr, login)
	return filters.Verdict{
		Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1}, Text: why,
		Log:        why + " (auth.sender_policy " + s.c.policy + ")",
		ReasonCode: "sender-not-owned",
		Trace:      []string{why + " (auth.sender_policy " + s.c.policy + ")"},
	}
}

func (s senderSession) Data(_ context.Context, m *filters.Message) filters.Verdict {
	if m.AuthUser == "" {
		return filters.Verdict{}
	}
	var from []string
	var senders []int
	for i, h := range m.Headers {
		switch {
		case h.Type == '*':
		case strings.EqualFold(h.Name(), "From"):
			list, err := mail.ParseAddressList(unfold(h.Value()))
			if err != nil {
				return s.refuse("From: address", strings.TrimSpace(unfold(h.Value())), m.AuthUser)
			}
			for _, a := range list {
				from = append(from, a.Address)
			}
		case strings.EqualFold(h.Name(), "Sender"):
			senders = append(senders, i)
		}
	}
	differs := false
	for _, a := range from {
		if !Owns(s.c.policy, m.AuthUser, a, s.c.owned[strings.ToLower(m.AuthUser)]) {
			return s.refuse("From: address", a, m.AuthUser)
		}
		if !strings.EqualFold(a, m.AuthUser) {
			differs = true
		}
	}
	if !differs || !s.c.setSender || !strings.Contains(m.AuthUser, "@") {
		return filters.Verdict{}
	}
	v := filters.Verdict{
		Headers: []spool.Header{{Type: 'S', Text: "Sender: " + m.AuthUser + "\n"}},
		Trace:   []string{fmt.Sprintf("DATA: From: is not %s: Sender: %s set (auth.set_sender_header)", m.AuthUser, m.AuthUser)},
	}
	// Marked deleted at once (a sequential check may change m): an edit
	// by index would miss once the stamp above is inserted.
	for _, i := range senders {
		m.Headers[i].Type = '*'
	}
	return v
}

func unfold(v string) string {
	return strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
}
