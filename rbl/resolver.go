package rbl

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// Resolver asks recursive resolvers questions the way the Checker does
// (resolvers in order, UDP then TCP on truncation), for other packages
// that need DNS (callout's MX lookups) without a second client.
type Resolver struct {
	servers  []string
	udp, tcp *dns.Client
}

// NewResolver returns a Resolver for list ("127.0.0.1:53" or a bare IP for
// port 53; empty = the nameservers of /etc/resolv.conf). timeout only backs
// up the context deadline given to Exchange.
func NewResolver(list []string, timeout time.Duration) (*Resolver, error) {
	servers, err := resolvers(list)
	if err != nil {
		return nil, err
	}
	return &Resolver{
		servers: servers,
		udp:     &dns.Client{Net: "udp", Timeout: timeout},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
	}, nil
}

// Exchange asks the resolvers in order until one gives an answer to
// name/qtype (a fully qualified name) that check accepts; check sees
// untrusted bytes off the network and decides which answers count (the
// right question, a usable answer code). The error names every resolver
// that failed.
func (r *Resolver) Exchange(ctx context.Context, name string, qtype uint16, check func(*dns.Msg) error) (*dns.Msg, error) {
	return exchangeFrom(ctx, r.servers, r.udp, r.tcp, name, qtype, check)
}
