package rbl

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
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
	_, err := exchangeFrom(ctx, c.servers, c.udp, c.tcp, name, qtype, func(r *dns.Msg) error {
		var err error
		a, err = c.interpret(r, name, qtype)
		return err
	})
	return a, err
}

// exchangeFrom asks servers in order until one gives an answer to
// name/qtype that check accepts. A dead resolver gets only its share of the
// time left, so the next one is still asked before ctx ends.
func exchangeFrom(ctx context.Context, servers []string, udp, tcp *dns.Client, name string, qtype uint16, check func(*dns.Msg) error) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	// A large EDNS buffer keeps long TXT reasons out of TCP.
	m.SetEdns0(1232, false)
	var errs error
	for i, server := range servers {
		tryCtx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := ctx.Deadline(); ok {
			share := time.Until(deadline) / time.Duration(len(servers)-i)
			tryCtx, cancel = context.WithTimeout(ctx, share)
		}
		r, err := exchangeOne(tryCtx, udp, tcp, m, server)
		cancel()
		if err == nil {
			if err = check(r); err == nil {
				return r, nil
			}
		}
		err = fmt.Errorf("resolver %s: %w", server, err)
		if errs != nil {
			// One line for the log, every resolver's failure kept for errors.Is.
			err = fmt.Errorf("%w; %w", errs, err)
		}
		errs = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errs
}

// exchangeOne sends m over UDP, and again over TCP when the UDP answer was
// truncated.
func exchangeOne(ctx context.Context, udp, tcp *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	r, _, err := udp.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		r, _, err = tcp.ExchangeContext(ctx, m, server)
	}
	return r, err
}

// maxText bounds a TXT reason: it ends up in an SMTP reply line.
const maxText = 400

// interpret turns a DNS answer to name/qtype into what is cached. It reads
// bytes from the network: whatever r holds, it returns an answer or an
// error, never panics.
func (c *Checker) interpret(r *dns.Msg, name string, qtype uint16) (answer, error) {
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return answer{}, fmt.Errorf("answer code %s", rcodeString(r.Rcode))
	}
	// An answer to another question (a spoofed or confused reply) must not
	// be cached under this name.
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name) || r.Question[0].Qtype != qtype {
		return answer{}, fmt.Errorf("answer is for another question than %s %s", name, dns.TypeToString[qtype])
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

func rcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}

// cleanText makes a TXT reason safe for an SMTP reply and a log line:
// printable ASCII only (miekg/dns already writes other bytes as \DDD),
// bounded in length.
func cleanText(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > maxText {
		b = append(b[:maxText-3], "..."...)
	}
	return string(b)
}
