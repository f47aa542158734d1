package callout

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"mxgate/dnsclient"
)

// maxMailHosts bounds the MX hosts one probe tries: Deadline bounds the
// time, this the work a hostile zone can ask for.
const maxMailHosts = 10

// mailHost is one MX target.
type mailHost struct {
	name string // lower case, no trailing dot
	pref uint16
}

// target is one address to connect to.
type target struct {
	host string
	ip   netip.Addr
}

func (t target) String() string { return fmt.Sprintf("%s [%s]", t.host, t.ip) }

// interpretMX reads an MX answer: the hosts in preference order (ties by
// name, so the order is stable), or nullMX when the domain publishes only
// "0 ." (RFC 7505), or nx for NXDOMAIN. Targets that are not host names
// are skipped. It sees bytes off the network: it never panics.
func interpretMX(r *dns.Msg) (hosts []mailHost, nullMX, nx bool) {
	if r.Rcode == dns.RcodeNameError {
		return nil, false, true
	}
	nulls := 0
	seen := make(map[string]bool)
	for _, rr := range r.Answer {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		if mx.Mx == "." {
			nulls++
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if _, ok := dns.IsDomainName(name); !ok || name == "" || strings.ContainsAny(name, " \\\"()[]<>;") || seen[name] {
			continue
		}
		seen[name] = true
		hosts = append(hosts, mailHost{name: name, pref: mx.Preference})
	}
	if len(hosts) == 0 && nulls > 0 {
		return nil, true, false
	}
	sort.Slice(hosts, func(i, j int) bool {
		if hosts[i].pref != hosts[j].pref {
			return hosts[i].pref < hosts[j].pref
		}
		return hosts[i].name < hosts[j].name
	})
	if len(hosts) > maxMailHosts {
		hosts = hosts[:maxMailHosts]
	}
	return hosts, false, false
}

// interpretAddrs reads the A or AAAA records of an answer, leaving out
// addresses nobody can be probed at.
func interpretAddrs(r *dns.Msg, qtype uint16) []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.Answer {
		ip := dnsclient.RRAddr(rr)
		if rr.Header().Rrtype != qtype || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// errNoDomain and errNoMail end a callout with Reject from DNS alone.
var (
	errNoDomain = errors.New("no such domain")
	errNullMX   = errors.New("domain accepts no mail (null MX)")
	errNoMail   = errors.New("no mail servers")
)

// targets resolves domain to the addresses to probe, in order. A
// returned error wrapping errNoDomain, errNullMX or errNoMail is a
// definite answer; any other is a DNS failure (unknown).
func (c *Checker) targets(ctx context.Context, domain string) ([]target, error) {
	fqdn := dns.Fqdn(domain)
	r, err := c.dns.Exchange(ctx, fqdn, dns.TypeMX, dnsclient.Answerable(fqdn, dns.TypeMX))
	if err != nil {
		return nil, fmt.Errorf("DNS MX lookup for %s: %w", domain, err)
	}
	hosts, nullMX, nx := interpretMX(r)
	switch {
	case nx:
		return nil, fmt.Errorf("%w: %s", errNoDomain, domain)
	case nullMX:
		return nil, errNullMX
	case len(hosts) == 0:
		// No MX: the domain itself is the mail host (RFC 5321 §5.1).
		ips, err := c.addrs(ctx, domain)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("%w: %s has no MX and no address", errNoMail, domain)
		}
		out := make([]target, len(ips))
		for i, ip := range ips {
			out[i] = target{host: domain, ip: ip}
		}
		return out, nil
	}
	var out []target
	var dnsErr error
	for _, h := range hosts {
		ips, err := c.addrs(ctx, h.name)
		if err != nil {
			dnsErr = err
			continue
		}
		for _, ip := range ips {
			out = append(out, target{host: h.name, ip: ip})
		}
	}
	if len(out) == 0 {
		if dnsErr != nil {
			return nil, dnsErr
		}
		return nil, fmt.Errorf("%w: the MX hosts of %s have no address", errNoMail, domain)
	}
	return out, nil
}

// addrs returns name's IPv4 then IPv6 addresses (IPv4 first: a host whose
// IPv6 route is broken would cost a connect timeout per probe).
func (c *Checker) addrs(ctx context.Context, name string) ([]netip.Addr, error) {
	fqdn := dns.Fqdn(name)
	var out []netip.Addr
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := c.dns.Exchange(ctx, fqdn, qtype, dnsclient.Answerable(fqdn, qtype))
		if err != nil {
			return nil, fmt.Errorf("DNS %s lookup for %s: %w", dns.TypeToString[qtype], name, err)
		}
		if r.Rcode == dns.RcodeNameError {
			return nil, nil
		}
		out = append(out, interpretAddrs(r, qtype)...)
	}
	return out, nil
}
