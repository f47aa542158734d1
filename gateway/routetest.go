package gateway

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"mxgate/address"
	"mxgate/config"
	"mxgate/deliver"
	"mxgate/dnsclient"
)

// Exit statuses of RouteTest, Exim's for -bt.
const (
	RouteOK            = 0 // every address routable
	RouteDeferred      = 1 // an address malformed, or its route not known now
	RouteUndeliverable = 2 // an address that would be refused
)

// RouteTest writes, for each address, how mxgate would route it, in the
// shape of Exim's -bt, and returns the exit status: the worst of all the
// addresses. Nothing is sent; a downstream given by host name is looked up
// in /etc/hosts, then in the DNS, as the dial of a delivery finds it. An
// address is routed as mail from outside relay.trusted_networks: it must
// be for a relay domain.
//
//	user@example.test
//	  router = downstream, transport = smtp
//	  host 127.0.0.1 [127.0.0.1] port=2600
func RouteTest(ctx context.Context, cfg *config.Config, w io.Writer, addrs []string) (int, error) {
	tr, err := deliver.New(deliver.Target(cfg.Downstream.Target), deliver.Options{})
	if err != nil {
		return 0, err
	}
	policy := address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks)
	// What a client in the trusted networks would be refused, everybody
	// is: the address is malformed or a trick. What only policy refuses
	// is a relay refusal.
	trusting := address.NewPolicy(nil, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})
	anyHost := netip.IPv4Unspecified()

	status := RouteOK
	for _, addr := range addrs {
		a, ref := policy.Recipient(netip.Addr{}, addr)
		if ref != nil {
			why := ref.Log
			st := RouteUndeliverable
			a, _ := address.Parse(addr)
			switch _, tref := trusting.Recipient(anyHost, addr); {
			case ref.Code == 501:
				st = RouteDeferred
			case tref == nil:
				why += " (not in relay.domains; only clients in relay.trusted_networks may relay)"
			case a.IsLiteral():
				why += " (address literals are never relayed)"
			}
			fmt.Fprintf(w, "%s is undeliverable: %s\n", addr, why)
			status = max(status, st)
			continue
		}
		route, err := describeRoute(ctx, cfg, tr.Name(), a.String())
		if err != nil {
			fmt.Fprintf(w, "%s cannot be resolved at this time: %v\n", a, err)
			status = max(status, RouteDeferred)
			continue
		}
		fmt.Fprintf(w, "%s\n  router = downstream, transport = %s\n%s", a, tr.Name(), route)
	}
	return status, nil
}

// describeRoute is the lines after the router line: the hosts of a TCP
// downstream, each of its addresses with the port, or the socket or
// Maildir rcpt would land in.
func describeRoute(ctx context.Context, cfg *config.Config, transport string, rcpt string) (string, error) {
	t := cfg.Downstream.Target
	switch t.Scheme {
	case "lmtp+unix":
		return fmt.Sprintf("  socket %s\n", t.Path), nil
	case "maildir":
		dir, err := deliver.MaildirDir(t.Path, rcpt)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("  maildir %s\n", dir), nil
	}
	host := t.Host
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = append(ips, ip)
	} else {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Downstream.ConnectTimeout))
		defer cancel()
		if ips, err = lookupHost(ctx, cfg, host); err != nil {
			return "", fmt.Errorf("looking up %s host %s: %w", transport, host, err)
		}
	}
	var b []byte
	for _, ip := range ips {
		b = fmt.Appendf(b, "  host %s [%s] port=%d\n", host, ip.Unmap(), t.Port)
	}
	return string(b), nil
}

// lookupHost resolves a downstream host name with the program's DNS
// client: /etc/hosts first (so smtp://localhost:2600 is found when the
// resolvers do not answer for localhost), then the resolvers of the first
// of [rbl], [callout] and [msgauth] that has any (config fills each from
// /etc/resolv.conf when the file names none).
func lookupHost(ctx context.Context, cfg *config.Config, host string) ([]netip.Addr, error) {
	var servers []string
	for _, list := range [][]string{cfg.RBL.Resolver, cfg.Callout.Resolver, cfg.MsgAuth.Resolver} {
		if len(list) > 0 {
			servers = list
			break
		}
	}
	c, err := dnsclient.New(servers, time.Duration(cfg.Downstream.ConnectTimeout))
	if err != nil {
		return nil, err
	}
	return c.LookupIP(ctx, host)
}
