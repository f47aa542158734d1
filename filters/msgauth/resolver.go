package msgauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// newResolver returns a resolver that sends every query to servers
// ("IP:PORT"), whatever /etc/resolv.conf says, so SPF, DKIM and DMARC use
// the gateway's resolvers. The pure-Go client is forced because only it
// calls Dial, and its errors are *net.DNSError with IsNotFound and
// IsTemporary set, which the spf, dkim and dmarc packages rely on to tell
// "no record" from "try later". Each dial takes the next server in turn,
// so the Go client's retry of a lost query goes to another resolver.
func newResolver(servers []string, timeout time.Duration) rooted {
	if len(servers) == 0 {
		return rooted{&net.Resolver{PreferGo: true}}
	}
	var next atomic.Uint32
	d := net.Dialer{Timeout: timeout}
	return rooted{&net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			server := servers[int(next.Add(1)-1)%len(servers)]
			c, err := d.DialContext(ctx, network, server)
			if err != nil {
				return nil, fmt.Errorf("resolver %s: %w", server, err)
			}
			return c, nil
		},
	}}
}

// rooted asks every name as a fully qualified one: the names SPF, DKIM and
// DMARC look up are complete, and the Go client would otherwise also try
// them under the search domains of /etc/resolv.conf after an NXDOMAIN.
type rooted struct{ *net.Resolver }

func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func (r rooted) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.Resolver.LookupTXT(ctx, fqdn(name))
}

func (r rooted) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.Resolver.LookupMX(ctx, fqdn(name))
}

func (r rooted) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return r.Resolver.LookupIPAddr(ctx, fqdn(host))
}

// lookupTXT adapts r to the context-free LookupTXT of the dkim and dmarc
// packages, bound to the context of one message's check.
func lookupTXT(ctx context.Context, r rooted) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txt, err := r.LookupTXT(ctx, name)
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			// The error text lands in the Authentication-Results reason:
			// without the dot we added, and without the server, which is
			// resolv.conf's and not the one our Dial reached.
			e := *dnsErr
			e.Name, e.Server = strings.TrimSuffix(e.Name, "."), ""
			return txt, &e
		}
		return txt, err
	}
}
