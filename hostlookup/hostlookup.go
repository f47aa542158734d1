// Package hostlookup finds a client's host name as Exim's host_lookup
// does: the PTR names of its address (from the hosts file when the DNS
// has none, as Exim's "byaddr"), each confirmed by a forward lookup that
// yields the address back. A name that does not confirm is never used.
// It asks through package dnsclient, bounds every lookup by one timeout,
// caches the outcome per address for the answers' TTLs and runs one
// lookup at a time per address, however many sessions wait for it.
package hostlookup

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"mxgate/dnsclient"
	"mxgate/event"
)

// Status is what the lookup found, in the words of Sendmail's and
// Postfix's {client_resolve} milter macro.
type Status int

const (
	Fail   Status = iota // no PTR name at all
	OK                   // a PTR name confirmed
	Forged               // PTR names, none of which confirmed
	Temp                 // a lookup failed (timeout, SERVFAIL): no name this time
)

// String is the {client_resolve} value: OK, FAIL, FORGED or TEMP.
func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Forged:
		return "FORGED"
	case Temp:
		return "TEMP"
	}
	return "FAIL"
}

// Result is the host name of one address.
type Result struct {
	Status Status
	// Name is the first PTR name that confirmed: Exim's
	// $sender_host_name, lower case without a final dot; "" unless OK.
	Name string
	// PTR is the first PTR name, confirmed or not (the {client_ptr}
	// macro); "" when there is none.
	PTR string
	// Names are the PTR names as checked, in the order of the answer.
	Names []Checked
	// FromHosts: the names came from the hosts file, the DNS having none.
	FromHosts bool
	// Err is why the status is Temp: the PTR lookup or a forward lookup
	// that failed.
	Err error
	// Cached: the result was the cache's, nothing was asked.
	Cached bool
}

// Checked is one PTR name and its forward lookup.
type Checked struct {
	Name      string
	Addrs     []netip.Addr // the name's addresses of the client's family
	Confirmed bool         // Addrs holds the client's address
	Err       error        // the forward lookup failed
}

// Trace is what a test session (-bh) shows of the lookup of ip, after
// Exim's host lookup debug lines.
func (r Result) Trace(ip netip.Addr) []string {
	var lines []string
	if r.Cached {
		lines = append(lines, fmt.Sprintf("host name of %s from the cache", ip))
	}
	if len(r.Names) == 0 {
		if r.Status == Temp {
			lines = append(lines, fmt.Sprintf("IP address PTR lookup gave temporary error: %s", dnsclient.Reason(r.Err)))
		} else {
			lines = append(lines, "IP address lookup yielded no name")
		}
		return lines
	}
	from := ""
	if r.FromHosts {
		from = " (hosts file)"
	}
	lines = append(lines, fmt.Sprintf("IP address lookup yielded %q%s", r.Names[0].Name, from))
	for _, n := range r.Names[1:] {
		lines = append(lines, fmt.Sprintf("  alias %q", n.Name))
	}
	for _, n := range r.Names {
		switch {
		case n.Err != nil:
			lines = append(lines, fmt.Sprintf("temporary error for host name lookup of %s: %s", n.Name, dnsclient.Reason(n.Err)))
		case n.Confirmed:
			lines = append(lines, fmt.Sprintf("checking addresses for %s: %s OK", n.Name, ip))
		case len(n.Addrs) == 0:
			lines = append(lines, fmt.Sprintf("no IP addresses found for %s", n.Name))
		default:
			lines = append(lines, fmt.Sprintf("no IP address for %s matched %s (%s)", n.Name, ip, joinAddrs(n.Addrs)))
		}
	}
	switch r.Status {
	case OK:
		lines = append(lines, "host name = "+r.Name)
	case Forged:
		lines = append(lines, fmt.Sprintf("%s does not match any IP address for %s: no host name", ip, r.PTR))
	case Temp:
		lines = append(lines, "host name lookup deferred: no host name")
	}
	return lines
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// Options configure a Resolver. They are taken as given: config fills
// and checks every value ([host_lookup]).
type Options struct {
	Resolvers      []string      // "IP:PORT", asked in order; none: the hosts file alone
	Timeout        time.Duration // one lookup, the PTR and every forward lookup together
	CacheSize      int           // addresses kept, least recently used out first
	MinTTL, MaxTTL time.Duration // clamp of answer TTLs; negative answers use the SOA minimum, clamped the same way
	// HostsFile is read for the names of an address the DNS has no PTR
	// for, and for a name's addresses before the DNS is asked
	// (dnsclient.DefaultHostsFile); "" reads none.
	HostsFile string
	// Bus gets a DNSLookup event per question asked, and one (PTR,
	// Cached) per client named from the cache; nil emits nothing.
	Bus *event.Bus
}

// maxNames bounds the PTR names checked: each costs a forward lookup,
// and an address with more is hardly a mail server's.
const maxNames = 8

// Resolver finds host names. One Resolver serves every session: its cache
// and single flight are shared. It is safe for concurrent use.
type Resolver struct {
	dns     *dnsclient.Client // nil: no resolvers, the hosts file only
	hosts   string
	timeout time.Duration
	bus     *event.Bus // DNSLookup of a cached name; the client emits the rest
	minTTL  time.Duration
	maxTTL  time.Duration
	cache   *expirable.LRU[netip.Addr, entry]
	flights singleflight.Group
}

type entry struct {
	r       Result
	expires time.Time
}

// New returns a Resolver for o.
func New(o Options) (*Resolver, error) {
	r := &Resolver{
		hosts:   o.HostsFile,
		timeout: o.Timeout,
		bus:     o.Bus,
		minTTL:  o.MinTTL,
		maxTTL:  o.MaxTTL,
		cache:   expirable.NewLRU[netip.Addr, entry](o.CacheSize, nil, o.MaxTTL),
	}
	if len(o.Resolvers) > 0 {
		c, err := dnsclient.New(o.Resolvers, o.Timeout, dnsclient.WithBus(o.Bus))
		if err != nil {
			return nil, fmt.Errorf("hostlookup: %w", err)
		}
		r.dns = c
	}
	return r, nil
}

// Pending is a lookup under way.
type Pending struct {
	done chan struct{}
	res  Result
}

// Start begins the lookup of ip and returns at once: a cached result is
// ready, any other is looked up in the background, bounded by the
// timeout, shared with every other session asking for ip meanwhile. ctx
// ending (the client left) stops the wait, not the shared lookup.
func (r *Resolver) Start(ctx context.Context, ip netip.Addr) *Pending {
	// A link-local client's zone names our interface, not its host.
	ip = ip.Unmap().WithZone("")
	p := &Pending{done: make(chan struct{})}
	if e, ok := r.cache.Get(ip); ok && time.Now().Before(e.expires) {
		if r.bus.Enabled() {
			r.bus.Emit(event.Event{Kind: event.DNSLookup, QType: "PTR", Cached: true})
		}
		p.res = e.r
		p.res.Cached = true
		close(p.done)
		return p
	}
	ch := r.flights.DoChan(ip.String(), func() (any, error) {
		lctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		res, ttl := r.lookup(lctx, ip)
		if res.Status != Temp {
			r.cache.Add(ip, entry{r: res, expires: time.Now().Add(ttl)})
		}
		return res, nil
	})
	go func() {
		defer close(p.done)
		select {
		case v := <-ch:
			p.res = v.Val.(Result)
		case <-ctx.Done():
			p.res = Result{Status: Temp, Err: ctx.Err()}
		}
	}()
	return p
}

// Wait returns the result once the lookup is done.
func (p *Pending) Wait() Result {
	<-p.done
	return p.res
}

// Lookup is Start and Wait.
func (r *Resolver) Lookup(ctx context.Context, ip netip.Addr) Result {
	return r.Start(ctx, ip).Wait()
}

// lookup asks for ip's PTR names and confirms each; it returns the
// result and how long it may be kept.
func (r *Resolver) lookup(ctx context.Context, ip netip.Addr) (Result, time.Duration) {
	var res Result
	names, ttl, err := r.ptr(ctx, ip)
	if err != nil {
		return Result{Status: Temp, Err: err}, 0
	}
	if len(names) == 0 {
		names = dnsclient.HostsNames(r.hosts, ip)
		res.FromHosts = len(names) > 0
	}
	// What did not pass nameOK is left out, the rest bounded.
	var kept []string
	for _, n := range names {
		if v, ok := nameOK(n); ok && !slices.Contains(kept, v) {
			kept = append(kept, v)
		}
	}
	if len(kept) > maxNames {
		kept = kept[:maxNames]
	}
	if len(kept) == 0 {
		return Result{Status: Fail}, ttl
	}
	res.PTR = kept[0]
	res.Names = make([]Checked, len(kept))
	ttls := make([]time.Duration, len(kept))
	done := make(chan struct{}, len(kept))
	for i, n := range kept {
		go func() {
			res.Names[i], ttls[i] = r.forward(ctx, n, ip)
			done <- struct{}{}
		}()
	}
	for range kept {
		<-done
	}
	for i, n := range res.Names {
		ttl = min(ttl, ttls[i])
		switch {
		case n.Confirmed && res.Name == "":
			res.Name = n.Name
		case n.Err != nil && res.Err == nil:
			res.Err = n.Err
		}
	}
	switch {
	case res.Name != "":
		res.Status, res.Err = OK, nil
	case res.Err != nil:
		// A name that could not be checked may be the one that
		// confirms: no verdict on the client's name this time.
		res.Status = Temp
	default:
		res.Status = Forged
	}
	return res, ttl
}

// ptr returns the PTR names of ip (as written in the answer) and their
// TTL; none, with the negative TTL, when the DNS has none or there are
// no resolvers.
func (r *Resolver) ptr(ctx context.Context, ip netip.Addr) ([]string, time.Duration, error) {
	if r.dns == nil {
		return nil, r.minTTL, nil
	}
	name, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return nil, 0, err
	}
	var names []string
	var ttl time.Duration
	_, err = r.dns.Exchange(ctx, name, dns.TypePTR, func(m *dns.Msg) error {
		if err := dnsclient.Answerable(name, dns.TypePTR)(m); err != nil {
			return err
		}
		names, ttl = ptrNames(m), r.negativeTTL(m)
		if len(names) > 0 {
			ttl = r.clamp(answerTTL(m, dns.TypePTR))
		}
		return nil
	})
	return names, ttl, err
}

// ptrNames are the PTR targets of an answer, untrusted, as written.
func ptrNames(m *dns.Msg) []string {
	var names []string
	for _, rr := range m.Answer {
		if p, ok := rr.(*dns.PTR); ok && p.Hdr.Class == dns.ClassINET {
			names = append(names, p.Ptr)
		}
	}
	return names
}

// forward looks name up in the client's address family and says whether
// it yields ip, and for how long that holds. The hosts file answers for
// the names it lists, as for a dial.
func (r *Resolver) forward(ctx context.Context, name string, ip netip.Addr) (Checked, time.Duration) {
	c := Checked{Name: name}
	family := func(a netip.Addr) bool { return a.Is4() == ip.Is4() }
	if addrs := dnsclient.HostsAddrs(r.hosts, name); len(addrs) > 0 {
		for _, a := range addrs {
			if family(a) {
				c.Addrs = append(c.Addrs, a)
			}
		}
		c.Confirmed = slices.Contains(c.Addrs, ip)
		return c, r.maxTTL
	}
	if r.dns == nil {
		return c, r.maxTTL
	}
	qtype := dns.TypeA
	if ip.Is6() {
		qtype = dns.TypeAAAA
	}
	fq := dns.Fqdn(name)
	var ttl time.Duration
	_, err := r.dns.Exchange(ctx, fq, qtype, func(m *dns.Msg) error {
		if err := dnsclient.Answerable(fq, qtype)(m); err != nil {
			return err
		}
		c.Addrs, ttl = nil, r.negativeTTL(m)
		for _, rr := range m.Answer {
			// CNAMEs the resolver followed end in records of
			// another owner: they count, as for a dial.
			if a := dnsclient.RRAddr(rr); a.IsValid() && family(a) && rr.Header().Rrtype == qtype {
				c.Addrs = append(c.Addrs, a)
			}
		}
		if len(c.Addrs) > 0 {
			ttl = r.clamp(answerTTL(m, qtype))
		}
		return nil
	})
	if err != nil {
		c.Err = err
		return c, 0
	}
	c.Confirmed = slices.Contains(c.Addrs, ip)
	return c, ttl
}

// answerTTL is the least TTL of the answer's records of qtype and the
// CNAMEs leading to them.
func answerTTL(m *dns.Msg, qtype uint16) time.Duration {
	least := uint32(0)
	first := true
	for _, rr := range m.Answer {
		if t := rr.Header().Rrtype; t != qtype && t != dns.TypeCNAME {
			continue
		}
		if ttl := rr.Header().Ttl; first || ttl < least {
			least, first = ttl, false
		}
	}
	return time.Duration(least) * time.Second
}

// negativeTTL is how long "no such record" holds: the SOA's minimum
// (capped by the SOA's own TTL, RFC 2308), clamped; min_ttl without one.
func (r *Resolver) negativeTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return r.clamp(time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second)
		}
	}
	return r.minTTL
}

func (r *Resolver) clamp(d time.Duration) time.Duration { return min(max(d, r.minTTL), r.maxTTL) }

// nameOK returns a PTR name as it may be shown (lower case, no final dot)
// and whether it is one: the name ends up in the Received header, the
// logs and the milters' macros, so it must be a plain host name. What
// miekg/dns writes escaped (\DDD, \.) and any byte but letters, digits,
// "-" and "_" is refused, as are empty and over-long labels.
func nameOK(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}
