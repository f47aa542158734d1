// Package dnsclient owns the program's one DNS client, on miekg/dns, for
// every package that asks DNS questions (rbl, callout, msgauth, -bt, the
// MX transport and its MTA-STS and DANE lookups): it
// asks the configured recursive resolvers in order, each question over UDP
// with a large EDNS buffer and again over TCP when the answer comes back
// truncated, within the caller's context deadline, of which a resolver
// that does not answer gets only its share so the next is still asked. It
// takes its resolvers ready ("host:port", as config normalises them) and
// decides nothing about what an answer means: the caller's check does.
// Lookup reports whether the resolver vouched for an answer (the AD bit),
// which every question asks for. LookupIP alone reads the hosts file
// (/etc/hosts) first, as a dial does; HostsAddrs and HostsNames read it
// for hostlookup, which names clients the DNS has no PTR for from it.
package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mxgate/event"
)

// ednsSize is the EDNS0 buffer size asked for: large enough to keep long
// TXT records (DNSBL reasons, DKIM keys) out of TCP, small enough to avoid
// IP fragmentation (the DNS Flag Day 2020 value).
const ednsSize = 1232

// Client asks the resolvers it was made with. It is safe for concurrent
// use.
type Client struct {
	servers   []string
	udp, tcp  *dns.Client
	hostsFile string     // read by LookupIP first; "" none
	bus       *event.Bus // DNSLookup events; nil: none
}

// New returns a Client asking servers ("IP:PORT" or "[IPv6]:PORT"), in
// order. timeout bounds one exchange with one resolver; it only backs up
// the context deadline given to Exchange, which is what normally ends a
// question.
func New(servers []string, timeout time.Duration, opts ...Option) (*Client, error) {
	if len(servers) == 0 {
		return nil, errors.New("dnsclient: no resolvers")
	}
	c := &Client{
		servers:   append([]string(nil), servers...),
		udp:       &dns.Client{Net: "udp", Timeout: timeout, UDPSize: ednsSize},
		tcp:       &dns.Client{Net: "tcp", Timeout: timeout},
		hostsFile: DefaultHostsFile,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Servers returns the resolvers asked, in order.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

// Exchange asks the resolvers in order until one gives an answer to
// name/qtype (a fully qualified name) that check accepts, and returns it.
// check sees untrusted bytes off the network and decides which answers
// count; nil accepts any (Answerable is the usual check). A resolver that
// fails (no answer, an answer check refuses) costs only its share of the
// time left before ctx's deadline. The error is an *Error naming every
// resolver that failed and why.
func (c *Client) Exchange(ctx context.Context, name string, qtype uint16, check func(*dns.Msg) error) (*dns.Msg, error) {
	if !c.bus.Enabled() {
		return c.exchange(ctx, name, qtype, check)
	}
	start := time.Now()
	r, err := c.exchange(ctx, name, qtype, check)
	c.bus.Emit(event.Event{Kind: event.DNSLookup, QType: TypeString(qtype), Err: err, Duration: time.Since(start)})
	return r, err
}

func (c *Client) exchange(ctx context.Context, name string, qtype uint16, check func(*dns.Msg) error) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	// AD in a query asks a validating resolver to say whether it
	// validated the answer (RFC 6840 5.7); Lookup reports it, DANE needs
	// it. Other resolvers ignore the bit.
	m.AuthenticatedData = true
	m.SetEdns0(ednsSize, false)
	e := &Error{Name: name, Qtype: qtype}
	for i, server := range c.servers {
		tryCtx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok {
			share := time.Until(deadline) / time.Duration(len(c.servers)-i)
			tryCtx, cancel = context.WithTimeout(ctx, share)
		}
		r, err := c.exchangeOne(tryCtx, m, server)
		cancel()
		if err == nil && check != nil {
			err = check(r)
		}
		if err == nil {
			return r, nil
		}
		e.Failures = append(e.Failures, ServerError{Server: server, Err: err})
		if ctx.Err() != nil {
			break
		}
	}
	return nil, e
}

// exchangeOne sends m to server over UDP, and again over TCP when the UDP
// answer was truncated.
func (c *Client) exchangeOne(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, _, err := c.udp.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		r, _, err = c.tcp.ExchangeContext(ctx, m, server)
	}
	return r, err
}

// Error is a question no resolver answered usably.
type Error struct {
	Name     string // the question's name, fully qualified
	Qtype    uint16
	Failures []ServerError // one per resolver asked, in order
}

// ServerError is why one resolver's answer did not count.
type ServerError struct {
	Server string // "IP:PORT"
	Err    error
}

// Error names every resolver and its failure, for logs: "resolver
// 127.0.0.1:53: answer code SERVFAIL; resolver 127.0.0.2:53: i/o timeout".
func (e *Error) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = fmt.Sprintf("resolver %s: %v", f.Server, f.Err)
	}
	return strings.Join(parts, "; ")
}

// Unwrap gives every resolver's failure to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f.Err
	}
	return out
}

// Timeout reports whether every resolver failed by not answering in time.
func (e *Error) Timeout() bool {
	for _, f := range e.Failures {
		if !isTimeout(f.Err) {
			return false
		}
	}
	return len(e.Failures) > 0
}

// Reason says why the question failed without naming any resolver or port,
// for text that leaves the gateway (an Authentication-Results reason): the
// distinct failures in order, e.g. "answer code SERVFAIL, timed out"
// (commas: a semicolon would read as the end of an Authentication-Results
// method).
func (e *Error) Reason() string {
	var parts []string
	for _, f := range e.Failures {
		var s string
		var rc *RcodeError
		switch {
		case errors.As(f.Err, &rc):
			s = rc.Error()
		case isTimeout(f.Err):
			s = "timed out"
		case errors.Is(f.Err, context.Canceled):
			s = "cancelled"
		default:
			var q *QuestionError
			if errors.As(f.Err, &q) {
				s = "answer for another question"
			} else {
				s = "no answer"
			}
		}
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ", ")
}

// Reason is err's Reason when it is an Error, else its text: a DNS
// failure worded without naming the resolvers, for text that may end up
// in a bounce.
func Reason(err error) string {
	var de *Error
	if errors.As(err, &de) {
		return de.Reason()
	}
	return err.Error()
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RcodeError is an answer whose response code is neither NOERROR nor
// NXDOMAIN: the resolver could not or would not answer (SERVFAIL,
// REFUSED, ...).
type RcodeError struct{ Rcode int }

func (e *RcodeError) Error() string { return "answer code " + RcodeString(e.Rcode) }

// QuestionError is an answer to another question than the one asked: a
// confused or spoofed reply, which must not be taken for the answer.
type QuestionError struct {
	Name  string
	Qtype uint16
}

func (e *QuestionError) Error() string {
	return fmt.Sprintf("answer is for another question than %s %s", e.Name, TypeString(e.Qtype))
}

// Answerable is the usual check for Exchange: an answer counts when its
// code is NOERROR or NXDOMAIN and it answers exactly name/qtype. Its
// errors are *RcodeError and *QuestionError.
func Answerable(name string, qtype uint16) func(*dns.Msg) error {
	return func(r *dns.Msg) error {
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			return &RcodeError{Rcode: r.Rcode}
		}
		if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name) || r.Question[0].Qtype != qtype {
			return &QuestionError{Name: name, Qtype: qtype}
		}
		return nil
	}
}

// RcodeString is the mnemonic of a response code, "RCODE<n>" for an
// unknown one.
func RcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}

// TypeString is the mnemonic of a record type, "TYPE<n>" for an unknown
// one.
func TypeString(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", qtype)
}

// Answer is what Lookup found: the records of the asked type.
type Answer struct {
	// Records are the answer's records of the asked type, in the order
	// the resolver gave them (CNAMEs it followed left out).
	Records []dns.RR
	// NXDomain: the name does not exist (Records is empty).
	NXDomain bool
	// Secure: the resolver set the AD bit, vouching that it validated
	// the answer with DNSSEC. Only as good as the path to the resolver:
	// a validating resolver on loopback or a trusted network.
	Secure bool
}

// Lookup asks name/qtype with Exchange and Answerable (never the hosts
// file) and returns the records of that type. NXDOMAIN is an Answer, not
// an error; the error is an *Error, when no resolver answered usably.
// What the records mean is the caller's business.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) (Answer, error) {
	name = dns.Fqdn(name)
	r, err := c.Exchange(ctx, name, qtype, Answerable(name, qtype))
	if err != nil {
		return Answer{}, err
	}
	a := Answer{NXDomain: r.Rcode == dns.RcodeNameError, Secure: r.AuthenticatedData}
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype && rr.Header().Class == dns.ClassINET {
			a.Records = append(a.Records, rr)
		}
	}
	return a, nil
}

// ErrNotFound is a name that does not exist or has no address.
var ErrNotFound = errors.New("no such host")

// LookupIP returns host's IPv4 then IPv6 addresses. A name the hosts file
// (DefaultHostsFile, or WithHostsFile's) lists gets its addresses there
// and the resolvers are not asked, as the system's resolver does with
// "hosts: files dns", so "localhost" and the other names a dial would find
// there are found; any other name gets the addresses the resolvers give
// (CNAMEs followed by the resolver). A name that does not exist or has no
// address is ErrNotFound. -bt uses it for a downstream host name; rbl,
// callout and msgauth ask their DNS questions with Exchange, which never
// reads the hosts file.
func (c *Client) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if ips := lookupHosts(c.hostsFile, host); len(ips) > 0 {
		return ips, nil
	}
	name := dns.Fqdn(host)
	var out []netip.Addr
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := c.Exchange(ctx, name, qtype, Answerable(name, qtype))
		if err != nil {
			return nil, err
		}
		if r.Rcode == dns.RcodeNameError {
			break
		}
		for _, rr := range r.Answer {
			if ip := RRAddr(rr); ip.IsValid() && rr.Header().Rrtype == qtype {
				out = append(out, ip)
			}
		}
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// RRAddr is the address of an A or AAAA record, an IPv4-mapped one
// unmapped; for any other record, or a malformed one, the zero Addr (not
// valid).
func RRAddr(rr dns.RR) netip.Addr {
	var ip netip.Addr
	switch rr := rr.(type) {
	case *dns.A:
		ip, _ = netip.AddrFromSlice(rr.A)
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(rr.AAAA)
	}
	return ip.Unmap()
}
