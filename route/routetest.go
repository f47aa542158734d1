package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

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

// Test writes, for each address, how the daemon routes it, in the shape
// of Exim's -bt, and returns the exit status: the worst of all the
// addresses. Nothing is sent. A store's or the smarthost's host name is
// looked up as a delivery's dial finds it (the hosts file, then the
// resolvers); a foreign domain's MX hosts are the MX transport's own plan
// (deliver.Planner), the one it delivers by; what the RCPT check refuses
// (Refusal) is undeliverable, or cannot be resolved at this time.
//
//	user@example.test
//	  router = downstream, transport = lmtp
//	  host 127.0.0.1 [127.0.0.1] port=24
//	  verify = callout
func (r *Router) Test(ctx context.Context, w io.Writer, addrs []string) int {
	status := TestOK
	for _, addr := range addrs {
		a, ref := address.Everyone.Recipient(netip.IPv4Unspecified(), addr)
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
	if ref, why := r.refusal(a); ref != nil {
		if ref.Code/100 == 4 {
			return fmt.Sprintf("%s cannot be resolved at this time: %s\n", rcpt, ref.Log), TestDeferred
		}
		if d.Kind == Unroutable {
			return fmt.Sprintf("%s is undeliverable: %s (%s)\n", rcpt, ref.Log, why), TestUndeliverable
		}
		return fmt.Sprintf("%s is undeliverable: %s\n", rcpt, ref.Log), TestUndeliverable
	}
	switch d.Kind {
	case Store:
		more, err := r.storeLines(ctx, d.store, rcpt)
		if err != nil {
			return fmt.Sprintf("%s cannot be resolved at this time: %v\n", rcpt, err), TestDeferred
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
		// refusal has asked the store already: Dir has an answer.
		dir, err := maildirOf(s, rcpt)
		if err != nil {
			return nil, err
		}
		lines = append(lines, "  maildir "+dir)
	default:
		hosts, err := r.hostLines(ctx, t.Host, t.Port)
		if err != nil {
			return nil, fmt.Errorf("looking up %s host %s: %w", t.Scheme, t.Host, err)
		}
		lines = append(lines, hosts...)
	}
	return append(lines, "  verify = "+s.Verify), nil
}

// hostLines are "  host NAME [IP] port=N" for each address of host, found
// as a delivery's dial finds them: the hosts file, then the resolvers.
func (r *Router) hostLines(ctx context.Context, host string, port int) ([]string, error) {
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		c, err := dnsclient.New(r.o.Resolvers, r.o.DNSTimeout)
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
		lines[i] = fmt.Sprintf("  host %s [%s] port=%d", host, ip.Unmap(), port)
	}
	return lines, nil
}

// outboundLines are the smarthost's hosts, or the plan the MX transport
// would deliver by. The error is the rest of the line saying why the
// address cannot go, with the exit status that goes with it.
func (r *Router) outboundLines(ctx context.Context, domain string) ([]string, int, error) {
	if r.o.Outbound.Mode == "smarthost" {
		t := r.o.Outbound.Smarthost
		hosts, err := r.hostLines(ctx, t.Host, t.Port)
		if err != nil {
			return nil, TestDeferred, fmt.Errorf("cannot be resolved at this time: looking up smarthost %s: %w", t.Host, err)
		}
		return hosts, TestOK, nil
	}
	mx, ok := r.o.Outbound.Transport.(deliver.Planner)
	if !ok {
		return nil, TestDeferred, errors.New("cannot be resolved at this time: the outbound transport cannot show its MX hosts")
	}
	plan, err := mx.Plan(ctx, domain)
	var pe *deliver.PlanError
	switch {
	case errors.As(err, &pe) && pe.Status == deliver.Failed:
		return nil, TestUndeliverable, fmt.Errorf("is undeliverable: %s (%s)", unrouteable, pe.Text)
	case err != nil:
		return nil, TestDeferred, fmt.Errorf("cannot be resolved at this time: %w", err)
	}
	return planLines(plan)
}

// planLines are -bt's lines of an MX plan: each host as the transport
// would try it, or why it would skip it.
func planLines(p *deliver.MXPlan) ([]string, int, error) {
	lines := []string{"  MX lookup for " + p.Domain}
	if p.Implicit {
		lines = append(lines, "  no MX records: the domain's own address (implicit MX)")
	}
	switch {
	case p.STSErr != nil:
		lines = append(lines, fmt.Sprintf("  MTA-STS: %v: delivering without MTA-STS", p.STSErr))
	case p.STS != "":
		lines = append(lines, "  MTA-STS policy: "+p.STS)
	}
	usable := false
	for _, h := range p.Hosts {
		mx := ""
		if !p.Implicit {
			mx = fmt.Sprintf(" MX=%d", h.Pref)
		}
		switch {
		case h.Unlisted && p.STS == "enforce":
			lines = append(lines, fmt.Sprintf("  host %s%s skipped: not in the MTA-STS policy", h.Name, mx))
			continue
		case h.Unlisted:
			lines = append(lines, fmt.Sprintf("  host %s%s: not in the MTA-STS policy (testing: delivered to anyway)", h.Name, mx))
		}
		if h.Err != nil {
			lines = append(lines, fmt.Sprintf("  host %s%s skipped: %s", h.Name, mx, strings.TrimPrefix(h.Err.Error(), h.Name+": ")))
			continue
		}
		usable = true
		for _, ip := range h.Addrs {
			lines = append(lines, fmt.Sprintf("  host %s [%s]%s port=%d", h.Name, ip, mx, p.Port))
		}
	}
	if !usable {
		return nil, TestDeferred, fmt.Errorf("cannot be resolved at this time: no MX host of %s has a usable address\n%s", p.Domain, strings.Join(lines, "\n"))
	}
	return lines, TestOK, nil
}
