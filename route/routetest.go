package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"mxgate/address"
	"mxgate/deliver"
	"mxgate/dnsclient"
)

// Exit statuses of Test, Exim's for -bt.
const (
	TestOK            = 0 // every address routable
	TestDeferred      = 1 // an address malformed, or its route not known now
	TestUndeliverable = 2 // an address that would be refused or bounced
)

// everyone is a policy that trusts every client: what it refuses, no
// client may send to (an address trick, a literal).
var everyone = address.NewPolicy(nil, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})

// Test writes, for each address, how the daemon routes it, in the shape
// of Exim's -bt, and returns the exit status: the worst of all the
// addresses. Nothing is sent; host names are looked up (the hosts file,
// then the resolvers) as a delivery's dial finds them.
//
//	user@example.test
//	  router = downstream, transport = lmtp
//	  host 127.0.0.1 [127.0.0.1] port=24
//	  verify = callout
func (r *Router) Test(ctx context.Context, w io.Writer, addrs []string) int {
	status := TestOK
	for _, addr := range addrs {
		a, ref := everyone.Recipient(netip.IPv4Unspecified(), addr)
		if ref != nil {
			why, st := ref.Log, TestUndeliverable
			if ref.Code == 501 {
				st = TestDeferred
			} else if pa, err := address.Parse(addr); err == nil && pa.IsLiteral() {
				why += " (address literals are never relayed)"
			}
			fmt.Fprintf(w, "%s is undeliverable: %s\n", addr, why)
			status = max(status, st)
			continue
		}
		text, st := r.describe(ctx, a)
		io.WriteString(w, text)
		status = max(status, st)
	}
	return status
}

// describe is the -bt text of one acceptable address.
func (r *Router) describe(ctx context.Context, a address.Address) (string, int) {
	rcpt := a.String()
	d := r.routeDomain(a.Domain)
	var lines []string
	switch d.Kind {
	case Unroutable:
		return fmt.Sprintf("%s is undeliverable: %s (%s is not a relay domain, no [[route]] names it, and outbound.mode is \"none\")\n", rcpt, unrouteable, a.Domain), TestUndeliverable
	case Store:
		more, err := r.storeLines(ctx, d.store, rcpt)
		if err != nil {
			if deliver.DirTemporary(err) {
				return fmt.Sprintf("%s cannot be resolved at this time: %v\n", rcpt, err), TestDeferred
			}
			return fmt.Sprintf("%s is undeliverable: %v\n", rcpt, err), TestUndeliverable
		}
		lines = more
	case Outbound:
		more, st, err := r.outboundLines(ctx, a.Domain)
		if err != nil {
			return fmt.Sprintf("%s %v\n", rcpt, err), st
		}
		lines = more
	}
	if !r.isRelay(a.Domain) {
		lines = append(lines, "  not a relay domain: only clients in relay.trusted_networks, local programs (sendmail) and mxgate's own bounces may send to it")
	}
	return fmt.Sprintf("%s\n  router = %s, transport = %s\n%s\n", rcpt, d.Router, transportName(d), strings.Join(lines, "\n")), TestOK
}

// transportName is a destination's T=.
func transportName(d Destination) string {
	if d.Transport == nil {
		return "none"
	}
	return d.Transport.Name()
}

// storeLines are a store's lines after the router line: its hosts, socket
// or Maildir, and the verification source.
func (r *Router) storeLines(ctx context.Context, s *StoreRoute, rcpt string) ([]string, error) {
	var lines []string
	t := s.Target
	switch t.Scheme {
	case "lmtp+unix":
		lines = append(lines, "  socket "+t.Path)
	case "maildir":
		md, ok := s.Transport.(interface{ Dir(string) (string, error) })
		if !ok {
			return nil, fmt.Errorf("maildir store %s has no Maildir transport", s.Name)
		}
		dir, err := md.Dir(rcpt)
		if err != nil {
			return nil, err
		}
		lines = append(lines, "  maildir "+dir)
	default:
		hosts, err := r.hostLines(ctx, t.Host, t.Port, "")
		if err != nil {
			return nil, fmt.Errorf("looking up %s host %s: %w", t.Scheme, t.Host, err)
		}
		lines = append(lines, hosts...)
	}
	return append(lines, "  verify = "+s.Verify), nil
}

// hostLines are "  host NAME [IP] port=N" for each address of host; mx is
// " MX=N" for an MX host.
func (r *Router) hostLines(ctx context.Context, host string, port int, mx string) ([]string, error) {
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		c, err := r.dns()
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, r.o.DNSTimeout)
		defer cancel()
		if ips, err = c.LookupIP(ctx, host); err != nil {
			return nil, err
		}
	}
	lines := make([]string, len(ips))
	for i, ip := range ips {
		lines[i] = fmt.Sprintf("  host %s [%s]%s port=%d", host, ip.Unmap(), mx, port)
	}
	return lines, nil
}

func (r *Router) dns() (*dnsclient.Client, error) {
	return dnsclient.New(r.o.Resolvers, r.o.DNSTimeout)
}

// outboundLines are the smarthost's hosts, or the domain's MX hosts. The
// error is the rest of the line saying why the address cannot go, with
// the exit status that goes with it.
func (r *Router) outboundLines(ctx context.Context, domain string) ([]string, int, error) {
	if r.o.Outbound.Mode == "smarthost" {
		t := r.o.Outbound.Smarthost
		hosts, err := r.hostLines(ctx, t.Host, t.Port, "")
		if err != nil {
			return nil, TestDeferred, fmt.Errorf("cannot be resolved at this time: looking up smarthost %s: %w", t.Host, err)
		}
		return hosts, TestOK, nil
	}
	lines := []string{"  MX lookup for " + domain}
	mxs, err := r.lookupMX(ctx, domain)
	switch {
	case errors.Is(err, errNoDomain):
		return nil, TestUndeliverable, fmt.Errorf("is undeliverable: %s (%s does not exist)", unrouteable, domain)
	case err != nil:
		return nil, TestDeferred, fmt.Errorf("cannot be resolved at this time: MX lookup for %s: %w", domain, err)
	case len(mxs) == 1 && mxs[0].Mx == ".":
		return nil, TestUndeliverable, fmt.Errorf("is undeliverable: %s (%s has a null MX: it accepts no mail)", unrouteable, domain)
	case len(mxs) == 0:
		// RFC 5321 5.1: no MX, the domain itself is the host.
		lines = append(lines, "  no MX records: the domain's own address (implicit MX)")
		hosts, err := r.hostLines(ctx, domain, r.o.MXPort, "")
		if err != nil {
			return nil, TestDeferred, fmt.Errorf("cannot be resolved at this time: looking up %s: %w", domain, err)
		}
		return append(lines, hosts...), TestOK, nil
	}
	for _, mx := range mxs {
		host := strings.TrimSuffix(mx.Mx, ".")
		hosts, err := r.hostLines(ctx, host, r.o.MXPort, fmt.Sprintf(" MX=%d", mx.Preference))
		if err != nil {
			lines = append(lines, fmt.Sprintf("  host %s MX=%d: address lookup failed: %v", host, mx.Preference, err))
			continue
		}
		lines = append(lines, hosts...)
	}
	return lines, TestOK, nil
}

// errNoDomain is an MX lookup answered NXDOMAIN.
var errNoDomain = errors.New("no such domain")

// lookupMX is domain's MX records in preference order.
func (r *Router) lookupMX(ctx context.Context, domain string) ([]*dns.MX, error) {
	c, err := r.dns()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.DNSTimeout)
	defer cancel()
	name := dns.Fqdn(domain)
	m, err := c.Exchange(ctx, name, dns.TypeMX, dnsclient.Answerable(name, dns.TypeMX))
	if err != nil {
		return nil, err
	}
	if m.Rcode == dns.RcodeNameError {
		return nil, errNoDomain
	}
	var mxs []*dns.MX
	for _, rr := range m.Answer {
		if mx, ok := rr.(*dns.MX); ok && strings.EqualFold(mx.Hdr.Name, name) {
			mxs = append(mxs, mx)
		}
	}
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	return mxs, nil
}
