package address

import (
	"net/netip"
	"strings"
)

// Refusal is why a recipient is refused: the SMTP reply (Code, Enhanced,
// Text) and the reason as the rejectlog line ends ("... rejected RCPT <x>: Log").
type Refusal struct {
	Code     int
	Enhanced [3]int
	Text     string
	Log      string
}

// Policy decides which recipients a client may use: the relay domains for
// everyone, any domain for trusted networks, and never an address trick.
type Policy struct {
	domains map[string]bool
	trusted []netip.Prefix
}

// NewPolicy builds a policy. Domains are compared lower-cased and without a
// trailing dot, so the config's spelling does not matter.
func NewPolicy(domains []string, trusted []netip.Prefix) *Policy {
	p := &Policy{domains: make(map[string]bool, len(domains))}
	for _, d := range domains {
		p.domains[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	for _, pfx := range trusted {
		p.trusted = append(p.trusted, pfx.Masked())
	}
	return p
}

// Everyone is the policy that trusts every client: what it refuses, no
// client may send to (an address trick, a literal). Local submission and
// the -bt test judge addresses by it.
var Everyone = NewPolicy(nil, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})

// Trusted reports whether ip is in a trusted network. An IPv4-mapped IPv6
// peer is matched as the IPv4 address it is.
func (p *Policy) Trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pfx := range p.trusted {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

var (
	refuseSyntax = Refusal{Code: 501, Enhanced: [3]int{5, 1, 3}, Text: "Bad recipient address syntax", Log: "malformed address"}
	// Exim's default ACL word for word: these local parts made MTAs
	// relay (percent hack, bang paths, "@" from quoted local parts or
	// source routes) or reach pipes and files ("/", "|", leading ".").
	refuseRestricted = Refusal{Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Restricted characters in address", Log: "Restricted characters in address"}
	refuseRelay      = Refusal{Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "relay not permitted", Log: "relay not permitted"}
)

// Recipient checks rcpt, as go-smtp hands it to Session.Rcpt, for a client
// at ip. It returns the parsed address when the recipient is accepted, or
// why not. Address literals are refused even for trusted networks: mxgate
// routes by domain, and a literal is only ever a way around that.
func (p *Policy) Recipient(ip netip.Addr, rcpt string) (Address, *Refusal) {
	a, err := Parse(rcpt)
	if err != nil {
		return Address{}, SyntaxRefusal(err)
	}
	if ref := p.Allow(ip, a); ref != nil {
		return Address{}, ref
	}
	return a, nil
}

// Allow is the relay policy for a parsed recipient a from a client at ip:
// nil, or why not.
func (p *Policy) Allow(ip netip.Addr, a Address) *Refusal {
	if r := AllowAuthenticated(a); r != nil {
		return r
	}
	if p.domains[a.Domain] || p.Trusted(ip) {
		return nil
	}
	r := refuseRelay
	return &r
}

// AllowAuthenticated is the relay policy for a client that authenticated
// (SMTP AUTH): any domain, but never a restricted local part or an
// address literal, which no client may send to.
func AllowAuthenticated(a Address) *Refusal {
	if restrictedLocal(a.Local) {
		r := refuseRestricted
		return &r
	}
	if a.IsLiteral() {
		r := refuseRelay
		return &r
	}
	return nil
}

// SyntaxRefusal is the refusal of a recipient Parse failed on (err).
func SyntaxRefusal(err error) *Refusal {
	r := refuseSyntax
	r.Log += ": " + strings.TrimPrefix(err.Error(), ErrSyntax.Error()+": ")
	return &r
}

// Why says why Recipient accepted a (relay domain or trusted client), for
// the -bh trace.
func (p *Policy) Why(ip netip.Addr, a Address) string {
	if p.domains[a.Domain] {
		return a.Domain + " in relay.domains"
	}
	return "host in relay.trusted_networks"
}

func restrictedLocal(local string) bool {
	return strings.HasPrefix(local, ".") || strings.ContainsAny(local, "%!@/|")
}
