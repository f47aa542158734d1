package rbl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"mxgate/dnsclient"
	"mxgate/smtptext"
)

// ipName is the RFC 5782 query name of ip in zone: reversed octets for
// IPv4 (IPv4-mapped IPv6 included), 32 reversed nibbles for IPv6.
func ipName(ip netip.Addr, zone string) string {
	const hex = "0123456789abcdef"
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		b.Grow(16 + len(zone) + 1)
		for i := 3; i >= 0; i-- {
			fmt.Fprintf(&b, "%d.", a[i])
		}
	} else {
		a := ip.As16()
		b.Grow(64 + len(zone) + 1)
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(zone)
	b.WriteByte('.')
	return b.String()
}

// normalizeDomain returns domain as looked up in an RHSBL (lower case, no
// trailing dot), or "" when it cannot be listed: empty, an address literal
// or not a domain name.
func normalizeDomain(domain string) string {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d == "" || strings.HasPrefix(d, "[") || strings.ContainsAny(d, " \\\"()") {
		return ""
	}
	if _, ok := dns.IsDomainName(d); !ok {
		return ""
	}
	return d
}

// exchange asks the resolvers in order until one answers name/qtype with
// an answer interpret accepts.
func (c *Checker) exchange(ctx context.Context, name string, qtype uint16) (answer, error) {
	var a answer
	_, err := c.dns.Exchange(ctx, name, qtype, func(r *dns.Msg) error {
		var err error
		a, err = c.interpret(r, name, qtype)
		return err
	})
	return a, err
}

// maxText bounds a TXT reason: it ends up in an SMTP reply line.
const maxText = 400

// interpret turns a DNS answer to name/qtype into what is cached. It reads
// bytes from the network: whatever r holds, it returns an answer or an
// error, never panics.
func (c *Checker) interpret(r *dns.Msg, name string, qtype uint16) (answer, error) {
	// An answer to another question (a spoofed or confused reply) must not
	// be cached under this name.
	if err := dnsclient.Answerable(name, qtype)(r); err != nil {
		return answer{}, err
	}
	if r.Rcode == dns.RcodeNameError {
		return answer{ttl: c.negativeTTL(r)}, nil
	}
	var a answer
	var texts []string
	minTTL := uint32(0)
	for _, rr := range r.Answer {
		var ttl uint32
		switch rr := rr.(type) {
		case *dns.A:
			if qtype != dns.TypeA {
				continue
			}
			ip, ok := netip.AddrFromSlice(rr.A)
			if !ok {
				continue
			}
			a.addrs = append(a.addrs, ip.Unmap())
			ttl = rr.Hdr.Ttl
		case *dns.TXT:
			if qtype != dns.TypeTXT {
				continue
			}
			texts = append(texts, strings.Join(rr.Txt, ""))
			ttl = rr.Hdr.Ttl
		default:
			continue
		}
		if minTTL == 0 || ttl < minTTL {
			minTTL = ttl
		}
	}
	if len(a.addrs) == 0 && len(texts) == 0 {
		// NODATA: negative like NXDOMAIN (RFC 2308).
		a.ttl = c.negativeTTL(r)
		return a, nil
	}
	a.text = cleanText(strings.Join(texts, "; "))
	a.ttl = c.clampTTL(time.Duration(minTTL) * time.Second)
	return a, nil
}

// negativeTTL is how long a "not listed" answer is cached: the SOA's
// minimum (capped by the SOA's own TTL, RFC 2308), clamped.
func (c *Checker) negativeTTL(r *dns.Msg) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return c.clampTTL(time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second)
		}
	}
	return c.minTTL
}

func (c *Checker) clampTTL(d time.Duration) time.Duration {
	return min(max(d, c.minTTL), c.maxTTL)
}

// cleanText makes a TXT reason safe for an SMTP reply and a log line:
// printable ASCII only (miekg/dns already writes other bytes as \DDD),
// bounded in length.
func cleanText(s string) string { return smtptext.CleanMax(s, maxText) }
