package msgauth

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mxgate/dnsclient"
	"mxgate/event"
)

// resolver puts the program's DNS client (dnsclient, the configured
// resolvers) behind the interfaces the spf, dkim and dmarc packages take:
// spf.DNSResolver, which is shaped like *net.Resolver, and LookupTXT
// functions. They tell "no record" from "try later" by *net.DNSError's
// IsNotFound and Temporary, so every answer is translated so: NXDOMAIN
// and NODATA are IsNotFound, and any failure to get an answer (SERVFAIL,
// REFUSED, a timeout, no resolver) is IsTemporary, which SPF and DMARC
// report as temperror and DKIM as a temporary failure, never permerror.
// The error text names the question and why it failed, never a resolver's
// address or port: it ends up in Authentication-Results reasons.
type resolver struct {
	client *dnsclient.Client
	err    error // no client: why (every lookup fails temporarily)
}

func newResolver(servers []string, timeout time.Duration, bus *event.Bus) resolver {
	c, err := dnsclient.New(servers, timeout, dnsclient.WithBus(bus))
	return resolver{client: c, err: err}
}

// lookup asks name/qtype and returns the answer records; NXDOMAIN and
// NODATA are a *net.DNSError with IsNotFound.
func (r resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	shown := strings.TrimSuffix(name, ".")
	if r.client == nil {
		return nil, &net.DNSError{Err: "no resolver configured", Name: shown, IsTemporary: true}
	}
	fqdn := dns.Fqdn(name)
	m, err := r.client.Exchange(ctx, fqdn, qtype, dnsclient.Answerable(fqdn, qtype))
	if err != nil {
		e := &net.DNSError{Err: "no answer", Name: shown, IsTemporary: true}
		var de *dnsclient.Error
		if errors.As(err, &de) {
			e.Err, e.IsTimeout = de.Reason(), de.Timeout()
		}
		return nil, e
	}
	var out []dns.RR
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	if m.Rcode == dns.RcodeNameError || len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: shown, IsNotFound: true}
	}
	return out, nil
}

// LookupTXT returns each TXT record's strings joined, as net.LookupTXT.
func (r resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupMX returns the MX records.
func (r resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.lookup(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

// LookupIPAddr returns the A and AAAA records; not found only when there
// are neither.
func (r resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	var notFound error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.lookup(ctx, host, qtype)
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			notFound = err
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: rr.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: rr.AAAA})
			}
		}
	}
	if len(out) == 0 {
		return nil, notFound
	}
	return out, nil
}

// LookupAddr returns the PTR names of addr (an IP address).
func (r resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	name, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	rrs, err := r.lookup(ctx, name, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}

// lookupTXT adapts r to the context-free LookupTXT of the dkim and dmarc
// packages, bound to the context of one message's check.
func lookupTXT(ctx context.Context, r resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
}
