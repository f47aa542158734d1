package config

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// resolvConf is where the system's resolvers are read when a section names
// none; the tests point it at a file of their own.
var resolvConf = "/etc/resolv.conf"

// resolvers normalises the resolver list at key in place to "IP:PORT" (a
// bare IP means port 53), so rbl, callout and msgauth take it as given. An
// empty list gets the nameservers of /etc/resolv.conf; inUse says the
// section asks the DNS, and then a list that stays empty is an error.
func (d *decoder) resolvers(key keyPath, list *StringList, inUse bool) {
	for i, a := range *list {
		addr, err := resolverAddr(a)
		if err != nil {
			d.failKey(key, i, "%w", err)
			continue
		}
		(*list)[i] = addr
	}
	if len(*list) > 0 {
		return
	}
	if !d.sysResolversRead {
		d.sysResolvers, d.sysResolversErr = systemResolvers(resolvConf)
		d.sysResolversRead = true
	}
	switch {
	case len(d.sysResolvers) > 0:
		*list = append(StringList(nil), d.sysResolvers...)
	case !inUse:
		// Nothing asks the DNS: an unknown system resolver harms nobody.
	case d.sysResolversErr != nil:
		d.failKey(key, -1, "is not set and the system's resolvers are unknown (%v); set %s", d.sysResolversErr, key)
	default:
		d.failKey(key, -1, "is not set and %s names no nameserver; set %s", resolvConf, key)
	}
}

// resolverAddr reads a resolver as "IP:PORT", or a bare IP for port 53,
// and returns it as "IP:PORT". A name would need a resolver of its own.
func resolverAddr(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fmt.Errorf(`invalid resolver %q (want IP:PORT such as "127.0.0.1:53" or "[::1]:53"; a bare IP means port 53)`, s)
}

// systemResolvers are the nameservers of a resolv.conf, as miekg/dns reads
// it, on its port (53); lines that do not name an IP address are skipped.
func systemResolvers(path string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var list []string
	for _, server := range conf.Servers {
		if a, err := netip.ParseAddr(server); err == nil {
			list = append(list, net.JoinHostPort(a.String(), conf.Port))
		}
	}
	return list, nil
}
